import SMTPPolicy
import SMTPProtocol
import SMTPScenarios

/// What the identity variants begin with (AUTH, XCLIENT), tried once per
/// run: a server that fails a prelude shows it once, in a case of its own,
/// not once in every variant that begins with it.
struct Preludes: Sendable {
    /// How a prelude went.
    enum Outcome: Sendable {
        case works
        /// The variants that need it cannot run, for this reason.
        case unusable(SkipReason)
    }

    var authentication: Outcome = .works
    var xclient: Outcome = .works
    /// The server refuses a second HELO/EHLO after the prelude (RFC 5321
    /// 4.1.4 lets it): a HELO case after a prelude tests nothing.
    var secondGreetingRefused = false
    /// The prelude's own cases, to report.
    var results: [CaseResult] = []

    static let authenticationID = "prelude.authenticated"
    static let xclientID = "prelude.xclient"

    /// The case a prelude is tried as: the prelude, then the EHLO every variant begins with.
    static func scenario(_ id: String, identity: Scenario.Identity, title: String) -> Scenario {
        var scenario = Scenario(
            id: id, title: title, refs: ["RFC 5321 4.1.4", "RFC 4954 4"], tags: ["prelude"], identity: identity,
            steps: [Step(action: .send("EHLO client.example.org"), expectation: .accepted, repeatCount: .times(1), line: 0)],
            file: "(the identity variants' prelude)")
        scenario.derivedExpectations = false
        return scenario
    }

    /// Whether `scenario` may run given how its prelude went; the reason if not.
    func skip(_ scenario: Scenario) -> SkipReason? {
        guard scenario.derivedExpectations else { return nil }
        let outcome: Outcome
        let id: String
        switch scenario.identity {
        case .authenticated: (outcome, id) = (self.authentication, Self.authenticationID)
        case .xclient, .xclientTrusted: (outcome, id) = (self.xclient, Self.xclientID)
        default: return nil
        }
        if case .unusable(let reason) = outcome { return reason }
        let greets =
            scenario.steps.first.map { step -> Bool in
                guard case .send(let line) = step.action else { return false }
                let verb = SMTPCommand(line: Array(line.utf8)).verb
                return verb == .helo || verb == .ehlo
            } ?? false
        if self.secondGreetingRefused && greets && !scenario.rulesNamed.isDisjoint(with: RuleID.heloNameRules) {
            return .secondGreetingRefused(prelude: id)
        }
        return nil
    }
}

extension LiveCase {
    /// Tries each prelude the scenarios need, once.
    func probePreludes(for scenarios: [Scenario]) async -> Preludes {
        var preludes = Preludes()
        let needs = Set(scenarios.filter(\.derivedExpectations).map(\.identity))
        if needs.contains(.authenticated) {
            let scenario = Preludes.scenario(
                Preludes.authenticationID, identity: .authenticated,
                title: "EHLO again after the AUTH the authenticated variants begin with")
            preludes.authentication = self.prelude(
                scenario, into: &preludes, result: await self.run(scenario, prelude: Executor.Prelude.authenticate))
        }
        if needs.contains(.xclient) || needs.contains(.xclientTrusted) {
            let scenario = Preludes.scenario(
                Preludes.xclientID, identity: .xclient, title: "EHLO again after the XCLIENT the XCLIENT variants begin with")
            preludes.xclient = self.prelude(
                scenario, into: &preludes, result: await self.run(scenario, prelude: .xclient(self.impersonated(trusted: false))))
        }
        return preludes
    }

    /// How a prelude's own case went: the variants run, or skip pointing at it.
    private func prelude(_ scenario: Scenario, into preludes: inout Preludes, result outcome: Outcome) -> Preludes.Outcome {
        let result = outcome.result
        preludes.results.append(result)
        if let transcript = result.transcript, Self.secondGreetingRefused(transcript) { preludes.secondGreetingRefused = true }
        switch result.verdict {
        case .passed: return .works
        case .skipped(let reason): return .unusable(reason)
        case .failed: return .unusable(.preludeFailed(scenario.id))
        case .error: return .unusable(.preludeFailed(scenario.id))
        }
    }

    /// The EHLO after the prelude was refused where an earlier one stood.
    static func secondGreetingRefused(_ transcript: Transcript) -> Bool {
        let greetings = transcript.exchanges.filter { $0.command?.verb == .ehlo || $0.command?.verb == .helo }
        guard greetings.count >= 2, greetings.first?.reply?.code == .ok, let last = greetings.last?.reply else { return false }
        return !last.code.isPositive
    }
}
