import SMTPCapture
import SMTPPolicy
import SMTPProtocol

/// Judges every reply of a captured session against the policy: the
/// policy's own session runs beside it, command by command, and follows what
/// the real server answered, so each reply is judged from where the real
/// session stood.
public enum CaptureAuditor {
    /// One case per session: passed, failed (with each reply that breaks the
    /// policy), or skipped when nothing can be read.
    public static func audit(_ session: CapturedSession, policy: Policy, capture: String) -> CaseResult {
        // Behind a PROXY header the policy judges the client the header names.
        let client = session.proxiedClient ?? session.client.addressText
        let trusted = policy.isTrusted(address: client)
        let scenario = Scenario(
            id: "session-\(session.number)", title: "\(session.client) -> \(session.server)", tags: ["capture"],
            identity: trusted ? .trusted : .external, file: capture)
        var transcript = session.transcript
        var ordinal = 0
        for index in transcript.exchanges.indices where transcript.exchanges[index].kind != .banner {
            if transcript.exchanges[index].kind != .unsolicited { ordinal += 1 }
            transcript.exchanges[index].step = ordinal - 1
        }
        let duration = (transcript.exchanges.last?.repliedAt ?? transcript.exchanges.last?.sentAt) ?? 0
        if session.implicitTLS {
            return CaseResult(
                scenario: scenario, verdict: .skipped("TLS from the first octet: nothing to judge"), transcript: transcript,
                duration: duration)
        }
        let failures = self.findings(
            transcript, policy: policy, client: client, peer: session.proxiedClient != nil ? session.client.addressText : nil)
        if failures.isEmpty && !transcript.exchanges.contains(where: { $0.reply != nil && $0.kind != .banner }) {
            return CaseResult(
                scenario: scenario, verdict: .skipped("no command was answered: nothing to judge"), transcript: transcript,
                duration: duration)
        }
        return CaseResult(
            scenario: scenario, verdict: failures.isEmpty ? .passed : .failed(failures), transcript: transcript, duration: duration)
    }

    static func findings(_ transcript: Transcript, policy: Policy, client: String, peer: String? = nil) -> [Failure] {
        let oracle = PolicyOracle(policy: policy)
        var session = PolicySession(policy: policy, clientAddress: client, tls: .starttls, peer: peer)
        var failures: [Failure] = []
        var inAuthentication = false
        // The 421 the policy closes with, still to come from the server.
        var closing: SMTPReply?
        // A first command sent before the greeting came: early talk, where the policy pauses its greeting.
        let banner = transcript.exchanges.first { $0.kind == .banner }
        if let greeted = banner?.repliedAt, let first = transcript.exchanges.first(where: { $0.sent != nil })?.sentAt, first < greeted {
            // Without a pause it is up to timing whether the server saw the
            // command waiting as it greeted (Postfix's smtpd may): both conform.
            let refusal = session.oracle.refusal(.unauthPipelining)
            let caught = transcript.exchanges.contains {
                $0.sent?.text.uppercased() == "DATA" && session.oracle.judge($0.response, expected: refusal).isMatch
            }
            if policy.limits.greetPauseMilliseconds > 0 || (caught && policy.isEnabled(.unauthPipelining)) {
                session.clientTalkedEarly()
            }
        }
        for (position, exchange) in transcript.exchanges.enumerated() {
            // Past a hole in the capture, commands and replies cannot be paired
            // with certainty: the session is judged up to it (the transcript says so).
            if exchange.followsMissingData { break }
            guard let actual = exchange.reply else { continue }
            switch exchange.kind {
            case .banner, .unsolicited:
                continue
            case .saslResponse:
                if actual.code != .authContinue {
                    session.followAuthentication(succeeded: actual.code == .authenticationSucceeded)
                    inAuthentication = false
                }
                continue
            case .body:
                let expected = session.endMessage(octets: exchange.sent?.octets ?? 0)
                if let failure = self.judge(expected, actual, oracle: oracle, step: exchange.step, sent: "the message body") {
                    failures.append(failure)
                }
                continue
            case .command, .raw:
                break
            }
            guard let sent = exchange.sent else { continue }
            let bytes = Printable.unescape(sent.text)
            let command = SMTPCommand(line: bytes)
            if let closing {
                // The policy ended the session at the command before; RFC 5321
                // 3.8 lets the 421 answer this one instead, and nothing else.
                if case .differs(let reason) = oracle.judge(.reply(actual), expected: closing) {
                    failures.append(
                        Failure(step: exchange.step, rule: nil, expected: "\(closing.singleLine) (\(reason))", got: actual.singleLine))
                }
                break
            }
            // Credentials are not in the policy's hands: AUTH is taken as recorded.
            if sent.redacted || command.verb == .auth {
                inAuthentication = actual.code == .authContinue
                if !inAuthentication { session.followAuthentication(succeeded: actual.code == .authenticationSucceeded) }
                continue
            }
            if inAuthentication { continue }
            if command.verb == .bdat {
                // A capture sizes chunks but does not keep them, so BDAT is taken
                // as recorded: an accepted last chunk ends the transaction.
                if actual.code.isPositive && command.argument.uppercased().hasSuffix(" LAST") { _ = session.endMessage(octets: 0) }
                continue
            }
            // Pipelined: the next command came in the same segment as this one.
            let next = transcript.exchanges.dropFirst(position + 1).first { $0.sent != nil }
            let followed = exchange.pipelineGroup != nil && next?.pipelineGroup == exchange.pipelineGroup
            let expected = session.receive(LineFramer.Line(bytes: bytes, length: sent.octets), followed: followed)
            if let failure = self.judge(expected, actual, oracle: oracle, step: exchange.step, sent: sent.text) { failures.append(failure) }
            if expected.close, let last = expected.replies.last?.reply, last.code.value == 421 {
                // The policy ends the session here: the 421 came, or must answer the next command.
                if actual.code.value == 421 { break }
                closing = last
            }
            session.follow(actual)
            if command.verb == .starttls && actual.code == .serviceReady { break }
        }
        return failures
    }

    /// The one reply against what the policy answers to the same command.
    static func judge(_ expected: PolicySession.Response, _ actual: SMTPReply, oracle: PolicyOracle, step: Int?, sent: String) -> Failure? {
        guard let model = expected.replies.first else { return nil }
        if let rule = model.rule {
            if actual.code.isPositive {
                return Failure(
                    step: step, rule: rule, expected: "\(model.reply.singleLine) (\(rule))", got: "\(actual.singleLine), accepting \(sent)")
            }
            if case .differs(let reason) = oracle.judge(.reply(actual), expected: model.reply) {
                return Failure(step: step, rule: rule, expected: "\(model.reply.singleLine) (\(reason))", got: actual.singleLine)
            }
            return nil
        }
        if actual.code.value / 100 == model.reply.code.value / 100 { return nil }
        if let deferred = model.deferredRule,
            oracle.judge(.reply(actual), against: deferred, values: ["helo": SMTPCommand(line: Printable.unescape(sent)).argument]).isMatch
        {
            return nil  // refused at once what the policy allows refusing up to RCPT
        }
        return Failure(
            step: step, rule: nil, expected: "accepted (\(model.reply.singleLine))", got: "\(actual.singleLine), refusing \(sent)")
    }
}
