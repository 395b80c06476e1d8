import SMTPProtocol

/// One SMTP session as the policy runs it: a pure, deterministic state
/// machine from the client's lines to the replies the policy demands.
///
/// The reference server carries out its ``Response``s on a socket; the judge
/// runs it beside a recorded session, in lock step, to learn what the policy
/// demanded at every command. It does no I/O, keeps no message data (each
/// ``Response`` hands the message octets on, for whoever stores them) and
/// draws nothing at random: queue ids come from ``QueueIDs``.
public struct PolicySession: Sendable {
    /// What the connection offers: plaintext only, STARTTLS, or TLS from the start.
    public enum TLSAvailability: Sendable, Hashable {
        case none
        case starttls
        case implicit
    }

    public struct Configuration: Sendable {
        public var policy: Policy
        /// The client as the policy sees it: the socket's peer, or whom a PROXY header names.
        public var clientAddress: String?
        /// The socket's own peer, where `clientAddress` came from a PROXY header.
        public var peer: String?
        public var tls: TLSAvailability
        public var queueIDs: QueueIDs
        /// Checks credentials; by default against the policy's AUTH users.
        public var authenticator: Authenticator

        public init(
            policy: Policy, clientAddress: String?, peer: String? = nil, tls: TLSAvailability = .none, queueIDs: QueueIDs = QueueIDs(),
            authenticator: Authenticator? = nil
        ) {
            self.policy = policy
            self.clientAddress = clientAddress
            self.peer = peer
            self.tls = tls
            self.queueIDs = queueIDs
            self.authenticator = authenticator ?? .policy(policy)
        }
    }

    /// One reply and, where a rule decided it, which.
    public struct Reply: Sendable, Hashable {
        public var reply: SMTPReply
        /// The rule whose refusal this is.
        public var rule: RuleID?
        /// A HELO rule broken here whose refusal the policy delays until RCPT.
        public var deferredRule: RuleID?
        /// A rule that would decide this reply but that the policy switches
        /// off: whatever the server answers here keeps the policy.
        public var waived: RuleID?

        public init(reply: SMTPReply, rule: RuleID? = nil, deferredRule: RuleID? = nil, waived: RuleID? = nil) {
            self.reply = reply
            self.rule = rule
            self.deferredRule = deferredRule
            self.waived = waived
        }
    }

    /// What the session answers to one input.
    public struct Response: Sendable {
        public var replies: [Reply] = []
        /// Close the connection after writing the replies.
        public var close = false
        /// Start the TLS handshake after writing the replies.
        public var startTLS = false
        /// The next octets are a BDAT chunk of this size, for ``receiveChunk(_:)``.
        public var readChunk: Int?
        /// The message this input completed, accepted.
        public var accepted: AcceptedMessage?
        /// Message octets this input carried (a body line, unstuffed, with its
        /// CRLF; or chunk octets), for a server that keeps messages.
        public var data: [UInt8] = []

        public init() {}

        /// Whether the first reply accepts (2xx or 3xx).
        public var accepts: Bool { self.replies.first?.reply.code.isPositive ?? true }
    }

    /// Where the session is: reading commands, a message, a BDAT chunk, or a SASL exchange.
    public enum State: Sendable, Hashable {
        case command
        /// Inside DATA: octets of the message so far.
        case message(octets: Int)
        case chunk(Chunk)
        case sasl(SASLStep)
    }

    /// A BDAT chunk being read (RFC 3030): what is still to come, and the
    /// refusal due once it is in (a refused chunk is still read).
    public struct Chunk: Sendable, Hashable {
        public var remaining: Int
        public var size: Int
        public var last: Bool
        public var refusal: RuleID?
    }

    /// What a SASL exchange waits for.
    public enum SASLStep: Sendable, Hashable {
        case plain
        case loginUser
        case loginPassword(user: String)
        case cramMD5(challenge: [UInt8])
        /// After a refused XOAUTH2 token: the client's empty line ends it (RFC 7628 3.2.3).
        case xoauth2Error
    }

    /// What the session knows of the client and the transaction.
    public struct Facts: Sendable, Hashable {
        /// The client as the policy sees it.
        public var clientAddress: String?
        public var clientIsTrusted: Bool
        public var helo: Helo?
        public var authenticatedUser: String?
        public var transaction: Transaction?
        public var tlsActive: Bool
        /// An EHLO reply of this session offered PIPELINING. As Postfix's
        /// `reject_unauth_pipelining` reads it, a later HELO or STARTTLS does
        /// not take that back: only a client never told is refused.
        public var pipeliningOffered = false
        /// The client sent ahead of time where it may not (before the greeting,
        /// or pipelined without PIPELINING): refused at DATA.
        public var sentUnasked = false
        /// Refusals so far, for the error limit.
        public var errors = 0
        /// Octets of the BDAT message so far, while chunks come (RFC 3030).
        public var chunked: Int?
        /// Messages accepted, for queue ids.
        public var messages = 0
    }

    public struct Helo: Sendable, Hashable {
        public var name: String
        /// A HELO rule broken by the name whose refusal is due no later than RCPT.
        public var deferred: RuleID?
    }

    public struct Transaction: Sendable, Hashable {
        public var sender: String
        public var recipients: [String] = []
    }

    public let configuration: Configuration
    public let oracle: PolicyOracle
    public internal(set) var state: State = .command
    public internal(set) var facts: Facts
    /// The peer may use XCLIENT (its own address, not an impersonated one).
    let peerMayUseXCLIENT: Bool
    /// Before the last command, and what it was, for ``follow(_:)``.
    var beforeLast: (state: State, facts: Facts, command: SMTPCommand, accepted: Bool)?

    public var policy: Policy { self.configuration.policy }
    public var tlsAvailability: TLSAvailability { self.configuration.tls }
    public var errorCount: Int { self.facts.errors }

    public init(_ configuration: Configuration) {
        self.configuration = configuration
        self.oracle = PolicyOracle(policy: configuration.policy)
        let policy = configuration.policy
        let address = configuration.clientAddress
        self.facts = Facts(
            clientAddress: address, clientIsTrusted: address.map(policy.isTrusted(address:)) ?? false,
            tlsActive: configuration.tls == .implicit)
        self.peerMayUseXCLIENT = (configuration.peer ?? address).map { policy.xclientHosts.contains(address: $0) } ?? false
    }

    /// `peer`: the socket's own peer when `clientAddress` came from a PROXY header.
    public init(policy: Policy, clientAddress: String?, tls: TLSAvailability = .none, peer: String? = nil) {
        self.init(Configuration(policy: policy, clientAddress: clientAddress, peer: peer, tls: tls))
    }

    public var greeting: SMTPReply { SMTPReply(code: .serviceReady, lines: ["\(self.policy.serverName) ESMTP smtpcheck"]) }

    /// TLS is required for the session and not yet active.
    var needsTLS: Bool { self.policy.tlsRequired && !self.facts.tlsActive && self.policy.isEnabled(.authTLSRequired) }

    /// Mail waits for AUTH (a submission service).
    var needsAuth: Bool {
        self.policy.authRequired && self.facts.authenticatedUser == nil && self.policy.isEnabled(.authRequired)
    }

    /// AUTH waits for TLS (for the session or for AUTH alone).
    var authNeedsTLS: Bool {
        (self.policy.tlsRequired || self.policy.authRequiresTLS) && !self.facts.tlsActive && self.policy.isEnabled(.authTLSRequired)
    }

    /// The client's HELO name is not checked: it is trusted or
    /// authenticated, and the policy exempts such clients.
    var heloExempt: Bool {
        (self.facts.clientIsTrusted && self.policy.heloExempt.contains(.trusted))
            || (self.facts.authenticatedUser != nil && self.policy.heloExempt.contains(.authenticated))
    }

    /// The client spoke before the greeting. Only a server that pauses its
    /// greeting can tell (as postscreen's greet wait does): then its DATA is refused.
    public mutating func receivedBeforeGreeting() {
        if self.policy.limits.greetPauseMilliseconds > 0 { self.facts.sentUnasked = true }
    }

    /// The handshake after STARTTLS completed: everything learnt before it is
    /// forgotten (RFC 3207 4.2), HELO included.
    public mutating func tlsEstablished() {
        self.facts.tlsActive = true
        if self.policy.pipeliningAfterTLS == .forgotten { self.facts.pipeliningOffered = false }
        self.facts.helo = nil
        self.facts.authenticatedUser = nil
        self.facts.transaction = nil
        self.facts.chunked = nil
        self.state = .command
    }

    /// What the server says when the client stays silent too long.
    public func idleTimeout() -> Response {
        var response = self.refuse(.idleTimeout)
        response.close = true
        return response
    }

    /// Feeds one line from the client; `followed`: another line was already
    /// waiting behind it, sent without waiting for this one's reply.
    public mutating func receive(_ line: LineFramer.Line, followed: Bool = false) -> Response {
        if followed, case .command = self.state, !self.facts.pipeliningOffered { self.facts.sentUnasked = true }
        var response: Response
        switch self.state {
        case .message(let octets):
            return self.receiveBodyLine(line, octets: octets)
        case .chunk:
            return self.refuse(.commandSyntax, ["verb": "BDAT chunk-size [LAST]"])
        case .sasl(let step):
            self.state = .command
            response = self.receiveSASL(line, step: step)
        case .command:
            let before = (self.state, self.facts)
            let command = SMTPCommand(line: line.bytes)
            response = self.receiveCommand(line, command)
            self.beforeLast = (before.0, before.1, command, response.accepts)
        }
        return self.countingErrors(response)
    }

    /// A refusal counts towards the error limit; at the limit the policy
    /// says 421 and closes.
    mutating func countingErrors(_ response: Response) -> Response {
        var response = response
        guard response.replies.contains(where: { !$0.reply.code.isPositive }), !response.close else { return response }
        self.facts.errors += 1
        if self.facts.errors >= self.policy.limits.errorLimit && self.policy.isEnabled(.tooManyErrors) {
            response.replies += self.refuse(.tooManyErrors).replies
            response.close = true
        }
        return response
    }

    /// The refusal of `rule`; where the policy switches the rule off, the
    /// catalogue's reply, waived (not judged).
    func refuse(_ rule: RuleID, _ values: [String: String] = [:]) -> Response {
        var response = Response()
        let enabled = self.policy.isEnabled(rule)
        response.replies.append(Reply(reply: self.oracle.refusal(rule, values), rule: enabled ? rule : nil, waived: enabled ? nil : rule))
        return response
    }

    func accept(_ reply: SMTPReply, deferring rule: RuleID? = nil, waiving waived: RuleID? = nil) -> Response {
        var response = Response()
        response.replies.append(Reply(reply: reply, deferredRule: rule, waived: waived))
        return response
    }
}

/// Queue ids and challenges, derived from a seed and a counter: the same seed
/// gives the same ids, so a session judged twice answers the same.
public struct QueueIDs: Sendable, Hashable {
    public var seed: UInt64

    public init(seed: UInt64 = 0) {
        self.seed = seed
    }

    /// A seed from the system's random source, for a server.
    public static func random() -> QueueIDs {
        var generator = SystemRandomNumberGenerator()
        return QueueIDs(seed: generator.next())
    }

    /// The `number`th id: twelve upper-case hex digits, as Postfix's long ids look.
    public func id(_ number: Int) -> String {
        // SplitMix64 of seed + number.
        var z = self.seed &+ UInt64(truncatingIfNeeded: number) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let hex = String(z & 0xFFFF_FFFF_FFFF, radix: 16, uppercase: true)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }
}

/// A message the session accepted: its envelope and queue id. The octets
/// went out with the responses as they came; the session keeps none.
public struct AcceptedMessage: Sendable, Hashable {
    public var queueID: String
    public var sender: String
    public var recipients: [String]
    public var octets: Int
    public var heloName: String?
    public var clientAddress: String?
    public var authenticatedUser: String?
}

extension [IPNetwork] {
    /// Whether any of the networks holds the address.
    /// The address is read once, not once per network.
    public func contains(address: String) -> Bool {
        guard let bytes = IPNetwork.addressBytes(address) else { return false }
        return self.contains { $0.contains(bytes) }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while slice.first == " " || slice.first == "\t" { slice = slice.dropFirst() }
        while slice.last == " " || slice.last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
