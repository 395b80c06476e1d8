import SMTPPolicy
import SMTPProtocol

/// A session read from a capture, as the judge needs it.
public struct RecordedSession: Sendable {
    /// Its number in the capture, from 1.
    public var number: Int
    public var client: String
    public var server: String
    /// The client's IP address.
    public var clientAddress: String
    /// The client a PROXY header named, where one did.
    public var proxiedClient: String?
    /// TLS from the first octet: nothing is readable.
    public var implicitTLS: Bool
    public var transcript: Transcript

    public init(
        number: Int, client: String, server: String, clientAddress: String, proxiedClient: String?, implicitTLS: Bool,
        transcript: Transcript
    ) {
        self.number = number
        self.client = client
        self.server = server
        self.clientAddress = clientAddress
        self.proxiedClient = proxiedClient
        self.implicitTLS = implicitTLS
        self.transcript = transcript
    }

    /// Whom the policy judges: behind a PROXY header, the client it names.
    public var judgedClient: String { self.proxiedClient ?? self.clientAddress }

    /// The walk for this session under `policy`.
    public func conformance(_ policy: Policy) -> Conformance {
        Conformance(policy: policy, client: self.judgedClient, peer: self.proxiedClient != nil ? self.clientAddress : nil)
    }
}

/// `check`: every reply of a recorded session judged against the policy,
/// as recorded (no case: whatever the client did).
public enum Audit {
    /// One case per session: passed, failed (with each reply that breaks the
    /// policy), or skipped when nothing can be read.
    public static func judge(_ session: RecordedSession, policy: Policy, file: String) -> CaseResult {
        let trusted = policy.isTrusted(address: session.judgedClient)
        var scenario = Scenario(
            id: "session-\(session.number)", title: "\(session.client) -> \(session.server)", tags: ["capture"],
            identity: trusted ? .trusted : .external, file: file)
        scenario.line = session.number
        var transcript = session.transcript
        var ordinal = 0
        for index in transcript.exchanges.indices where transcript.exchanges[index].role != .greeting {
            if transcript.exchanges[index].role != .unsolicited { ordinal += 1 }
            transcript.exchanges[index].step = ordinal - 1
        }
        let duration = (transcript.exchanges.last?.repliedAt ?? transcript.exchanges.last?.sentAt) ?? 0
        func result(_ verdict: Verdict) -> CaseResult {
            CaseResult(scenario: scenario, verdict: verdict, transcript: transcript, duration: duration)
        }
        if session.implicitTLS { return result(.skipped(.implicitTLSSession)) }
        // Without the SYN and without a greeting the session's start is not in
        // the capture (it began earlier, or the kernel dropped the packets):
        // where it stood when the capture picks it up cannot be known.
        let greetingCodes: Set<Int> = [220, 421, 554]
        if transcript.notes.contains(.noHandshake),
            let first = transcript.exchanges.first(where: { $0.role == .greeting })?.reply, !greetingCodes.contains(first.code.value)
        {
            return result(.skipped(.startNotCaptured))
        }
        let failures = self.failures(session.conformance(policy).walk(transcript), in: transcript)
        if failures.isEmpty && !transcript.exchanges.contains(where: { $0.reply != nil && $0.role != .greeting }) {
            return result(.skipped(.nothingAnswered))
        }
        return result(failures.isEmpty ? .passed : .failed(failures))
    }

    /// Each broken judgement as a failure at its exchange.
    public static func failures(_ judgements: [Judgement], in transcript: Transcript) -> [Failure] {
        judgements.compactMap { judgement in
            guard case .broken(let mismatch) = judgement.outcome else { return nil }
            let exchange = transcript.exchanges[judgement.exchange]
            guard let response = exchange.response else { return nil }
            let positive = response.reply?.code.isPositive == true
            switch judgement.demand {
            case .refusal(let rule, let reply):
                return Failure(
                    step: judgement.step, rule: rule, expected: .refusal(reply, due: .here),
                    got: positive ? .accepting(response, exchange.sent) : .reply(response), mismatch: mismatch)
            case .acceptance(let reply, _):
                return Failure(
                    step: judgement.step, rule: nil, expected: .acceptance(reply), got: .refusing(response, exchange.sent),
                    mismatch: mismatch)
            case .closing(let reply):
                return Failure(
                    step: judgement.step, rule: .tooManyErrors, expected: .closing(reply), got: .reply(response), mismatch: mismatch)
            case .free:
                return nil
            }
        }
    }
}
