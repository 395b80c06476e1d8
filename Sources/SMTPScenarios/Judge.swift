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
        return response.singleLine
    }

    /// After the upgrade, a reply the client did not ask for inside TLS: an
    /// unsolicited one, or one shaped like the reply to another command
    /// (more or fewer lines than the policy's reply to the command sent).
    func injectedReplies(_ actual: Transcript) -> [Failure] {
        guard let upgrade = actual.exchanges.firstIndex(where: \.encrypted) else {
            return [Failure(step: nil, rule: nil, expected: "a TLS session after STARTTLS", got: "TLS never came up")]
        }
        let after = actual.exchanges[upgrade...]
        // Replies pair with commands in order, so an answer to the injected
        // command shows first as a reply of the wrong shape to the next
        // command, or, if it came before that command was sent, as unsolicited.
        let expectedAfter = self.expected.exchanges.filter { $0.encrypted && $0.kind != .unsolicited && $0.response != nil }
        if let first = after.first(where: { $0.kind != .unsolicited }), let reply = first.reply, let model = expectedAfter.first?.reply,
            reply.lines.count != model.lines.count || reply.code != model.code
        {
            return [
                Failure(
                    step: first.step, rule: nil,
                    expected:
                        "the reply to \(first.sent?.text ?? "the first command") inside TLS (\(model.code), \(model.lines.count) line(s))",
                    got: "\(reply.singleLine): the server answered the command injected behind STARTTLS")
            ]
        }
        if let unsolicited = after.first(where: { $0.kind == .unsolicited }) {
            return [
                Failure(
                    step: unsolicited.step, rule: nil, expected: "no reply inside TLS to a command sent before it",
                    got: "unsolicited inside TLS: \(unsolicited.response?.singleLine ?? "")")
            ]
        }
        return []
    }

    /// Positive replies nobody asked for: unsolicited ones, or a QUIT
    /// answered as if it were some other command (the replies have shifted).
    func extraReplies(_ actual: Transcript) -> [Failure] {
        var failures: [Failure] = []
        for exchange in actual.exchanges where exchange.kind == .unsolicited {
            guard let reply = exchange.reply, reply.code.isPositive else { continue }
            failures.append(
                Failure(
                    step: exchange.step, rule: nil, expected: "no reply to a command the client did not send",
                    got: "unsolicited \(reply.singleLine): the server saw a command that was data"))
        }
        if let quit = actual.exchanges.last(where: { $0.sent?.text.uppercased() == "QUIT" }), let reply = quit.reply, reply.code.isPositive,
            reply.code != .closing
        {
            failures.append(
                Failure(
                    step: quit.step, rule: nil, expected: "221 to QUIT", got: "\(reply.singleLine): the replies had shifted by an extra one"
                ))
        }
        return failures
    }

    /// For a matrix variant: the case's expectations rewritten to what the
    /// policy answered this identity. A step the policy refuses under another
    /// rule expects that rule; a step it accepts expects acceptance.
    func derivedScenario() -> Scenario {
        var derived = self.scenario
        derived.derivedExpectations = false
        let annotated = self.annotatedExchanges
        func note(of index: Int) -> PolicySession.Reply? {
            annotated.last { $0.exchange.step == index && $0.exchange.kind != .unsolicited }?.note
        }
        for index in derived.steps.indices {
            guard case .rule = derived.steps[index].expectation, let found = note(of: index) else { continue }
            derived.steps[index].expectation = found.rule.map { .rule($0) } ?? .accepted
        }
        let firstRefusal = annotated.first { $0.exchange.step != nil && $0.note.rule != nil }?.note.rule
        if !derived.refusedBy.isEmpty || derived.acceptedThroughout {
            let applied = derived.refusedBy.filter { rule in annotated.contains { $0.note.rule == rule || $0.note.deferredRule == rule } }
            if !applied.isEmpty {
                derived.refusedBy = applied
                derived.acceptedThroughout = false
            } else if let firstRefusal {
                derived.refusedBy = [firstRefusal]
                derived.acceptedThroughout = false
            } else {
                derived.refusedBy = []
                derived.acceptedThroughout = true
            }
        }
        return derived
    }

    func verdict(actual: Transcript) -> Verdict {
        if self.scenario.derivedExpectations {
            return Judge(scenario: self.derivedScenario(), oracle: self.oracle, expected: self.expected, annotations: self.annotations)
                .verdict(actual: actual)
        }
        var failures: [Failure] = []
        let policy = self.oracle.policy
        let annotated = self.annotatedExchanges

        guard let banner = actual.exchanges.first(where: { $0.kind == .banner }), let greeting = banner.reply else {
            if case .timedOut = actual.end { return .error("no greeting: \(actual.end?.description ?? "")") }
            return .error("no greeting: \(actual.end?.description ?? "the connection ended")")
        }
        guard greeting.code == .serviceReady else {
            return .failed([Failure(step: nil, rule: nil, expected: "a 220 greeting", got: greeting.singleLine)])
        }

        // A case that expects a step accepted does not apply where the policy
        // refuses that step (AUTH before TLS on a submission policy, say).
        for (index, step) in self.scenario.steps.enumerated() {
            let positive: Bool
            switch step.expectation {
            case .accepted: positive = true
            case .code(let code): positive = code.isPositive
            case .replyClass(let value): positive = value == 2 || value == 3
            default: positive = self.scenario.acceptedThroughout
            }
            guard positive, let note = annotated.last(where: { $0.exchange.step == index && $0.exchange.kind != .unsolicited })?.note,
                !note.reply.code.isPositive
            else { continue }
            let cause = annotated.first { ($0.exchange.step ?? Int.max) <= index && $0.note.rule != nil }?.note.rule
            let why = cause.map { $0 != note.rule ? ", after \($0)" : "" } ?? ""
            return .skipped(
                "the policy refuses step \(index + 1) (\(note.rule.map(\.rawValue) ?? "\(note.reply.code)")\(why)): the case does not apply to it"
            )
        }

        if self.scenario.noInjectedReply {
            failures += self.injectedReplies(actual)
        }
        if self.scenario.noExtraReplies {
            failures += self.extraReplies(actual)
        }

        for rule in self.scenario.refusedBy {
            guard policy.isEnabled(rule) else { return .skipped("the policy does not enforce \(rule)") }
            guard let trigger = annotated.first(where: { $0.note.rule == rule || $0.note.deferredRule == rule }),
                let triggerStep = trigger.exchange.step
            else {
                let other = annotated.first { $0.note.rule != nil && $0.exchange.step != nil }
                let instead =
                    other.map { " (it refuses step \(($0.exchange.step ?? 0) + 1) with \($0.note.rule.map(\.rawValue) ?? "") first)" } ?? ""
                return .skipped("the policy does not apply \(rule) to these steps\(instead)")
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
                    // Unless an earlier greeting still holds: a refused HELO changes nothing (RFC 5321 4.1.4).
                    let simulated = annotated.last { $0.exchange.step == exchange.step && $0.exchange.kind == .command }
                    if simulated?.exchange.reply?.code.replyClass == .positiveCompletion { continue }
                    failures.append(
                        Failure(
                            step: exchange.step, rule: rule, expected: "no recipient accepted after \(rule) was broken",
                            got: "\(sent.text) -> \(reply.singleLine)"))
                }
            }
        }

        if self.scenario.acceptedThroughout {
            for (index, _) in self.scenario.steps.enumerated() {
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
                let found = annotated.last { $0.exchange.step == index && $0.exchange.kind != .unsolicited }?.note
                if rule == .unauthPipelining && self.scenario.steps.first?.beforeGreeting == true
                    && policy.limits.greetPauseMilliseconds == 0
                {
                    return .skipped(
                        "the policy has no greeting pause (greet_pause_ms), so a client that talks first cannot be told from a fast one")
                }
                guard let note = found, note.rule == rule else {
                    let instead = found.map { $0.rule.map { "refuses it with \($0)" } ?? "accepts it" } ?? "does not reach it"
                    let cause =
                        annotated.first { ($0.exchange.step ?? Int.max) <= index && $0.note.rule != nil && $0.note.rule != found?.rule }.map
                    {
                        " (after refusing step \(($0.exchange.step ?? 0) + 1) with \($0.note.rule.map(\.rawValue) ?? ""))"
                    } ?? ""
                    return .skipped("the policy \(instead), not \(rule), at step \(index + 1)\(cause)")
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
