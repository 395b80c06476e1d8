import SMTPPolicy
import SMTPProtocol

/// Judges one case: the session that was recorded, against what the policy
/// demands of the same steps. Pure: transcripts in, verdict out.
///
/// The policy's own run of the case (``Simulation``) says whether the case
/// applies and where each rule falls due; the lock-step walk
/// (``Conformance``) says what every reply that came was worth.
public struct Judge: Sendable {
    public let scenario: Scenario
    public let policy: Policy
    public let expected: Simulation
    /// The walk's view of the client: whom the policy sees, and the socket behind a PROXY header.
    public let conformance: Conformance
    /// A derived variant whose steps a gate (TLS or AUTH required) refuses
    /// before its own topic is reached: it tests the gate, not itself.
    var gated: SkipReason?

    public init(scenario: Scenario, policy: Policy, expected: Simulation, conformance: Conformance) {
        self.scenario = scenario
        self.policy = policy
        self.expected = expected
        self.conformance = conformance
    }

    /// The rules that refuse everything behind them until the client has done something (STARTTLS, AUTH).
    static let gates: Set<RuleID> = [.authTLSRequired, .authRequired]

    private var oracle: PolicyOracle { self.conformance.oracle }

    public func verdict(actual: Transcript) -> Verdict {
        var judge = self
        if self.scenario.derivedExpectations { judge = Judge(derived: self) }
        return judge.judged(actual)
    }

    private func judged(_ actual: Transcript) -> Verdict {
        guard let banner = actual.exchanges.first(where: { $0.role == .greeting }), let response = banner.response else {
            return .error(.noGreeting(actual.end))
        }
        guard response.reply?.code == .serviceReady else {
            return .failed([Failure(step: nil, rule: nil, expected: .greeting, got: .reply(response))])
        }
        if let skip = self.gated ?? self.applicability() { return .skipped(skip) }
        let judgements = self.conformance.walk(actual)
        var failures: [Failure] = []
        if self.scenario.noInjectedReply { failures += self.injectedReplies(actual) }
        if case .failed(.plaintextAfterTLS(let octets, let preview), _) = actual.end {
            // A TLS finding: the server left TLS and went on in plain text.
            let step = actual.exchanges.last { $0.step != nil }?.step
            failures.append(
                Failure(step: step, rule: nil, expected: .staysInTLS, got: .plaintextAfterTLS(octets: octets, preview: preview)))
        }
        if case .failed(.tlsHandshake(let cause), _) = actual.end, let last = actual.exchanges.last, let step = last.step,
            last.command?.verb == .starttls, last.reply?.code == .serviceReady
        {
            // A step's STARTTLS got 220 and then the handshake failed: the
            // server offered TLS and could not give it (RFC 3207 4.1).
            failures.append(Failure(step: step, rule: nil, expected: .tlsSession, got: .handshakeFailed(cause)))
        }
        if self.scenario.noExtraReplies { failures += self.extraReplies(actual) }
        for rule in self.scenario.refusedBy {
            switch self.refusal(of: rule, actual, judgements) {
            case .skip(let reason): return .skipped(reason)
            case .failures(let found): failures += found
            }
        }
        if self.scenario.acceptedThroughout {
            for index in self.scenario.steps.indices {
                let final = Self.finalExchangeIndex(of: index, in: actual)
                let exchange = final.map { actual.exchanges[$0] }
                if exchange?.reply?.code.isPositive != true && !Self.walkAllows(final, judgements) {
                    failures.append(Failure(step: index, rule: nil, expected: .accepted, got: Self.observed(exchange)))
                }
            }
        }
        for (index, step) in self.scenario.steps.enumerated() {
            guard let expectation = step.expectation else { continue }
            switch self.stepExpectation(expectation, at: index, actual, judgements) {
            case .skip(let reason): return .skipped(reason)
            case .failures(let found): failures += found
            }
        }
        // A session the harness lost (time-out, failed write) proves nothing
        // about the steps it never got a reply to: only failures resting on
        // replies that did come stand.
        switch actual.end {
        case .timedOut, .failed:
            failures.removeAll { $0.got == .noReply || $0.got == .window([]) || $0.got == .window([nil]) }
            if failures.isEmpty, let end = actual.end { return .error(.session(end)) }
        default:
            break
        }
        return failures.isEmpty ? .passed : .failed(failures)
    }

    /// A refusal's `{helo}` and `{rcpt}` as the session wrote them: the
    /// last HELO/EHLO name and the last recipient.
    static func values(in transcript: Transcript) -> [String: String] {
        var values: [String: String] = [:]
        for exchange in transcript.exchanges {
            guard let command = exchange.command else { continue }
            switch command.verb {
            case .helo, .ehlo: values["helo"] = command.argument
            case .rcpt: values["rcpt"] = PolicySession.addressText(command.argument)
            default: break
            }
        }
        return values
    }

    private enum Finding {
        case skip(SkipReason)
        case failures([Failure])
    }

    /// A case that expects a step accepted does not apply where the policy
    /// refuses that step (AUTH before TLS on a submission policy, say).
    private func applicability() -> SkipReason? {
        let annotated = self.expected.annotated
        for (index, step) in self.scenario.steps.enumerated() {
            let positive: Bool
            switch step.expectation {
            case .accepted: positive = true
            case .code(let code): positive = code.isPositive
            case .replyClass(let value): positive = value == 2 || value == 3
            // A case that looks for replies that should not come (smuggling,
            // commands after QUIT) rests on the steps leading up to its last
            // being taken: where the policy refuses one, it tests nothing.
            default: positive = self.scenario.acceptedThroughout || (self.scenario.noExtraReplies && index < self.scenario.steps.count - 1)
            }
            guard positive, let note = self.expected.note(at: index), !note.reply.code.isPositive else { continue }
            let cause = annotated.first { ($0.exchange.step ?? Int.max) <= index && $0.note.rule != nil }?.note.rule
            return .stepRefused(step: index, by: note.rule, code: note.reply.code, after: cause != note.rule ? cause : nil)
        }
        return nil
    }

    /// `refused: RULE`: the rule's refusal must come when the policy's timing
    /// wants it. The walk decides: a reply where the refusal was due that
    /// breaks it fails the case; one that keeps it passes it; a session that
    /// never came to the rule fails where it left the policy's path.
    /// A limit the policy does not state is not judged: the server's own is
    /// as good (SIZE aside, which is judged against the SIZE the server offers).
    private func unstatedLimit(_ rule: RuleID) -> SkipReason? {
        guard let limit = Policy.limit(of: rule), rule != .mailTooBig, !self.policy.statedLimits.contains(limit) else { return nil }
        return .limitNotStated(limit)
    }

    private func refusal(of rule: RuleID, _ actual: Transcript, _ judgements: [Judgement]) -> Finding {
        guard self.policy.isEnabled(rule) else { return .skip(.ruleOff(rule)) }
        if let unstated = self.unstatedLimit(rule) { return .skip(unstated) }
        guard let window = self.expected.window(of: rule) else {
            return .skip(.ruleNotApplied(rule, refusedFirst: self.expected.firstRefusal))
        }
        let expectedReply =
            self.expected.annotated.first { $0.note.rule == rule }?.note.reply ?? self.oracle.refusal(rule, Self.values(in: actual))
        let due: Expectation.Due =
            window.due.map { $0 == window.trigger ? .atStep(window.trigger) : .between(window.trigger, $0, self.policy.timing(of: rule)) }
            ?? .atStep(window.trigger)
        let about = judgements.filter { $0.rule == rule }
        if let broken = about.first(where: { $0.isBroken }) {
            let exchange = actual.exchanges[broken.exchange]
            var mismatch: Mismatch?
            if case .broken(let found) = broken.outcome { mismatch = found }
            let got: Observation
            switch (broken.demand, exchange.response) {
            case (_, nil):
                got = .noReply
            case (.refusal, .some(let response)) where response.reply?.code.isPositive == true:
                let laterRecipient = RuleID.heloNameRules.contains(rule) && exchange.command?.verb == .rcpt && broken.step != window.trigger
                got = laterRecipient ? .acceptedRecipient(exchange.sent, response) : .accepting(response, exchange.sent)
            case (.acceptance, .some(let response)):
                // Refused at the HELO, but not as the rule's refusal.
                got = .reply(response)
                mismatch = self.oracle.mismatch(response, against: rule, values: ["helo": exchange.command?.argument ?? ""])
            case (_, .some(let response)):
                got = .reply(response)
            }
            return .failures([
                Failure(
                    step: broken.step ?? window.trigger, rule: rule, expected: .refusal(expectedReply, due: due), got: got,
                    mismatch: mismatch)
            ])
        }
        if about.contains(where: Self.keeps) { return .failures([]) }
        // The rule was never due in the real session: it left the policy's
        // path earlier (a reply the policy does not give), or it ended.
        if let departure = judgements.first(where: { $0.isBroken && ($0.step ?? Int.max) <= (window.due ?? window.trigger) }) {
            let exchange = actual.exchanges[departure.exchange]
            if case .acceptance(let model, _) = departure.demand, let response = exchange.response {
                return .failures([
                    Failure(step: departure.step, rule: nil, expected: .acceptance(model), got: .refusing(response, exchange.sent))
                ])
            }
        }
        let last = (window.due ?? window.trigger) + (rule == .tooManyErrors || rule == .idleTimeout ? 1 : 0)
        let replies = actual.exchanges.filter { ($0.step ?? -1) >= window.trigger && ($0.step ?? -1) <= last }.map(\.response)
        return .failures([Failure(step: window.trigger, rule: rule, expected: .refusal(expectedReply, due: due), got: .window(replies))])
    }

    private func stepExpectation(_ expectation: StepExpectation, at index: Int, _ actual: Transcript, _ judgements: [Judgement])
        -> Finding
    {
        let final = Self.finalExchangeIndex(of: index, in: actual)
        let exchange = final.map { actual.exchanges[$0] }
        let reply = exchange?.reply
        let got = Self.observed(exchange)
        switch expectation {
        case .rule(let rule):
            guard self.policy.isEnabled(rule) else { return .skip(.ruleOff(rule)) }
            if let unstated = self.unstatedLimit(rule) { return .skip(unstated) }
            let found = self.expected.note(at: index)
            if rule == .unauthPipelining && self.scenario.steps.first?.beforeGreeting == true && !Allowances.earlyTalkJudgeable(self.policy)
            {
                return .skip(.noGreetingPause)
            }
            if let refused = judgements.first(where: {
                $0.outcome == .allowed(.secondGreetingRefused) && ($0.step ?? Int.max) < index
            }), let step = refused.step {
                return .skip(.greetingRefused(step: step))
            }
            guard let note = found, note.rule == rule else {
                let outcome: SkipReason.StepOutcome = found.map { $0.rule.map { .refusesWith($0) } ?? .accepts } ?? .notReached
                let cause = self.expected.annotated.first {
                    ($0.exchange.step ?? Int.max) <= index && $0.note.rule != nil && $0.note.rule != found?.rule
                }
                let after = cause.flatMap { entry in
                    entry.note.rule.flatMap { rule in entry.exchange.step.map { SkipReason.StepRule(step: $0, rule: rule) } }
                }
                return .skip(.stepNotRefusedBy(rule, step: index, policy: outcome, after: after))
            }
            guard let response = exchange?.response else {
                return .failures([Failure(step: index, rule: rule, expected: .refusal(note.reply, due: .atStep(index)), got: .noReply)])
            }
            // Where the walk judged this reply under the rule, its verdict
            // (with the allowances) stands; else the policy's own reply is the measure.
            if let judged = judgements.first(where: { $0.exchange == final && $0.rule == rule }), !judged.isBroken {
                return .failures([])
            }
            guard let mismatch = self.oracle.mismatch(response, expected: note.reply) else { return .failures([]) }
            let closing = self.expected.annotated.first { $0.exchange.step == index && $0.note.rule == .tooManyErrors }?.note.reply
            if Allowances.closingInPlace(response, closing: closing, oracle: self.oracle) { return .failures([]) }
            // An acceptance where the refusal was due says all by itself.
            let accepted = response.reply?.code.isPositive == true
            return .failures([
                Failure(
                    step: index, rule: rule, expected: .refusal(note.reply, due: .atStep(index)),
                    got: accepted ? .accepting(response, exchange?.sent) : got, mismatch: accepted ? nil : mismatch)
            ])
        case .code(let code):
            return .failures(reply?.code == code ? [] : [Failure(step: index, rule: nil, expected: .code(code), got: got)])
        case .replyClass(let value):
            let matches = reply.map { $0.code.value / 100 } == value
            return .failures(matches ? [] : [Failure(step: index, rule: nil, expected: .replyClass(value), got: got)])
        case .accepted:
            let accepted = reply?.code.isPositive == true || Self.walkAllows(final, judgements)
            return .failures(accepted ? [] : [Failure(step: index, rule: nil, expected: .accepted, got: got)])
        case .refused:
            let refused = reply.map { !$0.code.isPositive } ?? false
            return .failures(refused ? [] : [Failure(step: index, rule: nil, expected: .refused, got: got)])
        }
    }

    /// After the upgrade, a reply the client did not ask for inside TLS: an
    /// unsolicited one, or one shaped like the reply to another command
    /// (more or fewer lines than the policy's reply to the command sent).
    func injectedReplies(_ actual: Transcript) -> [Failure] {
        guard let upgrade = actual.exchanges.firstIndex(where: \.encrypted) else {
            // A server that refused the STARTTLS answered nothing inside TLS:
            // the injection could not happen.
            let starttls = actual.exchanges.last { $0.sent?.leadingCommand?.verb == .starttls }
            if let reply = starttls?.reply, !reply.code.isPositive { return [] }
            return [Failure(step: nil, rule: nil, expected: .tlsSession, got: .noTLS)]
        }
        let after = actual.exchanges[upgrade...]
        // Replies pair with commands in order, so an answer to the injected
        // command shows first as a reply of the wrong shape to the next
        // command, or, if it came before that command was sent, as unsolicited.
        let expectedAfter = self.expected.transcript.exchanges.filter { $0.encrypted && $0.role == .answer && $0.response != nil }
        if let first = after.first(where: { $0.role != .unsolicited }), let response = first.response, let reply = response.reply,
            let model = expectedAfter.first?.reply, reply.lines.count != model.lines.count || reply.code != model.code
        {
            return [
                Failure(
                    step: first.step, rule: nil, expected: .replyInsideTLS(to: first.sent, code: model.code, lines: model.lines.count),
                    got: .injectedAnswer(response))
            ]
        }
        if let unsolicited = after.first(where: { $0.role == .unsolicited }), let response = unsolicited.response {
            return [Failure(step: unsolicited.step, rule: nil, expected: .noUnaskedReply, got: .unasked(response))]
        }
        return []
    }

    /// Positive replies nobody asked for: unsolicited ones, or a QUIT
    /// answered as if it were some other command (the replies have shifted).
    func extraReplies(_ actual: Transcript) -> [Failure] {
        var failures: [Failure] = []
        for exchange in actual.exchanges where exchange.role == .unsolicited {
            guard let response = exchange.response, response.reply?.code.isPositive == true else { continue }
            // A reply while the client paused inside its message: the server ended it at what it wrote so far.
            let paused = exchange.step.map { self.scenario.steps.indices.contains($0) && self.scenario.steps[$0].pauseMilliseconds != nil }
            if paused == true {
                failures.append(Failure(step: exchange.step, rule: nil, expected: .messageGoesOn, got: .endedEarly(response)))
            } else {
                failures.append(Failure(step: exchange.step, rule: nil, expected: .noUnaskedReply, got: .unasked(response)))
            }
        }
        if let quit = actual.exchanges.last(where: { $0.command?.verb == .quit }), let response = quit.response,
            let reply = response.reply, reply.code.isPositive, reply.code != .closing
        {
            failures.append(Failure(step: quit.step, rule: nil, expected: .quitAnswered, got: .shiftedQuit(response)))
        }
        return failures
    }

    static func finalExchange(of step: Int, in transcript: Transcript) -> Transcript.Exchange? {
        self.finalExchangeIndex(of: step, in: transcript).map { transcript.exchanges[$0] }
    }

    static func finalExchangeIndex(of step: Int, in transcript: Transcript) -> Int? {
        transcript.exchanges.lastIndex { $0.step == step && $0.role == .answer && $0.response != nil }
    }

    /// Whether the walk let the reply at this exchange through by an allowance or a waiver.
    static func walkAllows(_ index: Int?, _ judgements: [Judgement]) -> Bool {
        judgements.contains { judgement in
            guard judgement.exchange == index else { return false }
            if case .allowed = judgement.outcome { return true }
            if case .free(.waived) = judgement.demand { return true }
            return false
        }
    }

    /// Whether a judgement about a rule shows the rule kept: its refusal
    /// came (or an allowance took its place).
    static func keeps(_ judgement: Judgement) -> Bool {
        switch (judgement.demand, judgement.outcome) {
        case (.refusal, .met), (.refusal, .allowed), (.closing, .met), (.closing, .allowed): true
        case (.acceptance, .allowed(.refusedEarlier)): true
        default: false
        }
    }

    static func observed(_ exchange: Transcript.Exchange?) -> Observation {
        exchange?.response.map { .reply($0) } ?? .noReply
    }
}

extension Judge {
    /// For a matrix variant: the case's expectations rewritten to what the
    /// policy answered this identity. A step the policy refuses under
    /// another rule expects that rule; a step it accepts expects acceptance.
    init(derived judge: Judge) {
        var derived = judge.scenario
        derived.derivedExpectations = false
        let annotated = judge.expected.annotated
        for index in derived.steps.indices {
            guard case .rule = derived.steps[index].expectation, let found = judge.expected.note(at: index) else { continue }
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
        self.init(scenario: derived, policy: judge.policy, expected: judge.expected, conformance: judge.conformance)
        if let gate = annotated.first(where: { entry in
            entry.exchange.step != nil && entry.note.rule.map { Self.gates.contains($0) && !judge.scenario.rulesNamed.contains($0) } == true
        }), let step = gate.exchange.step {
            self.gated = .stepRefused(step: step, by: gate.note.rule, code: gate.note.reply.code, after: nil)
        }
    }
}
