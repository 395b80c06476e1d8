import SMTPPolicy
import SMTPProtocol

/// Judges a recorded session against what the policy expected of the same
/// steps. Pure: transcripts in, verdict out.
struct Judge {
    static let noReply = "no reply"
    let scenario: Scenario
    let oracle: PolicyOracle
    /// The session as the policy itself answers it, and the rule behind each reply.
    let expected: Transcript
    let annotations: [PolicySession.Reply]

    /// The rule annotation of each expected exchange.
    private var annotatedExchanges: [(exchange: Transcript.Exchange, note: PolicySession.Reply)] {
        var out: [(Transcript.Exchange, PolicySession.Reply)] = []
        var index = 0
        for exchange in self.expected.exchanges where exchange.response != nil {
            guard index < self.annotations.count else { break }
            out.append((exchange, self.annotations[index]))
            index += 1
        }
        return out
    }

    private func finalExchange(of step: Int, in transcript: Transcript) -> Transcript.Exchange? {
        transcript.exchanges.last { $0.step == step && $0.kind != .unsolicited && $0.response != nil }
    }

    private func describe(_ exchange: Transcript.Exchange?) -> String {
        guard let exchange else { return "\(Self.noReply) (the step was not answered or not sent)" }
        guard let response = exchange.response else { return Self.noReply }
        return response.description
    }

    func verdict(actual: Transcript) -> Verdict {
        var failures: [Failure] = []
        let policy = self.oracle.policy
        let annotated = self.annotatedExchanges

        guard let banner = actual.exchanges.first(where: { $0.kind == .banner }), let greeting = banner.reply else {
            if case .timedOut = actual.end { return .error("no greeting: \(actual.end?.description ?? "")") }
            return .error("no greeting: \(actual.end?.description ?? "the connection ended")")
        }
        guard greeting.code == .serviceReady else {
            return .failed([Failure(step: nil, rule: nil, expected: "a 220 greeting", got: greeting.description)])
        }

        for rule in self.scenario.refusedBy {
            guard policy.isEnabled(rule) else { return .skipped("the policy does not enforce \(rule)") }
            guard let trigger = annotated.first(where: { $0.note.rule == rule || $0.note.deferredRule == rule }),
                let triggerStep = trigger.exchange.step
            else {
                return .skipped("the policy does not apply \(rule) to these steps (it answers them otherwise)")
            }
            let refusal = annotated.first { $0.note.rule == rule }
            var lastStep = refusal?.exchange.step ?? triggerStep
            if rule == .tooManyErrors || rule == .idleTimeout { lastStep += 1 }  // RFC 5321 3.8: a 421 may answer the next command
            let expectedReply = refusal?.note.reply ?? self.oracle.refusal(rule)
            let window = actual.exchanges.filter { ($0.step ?? -1) >= triggerStep && ($0.step ?? -1) <= lastStep }
            let timing =
                lastStep == triggerStep
                ? "at step \(triggerStep + 1)"
                : "between step \(triggerStep + 1) and step \(lastStep + 1) (\(policy.timing(of: rule).rawValue))"
            if !window.contains(where: { self.oracle.judge($0.response, expected: expectedReply).isMatch }) {
                let got = window.isEmpty ? "\(Self.noReply) in that window" : window.map(self.describe).joined(separator: " / ")
                failures.append(Failure(step: triggerStep, rule: rule, expected: "\(expectedReply) \(timing)", got: got))
            }
            if RuleID.heloNameRules.contains(rule) {
                for exchange in actual.exchanges where (exchange.step ?? -1) >= triggerStep && exchange.kind == .command {
                    guard let sent = exchange.sent, sent.text.uppercased().hasPrefix("RCPT "), let reply = exchange.reply,
                        reply.code.replyClass == .positiveCompletion
                    else { continue }
                    failures.append(
                        Failure(
                            step: exchange.step, rule: rule, expected: "no recipient accepted after \(rule) was broken",
                            got: "\(sent.text) -> \(reply)"))
                }
            }
        }

        if self.scenario.acceptedThroughout {
            for (index, _) in self.scenario.steps.enumerated() {
                if let note = annotated.last(where: { $0.exchange.step == index && $0.exchange.kind != .unsolicited })?.note,
                    !note.reply.code.isPositive
                {
                    return .skipped(
                        "the policy refuses step \(index + 1) (\(note.rule.map(\.rawValue) ?? "\(note.reply.code)")): the case does not apply to it"
                    )
                }
                let exchange = self.finalExchange(of: index, in: actual)
                if exchange?.reply?.code.isPositive != true {
                    failures.append(Failure(step: index, rule: nil, expected: "accepted (2xx/3xx)", got: self.describe(exchange)))
                }
            }
        }

        for (index, step) in self.scenario.steps.enumerated() {
            guard let expectation = step.expectation else { continue }
            let exchange = self.finalExchange(of: index, in: actual)
            let reply = exchange?.reply
            switch expectation {
            case .rule(let rule):
                guard policy.isEnabled(rule) else { return .skipped("the policy does not enforce \(rule)") }
                guard let note = annotated.last(where: { $0.exchange.step == index && $0.exchange.kind != .unsolicited })?.note,
                    note.rule == rule
                else {
                    return .skipped("the policy does not refuse step \(index + 1) with \(rule)")
                }
                if case .differs(let reason) = self.oracle.judge(exchange?.response, expected: note.reply) {
                    failures.append(Failure(step: index, rule: rule, expected: "\(note.reply) (\(reason))", got: self.describe(exchange)))
                }
            case .code(let code):
                if reply?.code != code {
                    failures.append(Failure(step: index, rule: nil, expected: "code \(code)", got: self.describe(exchange)))
                }
            case .replyClass(let value):
                if reply.map({ $0.code.value / 100 }) != value {
                    failures.append(Failure(step: index, rule: nil, expected: "a \(value)xx reply", got: self.describe(exchange)))
                }
            case .accepted:
                if reply?.code.isPositive != true {
                    failures.append(Failure(step: index, rule: nil, expected: expectation.description, got: self.describe(exchange)))
                }
            case .refused:
                if reply == nil || reply?.code.isPositive == true {
                    failures.append(Failure(step: index, rule: nil, expected: expectation.description, got: self.describe(exchange)))
                }
            }
        }

        // A session the harness lost (time-out, write failure) proves nothing
        // about the steps it never got a reply to: only failures resting on
        // replies that did come stand.
        var harnessError: String?
        switch actual.end {
        case .timedOut: harnessError = actual.end?.description
        case .failed(let message, _): harnessError = message
        default: break
        }
        if let harnessError {
            failures.removeAll { $0.got.hasPrefix(Self.noReply) }
            return failures.isEmpty ? .error(harnessError) : .failed(failures)
        }
        return failures.isEmpty ? .passed : .failed(failures)
    }
}
