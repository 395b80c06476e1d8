import SMTPPolicy
import SMTPProtocol

/// How one case went.
public enum Verdict: Sendable, Hashable, Codable {
    case passed
    /// The target broke the policy.
    case failed([Failure])
    /// The case could not be run (unreachable, time-out); nothing was judged.
    case error(ErrorReason)
    /// The case does not apply to this target or policy; the reason says why.
    case skipped(SkipReason)

    public var label: String {
        switch self {
        case .passed: "PASS"
        case .failed: "FAIL"
        case .error: "ERROR"
        case .skipped: "SKIP"
        }
    }

    public var isFailure: Bool { if case .failed = self { true } else { false } }
}

/// One way the target broke the policy: where, under which rule, what the
/// policy allowed there and what came.
public struct Failure: Sendable, Hashable, Codable {
    /// The scenario step (0-based) where the reply was due.
    public var step: Int?
    public var rule: RuleID?
    public var expected: Expectation
    public var got: Observation
    /// How the reply that came differs from the one allowed, where one came.
    public var mismatch: Mismatch?

    public init(step: Int?, rule: RuleID?, expected: Expectation, got: Observation, mismatch: Mismatch? = nil) {
        self.step = step
        self.rule = rule
        self.expected = expected
        self.got = got
        self.mismatch = mismatch
    }
}

/// What the policy (or the case, or the capture) allowed where a failure is.
public enum Expectation: Sendable, Hashable, Codable {
    /// The refusal of a rule, with the exact reply the policy gives, due as `due` says.
    case refusal(SMTPReply, due: Due)
    /// The command accepted, as the policy answers it.
    case acceptance(SMTPReply)
    /// The reply to the command the session ended at: the 421 that closes
    /// it, which RFC 5321 3.8 lets come at the next command.
    case closing(SMTPReply)
    case code(ReplyCode)
    case replyClass(Int)
    /// Any 2xx or 3xx.
    case accepted
    /// Any 4xx or 5xx.
    case refused
    /// A 220 greeting.
    case greeting
    /// TLS after STARTTLS (the injection probe).
    case tlsSession
    /// The session stays inside TLS once it is up (RFC 3207 4, RFC 8446 6.1).
    case staysInTLS
    /// Inside TLS, the reply to the first command sent inside it: the model's code and line count.
    case replyInsideTLS(to: ClientUnit?, code: ReplyCode, lines: Int)
    /// No reply to a command the client did not send.
    case noUnaskedReply
    /// No reply while the message is still being written: it ends only at CRLF.CRLF.
    case messageGoesOn
    /// 221 to QUIT.
    case quitAnswered
    /// No recipient accepted after a HELO-name rule was broken.
    case noRecipientAfter(RuleID)
    /// The reply the capture holds (replay).
    case asCaptured(ServerResponse?)

    /// When a refusal is due: at one step, or from the step that broke the
    /// rule up to the step by which the policy's timing wants it.
    public enum Due: Sendable, Hashable, Codable {
        case atStep(Int)
        case between(Int, Int, RuleTiming)
        /// At the exchange (a capture, judged exchange by exchange).
        case here
    }
}

/// What came where a failure is.
public enum Observation: Sendable, Hashable, Codable {
    case reply(ServerResponse)
    /// No reply: the session ended or the step was not sent.
    case noReply
    /// The replies inside a rule's window, in order (`nil`: none came).
    case window([ServerResponse?])
    /// A reply that accepted the unit the policy refuses.
    case accepting(ServerResponse, ClientUnit?)
    /// A reply that refused the unit the policy accepts.
    case refusing(ServerResponse, ClientUnit?)
    /// TLS never came up.
    case noTLS
    /// The TLS handshake failed after the server's 220 to STARTTLS.
    case handshakeFailed(String)
    /// Plain text after TLS came up.
    case plaintextAfterTLS(octets: Int, preview: [UInt8])
    /// A reply inside TLS that answers the command injected behind STARTTLS.
    case injectedAnswer(ServerResponse)
    /// A reply the client did not ask for.
    case unasked(ServerResponse)
    /// A reply while the client paused inside its message after a sequence
    /// that is not CRLF.CRLF: the server ended the message there.
    case endedEarly(ServerResponse)
    /// The replies shifted by one: QUIT got another command's reply.
    case shiftedQuit(ServerResponse)
    /// An accepted recipient after the HELO-name rule was broken.
    case acceptedRecipient(ClientUnit?, ServerResponse)
    /// A reply that differs from the captured one in these fields.
    case changed(ServerResponse?, fields: [ReplyField])
}

/// A part of a reply a comparison looks at.
public enum ReplyField: String, Sendable, Hashable, Codable {
    case code
    case enhancedCode = "enhanced code"
    case text
    case presence = "reply"
}

/// Why a case does not apply. The reasons name no command-line flags; a
/// ``hint`` says which setting would make the case apply, for the command
/// line to word.
public enum SkipReason: Sendable, Hashable, Codable {
    /// The case needs something the run was not given.
    case needs(Hint)
    /// The policy switches the rule off.
    case ruleOff(RuleID)
    /// The policy does not apply the rule to these steps; it refuses step `step` with `other` first, if so.
    case ruleNotApplied(RuleID, refusedFirst: StepRule?)
    /// The policy refuses a step the case expects accepted.
    case stepRefused(step: Int, by: RuleID?, code: ReplyCode, after: RuleID?)
    /// At a step the case expects refused under `rule`, the policy does something else.
    case stepNotRefusedBy(RuleID, step: Int, policy: StepOutcome, after: StepRule?)
    /// The policy has no greeting pause, so an early talker cannot be told from a fast client.
    case noGreetingPause
    /// The policy states no value for the limit the case tests.
    case limitNotStated(Policy.Limits.Name)
    /// The server lacks what the case needs.
    case serverLacks(Capability)
    /// The server refused what the case needs to take on its identity.
    case preludeRefused(what: Prelude, reply: ServerResponse?)
    /// The client address is, or is not, trusted, against what the identity needs.
    case clientTrust(address: String, trusted: Bool, identity: String)
    /// The policy's own run of the case says this (it lacks a capability it needs).
    case policyLacks(Capability)
    /// The source address the identity needs is not of the target's family.
    case sourceFamily(source: String, target: String)
    /// The prelude the variant begins with failed; the case that shows it is `prelude`.
    case preludeFailed(String)
    /// The server refuses a second HELO/EHLO after the prelude (RFC 5321
    /// 4.1.4 lets it), so a HELO case after that prelude tests nothing.
    case secondGreetingRefused(prelude: String)
    /// The server refused the repeated HELO/EHLO at this step (RFC 5321
    /// 4.1.4 lets it), so the reset a later step looks for never happened.
    case greetingRefused(step: Int)
    /// The case drives STARTTLS itself, which implicit TLS leaves no room for.
    case manualTLSUnderImplicit
    /// PROXY cases run on the listener that expects PROXY headers, not over implicit TLS.
    case proxyUnderImplicit
    /// Captures: the session or case cannot be judged from a capture.
    case notCovered(CoverageGap)
    /// Captures: the session is encrypted from the first octet.
    case implicitTLSSession
    /// Captures: no command was answered.
    case nothingAnswered
    /// Captures: neither the SYN nor the greeting is in the capture.
    case startNotCaptured
    /// Replay: the client sent nothing.
    case clientSentNothing
    /// Replay: what the client sent is not SMTP (binary, or a TLS hello):
    /// nothing a replay could send.
    case clientNotSMTP(Transcript.Note)

    /// A step and the rule the policy refused it under.
    public struct StepRule: Sendable, Hashable, Codable {
        public var step: Int
        public var rule: RuleID

        public init(step: Int, rule: RuleID) {
            self.step = step
            self.rule = rule
        }
    }

    public enum StepOutcome: Sendable, Hashable, Codable {
        case refusesWith(RuleID)
        case accepts
        case notReached
    }

    public enum Capability: Sendable, Hashable, Codable {
        case startTLS
        case chunking
        case pipelining
        case size
        case xclient
        case auth
        /// AUTH is not offered before STARTTLS (it may be after it).
        case authBeforeTLS
        case authMechanism(String, offered: [String])
        case bearerToken
    }

    public enum Prelude: Sendable, Hashable, Codable {
        case xclient
        case authentication
        case startTLS
    }

    public enum CoverageGap: Sendable, Hashable, Codable {
        case implicitTLS
        case identityVariant
        case rawSteps
        case needsCredentials
        case noSessionFollows
        case proxied
    }
}

/// A setting the command line offers, named by what it gives.
public enum Hint: Sendable, Hashable, Codable {
    /// Credentials for authenticated cases.
    case credentials
    /// A source address in a trusted network.
    case trustedSource
    /// A source address among the policy's XCLIENT hosts.
    case xclientSource
    /// A source address among the policy's PROXY hosts.
    case proxySource
    /// A listener that expects PROXY headers.
    case proxyListener
    /// TLS from the first byte.
    case implicitTLS
    /// STARTTLS before every case.
    case startTLS
    /// A bearer token for XOAUTH2.
    case bearerToken
    /// Replaying AUTH with the captured credentials.
    case authFromCapture
}

/// Why a case could not be run.
public enum ErrorReason: Sendable, Hashable, Codable {
    /// The connection could not be made.
    case connect(String)
    /// The server never greeted (how the session ended, if it did).
    case noGreeting(Transcript.End?)
    /// The session was lost before anything could be judged.
    case session(Transcript.End)
    /// The captured session ended before the case's steps did.
    case captureEnded(Transcript.End?)
    /// The run was stopped before the case ran.
    case interrupted
}

public struct CaseResult: Sendable, Codable {
    public var scenario: Scenario
    public var verdict: Verdict
    /// What was said on the wire; `nil` when no connection was made.
    public var transcript: Transcript?
    /// Seconds the case took.
    public var duration: Double
    /// The suite the case is reported in where a run has several: its
    /// target (`run --targets`); `nil` for a run's one suite, and for
    /// captures, whose suite is the case's file.
    public var suite: String?
    /// Where the case stands in the whole run (its suite's and its own
    /// index), so that `smtpcheck merge` can put a sharded run's parts back
    /// in order; `nil` where nobody needs it.
    public var place: Place?

    /// A case's suite (target or capture file, 0-based) and its index in it
    /// (scenario or session; a prelude's case is -1).
    public struct Place: Sendable, Hashable, Codable, Comparable {
        public var suite: Int
        public var item: Int

        public init(suite: Int, item: Int) {
            self.suite = suite
            self.item = item
        }

        public static func < (lhs: Place, rhs: Place) -> Bool { (lhs.suite, lhs.item) < (rhs.suite, rhs.item) }
    }

    public init(scenario: Scenario, verdict: Verdict, transcript: Transcript?, duration: Double, suite: String? = nil) {
        self.scenario = scenario
        self.verdict = verdict
        self.transcript = transcript
        self.duration = duration
        self.suite = suite
    }

    /// What a report groups the case under when cases come in several suites.
    public var suiteName: String { self.suite ?? self.scenario.file }

    /// The case's id, with its suite where it has one (`HOST:PORT relay.external`):
    /// unique in a run over several targets, where one-line formats name it.
    public var qualifiedID: String { self.suite.map { "\($0) \(self.scenario.id)" } ?? self.scenario.id }
}

/// A whole run.
public struct RunResult: Sendable {
    public var target: String
    public var policy: String
    public var profile: Profile
    public var cases: [CaseResult] {
        didSet { self.tally = Self.tally(of: self.cases) }
    }
    public var duration: Double
    /// The cases come from input files of their own (captures): reports
    /// keep each file's cases together and name the file.
    public var groupedByFile = false
    /// What the run's cases add up to, summed once as they are set.
    public private(set) var tally: RunTally
    /// Why the target could not be tested at all (one probe before the
    /// cases: it could not be reached, or it does not speak SMTP); every
    /// case is then an error for that reason.
    public var unreachable: String?

    public init(target: String, policy: String, profile: Profile, cases: [CaseResult], duration: Double) {
        self.target = target
        self.policy = policy
        self.profile = profile
        self.cases = cases
        self.duration = duration
        self.tally = Self.tally(of: cases)
    }

    static func tally(of cases: [CaseResult]) -> RunTally {
        var tally = RunTally()
        for result in cases { tally.add(result) }
        return tally
    }

    public func count(_ label: String) -> Int { self.tally.count(label) }

    /// No case passed or failed: everything was skipped (or there was nothing).
    public var nothingTested: Bool { self.tally.nothingTested }

    public var exitCode: Int32 { self.tally.exitCode }

    /// The reasons cases were skipped, most frequent first.
    public var skipReasons: [(reason: SkipReason, count: Int)] { self.tally.skipReasons }
}

/// What a run's cases add up to, kept as they come: counts, not cases, so
/// that a run of any length is summed up in constant memory.
public struct RunTally: Sendable {
    private var labels: [String: Int] = [:]
    /// Per family (a case's first tag), in the order they first came.
    /// Skips are counted apart: a family whose every judged case passed reads
    /// "discipline 13 passed, 1 skipped", not "13/14".
    public private(set) var families: [(name: String, passed: Int, failed: Int, errors: Int, skipped: Int)] = []
    /// Relay attempts by an external client, and how many the server refused.
    public private(set) var relay = (attempts: 0, refused: 0)
    private var skips: [(reason: SkipReason, count: Int)] = []
    /// The error of the first case, when every case so far was one.
    public private(set) var onlyErrors: ErrorReason?
    public private(set) var total = 0

    public init() {}

    public mutating func add(_ result: CaseResult) {
        let label = result.verdict.label
        self.labels[label, default: 0] += 1
        let family = result.scenario.tags.first ?? "other"
        let index =
            self.families.firstIndex(where: { $0.name == family })
            ?? {
                self.families.append((family, 0, 0, 0, 0))
                return self.families.count - 1
            }()
        switch result.verdict {
        case .passed: self.families[index].passed += 1
        case .failed: self.families[index].failed += 1
        case .error: self.families[index].errors += 1
        case .skipped: self.families[index].skipped += 1
        }
        if case .skipped(let reason) = result.verdict {
            if let index = self.skips.firstIndex(where: { $0.reason == reason }) {
                self.skips[index].count += 1
            } else if self.skips.count < 64 {
                self.skips.append((reason, 1))
            }
        }
        if case .error(let reason) = result.verdict {
            if self.total == 0 { self.onlyErrors = reason }
        } else {
            self.onlyErrors = nil
        }
        if let refused = Self.relayRefused(result) {
            self.relay.attempts += 1
            if refused { self.relay.refused += 1 }
        }
        self.total += 1
    }

    /// A relay case by an external client: whether its last foreign RCPT was refused (any 4xx or 5xx).
    static func relayRefused(_ result: CaseResult) -> Bool? {
        let scenario = result.scenario
        guard scenario.tags.contains("relay"), !scenario.tags.contains("accepted"), scenario.identity == .external,
            let transcript = result.transcript
        else { return nil }
        guard let last = transcript.exchanges.last(where: { $0.command?.verb == .rcpt && $0.reply != nil })?.reply else { return nil }
        return !last.code.isPositive
    }

    public func count(_ label: String) -> Int { self.labels[label] ?? 0 }

    /// No case passed or failed: everything was skipped (or there was nothing).
    public var nothingTested: Bool { self.count("PASS") == 0 && self.count("FAIL") == 0 }

    /// The exit codes: 1 if any case failed; else 2 if any could not run or
    /// nothing was tested; else 0. A run that tested nothing is not green.
    public var exitCode: Int32 {
        if self.count("FAIL") > 0 { return 1 }
        if self.count("ERROR") > 0 { return 2 }
        return self.nothingTested ? 2 : 0
    }

    /// The reasons cases were skipped, most frequent first.
    public var skipReasons: [(reason: SkipReason, count: Int)] { self.skips.sorted { $0.count > $1.count } }
}
