import SMTPPolicy
import SMTPProtocol

/// One case of the battery: what the client does and what the policy demands.
public struct Scenario: Sendable, Hashable, Codable {
    public var id: String
    public var title: String
    public var refs: [String]
    public var tags: [String]
    public var identity: Identity
    public var steps: [Step]
    /// Rules that must refuse this session, each at the time the policy allows.
    public var refusedBy: [RuleID]
    /// Every step must be accepted.
    public var acceptedThroughout: Bool
    /// After STARTTLS, no reply may answer a command the client never sent
    /// inside TLS (the plaintext injected behind STARTTLS).
    public var noInjectedReply: Bool
    /// No reply may come that the client did not ask for: a smuggled message
    /// answered as a transaction of its own, or commands after QUIT answered.
    public var noExtraReplies: Bool = false
    public var tls: TLSUse
    public var file: String
    public var line: Int

    /// Whether a step pauses, waiting to see if the server answers early.
    public var pauses: Bool { self.steps.contains { $0.pauseMilliseconds != nil } }

    public init(
        id: String, title: String, refs: [String] = [], tags: [String] = [], identity: Identity = .external, steps: [Step] = [],
        refusedBy: [RuleID] = [], acceptedThroughout: Bool = false, noInjectedReply: Bool = false, noExtraReplies: Bool = false,
        tls: TLSUse = .auto, file: String, line: Int = 0
    ) {
        self.noExtraReplies = noExtraReplies
        self.id = id
        self.title = title
        self.refs = refs
        self.tags = tags
        self.identity = identity
        self.steps = steps
        self.refusedBy = refusedBy
        self.acceptedThroughout = acceptedThroughout
        self.noInjectedReply = noInjectedReply
        self.tls = tls
        self.file = file
        self.line = line
    }

    /// How a case uses TLS.
    public enum TLSUse: String, Sendable, Hashable, Codable, CaseIterable {
        /// As the run says (`--tls`): plaintext, STARTTLS before the steps, or implicit TLS.
        case auto
        /// The case drives STARTTLS itself, on a plaintext connection.
        case manual
        /// The case needs TLS from the first byte (RFC 8314).
        case implicit
    }

    /// Who the client is, to the policy.
    public enum Identity: String, Sendable, Hashable, Codable, CaseIterable {
        /// A client on no trusted network, not authenticated.
        case external
        /// A client whose source address is in a trusted network.
        case trusted
        /// A client that authenticates with the run's credentials.
        case authenticated
        /// An external client named by XCLIENT from an authorised proxy.
        case xclient
        /// A client in a trusted network named by XCLIENT.
        case xclientTrusted = "xclient-trusted"
        /// An external client named by a PROXY v1 header.
        case proxyV1 = "proxy-v1"
        case proxyV1Trusted = "proxy-v1-trusted"
        /// An external client named by a PROXY v2 header.
        case proxyV2 = "proxy-v2"
        case proxyV2Trusted = "proxy-v2-trusted"

        /// Who the policy sees: the trusted variants are trusted clients.
        public var isTrusted: Bool { [.trusted, .xclientTrusted, .proxyV1Trusted, .proxyV2Trusted].contains(self) }
        public var isProxied: Bool { [.proxyV1, .proxyV1Trusted, .proxyV2, .proxyV2Trusted].contains(self) }
        public var usesXCLIENT: Bool { self == .xclient || self == .xclientTrusted }
    }

    /// Expand into one case per identity, each judged by what the policy
    /// demands of that identity.
    public var matrix: Bool = false
    /// Expectations come from the policy for this identity (a matrix variant).
    public var derivedExpectations: Bool = false

    /// The variants of a matrix case, the declared identity first.
    public var variants: [Scenario] {
        guard self.matrix else { return [self] }
        return [self]
            + Identity.allCases.filter { $0 != self.identity }.map { identity in
                var variant = self
                variant.id = "\(self.id)@\(identity.rawValue)"
                variant.title = "\(self.title) (as \(identity.rawValue))"
                variant.identity = identity
                variant.tags.append("identity-matrix")
                variant.derivedExpectations = true
                variant.matrix = false
                return variant
            }
    }

    /// Every rule the case's expectations name.
    public var rulesNamed: Set<RuleID> {
        var rules = Set(self.refusedBy)
        for step in self.steps { if case .rule(let rule) = step.expectation { rules.insert(rule) } }
        return rules
    }
}

public struct Step: Sendable, Hashable, Codable {
    public var action: Action
    public var expectation: StepExpectation?
    public var repeatCount: RepeatCount
    /// Sent before the greeting is read (an early talker); first step only.
    public var beforeGreeting = false
    /// A raw step that expects no reply: how long to listen for one before
    /// the next step is written (a reply there is the finding).
    public var pauseMilliseconds: Int?
    public var line: Int

    public init(action: Action, expectation: StepExpectation? = nil, repeatCount: RepeatCount = .times(1), line: Int = 0) {
        self.action = action
        self.expectation = expectation
        self.repeatCount = repeatCount
        self.line = line
    }

    public enum Action: Sendable, Hashable, Codable {
        /// One command line (a template with `{placeholders}`).
        case send(String)
        /// Command lines written in one write; replies paired in order.
        case pipeline([String])
        /// Octets exactly as given (escapes decoded; placeholders expanded
        /// when sent), and how many replies to read after them.
        case raw([UInt8], replies: Int)
        /// A message body after `354`: lines ended by CRLF, dot-stuffed, terminated.
        case body(String)
        case auth(AuthStep)
        /// STARTTLS, then the handshake on a 220. `injected`: a command sent in
        /// the same write, in plaintext, behind STARTTLS.
        case starttls(injected: String?)
        /// `BDAT size [LAST]` and its chunk in one write (RFC 3030); the
        /// chunk's escapes are decoded, its placeholders expanded when sent
        /// and its size counted then.
        case bdat(chunk: [UInt8], last: Bool)
    }

    public enum RepeatCount: Sendable, Hashable, Codable {
        case times(Int)
        /// The policy's error limit.
        case errorLimit
        /// The policy's most recipients in one transaction.
        case maxRecipients
    }
}

public struct AuthStep: Sendable, Hashable, Codable {
    public enum Mechanism: String, Sendable, Hashable, Codable, CaseIterable {
        case plain = "PLAIN"
        case login = "LOGIN"
        case cramMD5 = "CRAM-MD5"
        case xoauth2 = "XOAUTH2"
    }

    public enum Password: String, Sendable, Hashable, Codable {
        /// The run's password.
        case configured
        /// A password that is certainly wrong.
        case wrong
    }

    public var mechanism: Mechanism
    /// Send the first response with the AUTH command (RFC 4954 initial response).
    public var initialResponse: Bool
    public var password: Password
    /// Answer the first 334 with `*` (RFC 4954 4).
    public var cancel: Bool
}

/// What one step's reply must be.
public enum StepExpectation: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The refusal of this rule, as the policy's profile words it.
    case rule(RuleID)
    case code(ReplyCode)
    case replyClass(Int)
    /// 2xx or 3xx.
    case accepted
    /// 4xx or 5xx.
    case refused

    public var description: String {
        switch self {
        case .rule(let rule): "refused by \(rule)"
        case .code(let code): "code \(code)"
        case .replyClass(let value): "a \(value)xx reply"
        case .accepted: "accepted (2xx/3xx)"
        case .refused: "refused (4xx/5xx)"
        }
    }
}
