import SMTPPolicy
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer

/// The battery in this repository.
public func battery() throws -> [Scenario] {
    try ScenarioLoader.load([Repository.scenarios])
}

/// Runs scenarios against the in-process reference server. The case
/// time-out only bounds a hang: `make test` runs its suites side by side on
/// two cores, a dozen full batteries in this one process, and under that
/// load the 101 round trips of `discipline.too-many-recipients` passed 20 s.
public func run(_ scenarios: [Scenario], policy: Policy, faults: ServerFaults = [], jobs: Int = 4) async throws -> RunResult {
    try await ScenarioRunner(.init(target: .reference(faults: faults), policy: policy, jobs: jobs, caseTimeout: .seconds(60))).run(
        scenarios)
}

/// The ids of the cases with this verdict label.
public func ids(_ result: RunResult, _ label: String) -> Set<String> {
    Set(result.cases.filter { $0.verdict.label == label }.map(\.scenario.id))
}

/// The cases that did not pass, a line each, for test messages.
public func summary(_ result: RunResult) -> String {
    result.cases.filter { $0.verdict != .passed }.map { "\($0.scenario.id): \($0.verdict)" }.joined(separator: "\n")
}

/// Verdicts and failures in words, for test messages and assertions on wording.
extension Verdict {
    /// The reason of a skip or an error, as every report words it.
    public var reason: String? {
        switch self {
        case .skipped(let reason): Wording().skip(reason)
        case .error(let reason): Wording().error(reason)
        case .passed, .failed: nil
        }
    }

    public var failures: [Failure] {
        if case .failed(let failures) = self { return failures }
        return []
    }
}

extension CaseResult {
    /// The reason of a skip or an error, with what the session waited for.
    public var reason: String? {
        switch self.verdict {
        case .skipped(let reason): Wording().skip(reason)
        case .error(let reason): Wording().error(reason, transcript: self.transcript)
        case .passed, .failed: nil
        }
    }
}

extension Failure {
    public var expectedText: String { Wording().expected(self) }
    public var gotText: String { Wording().observed(self.got) }
}
