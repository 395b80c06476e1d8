import SMTPCapture
import SMTPPolicy
import SMTPProtocol

/// How one case went.
public enum Verdict: Sendable, Hashable {
    case passed
    /// The target broke the policy.
    case failed([Failure])
    /// The case could not be run (unreachable, time-out); nothing was judged.
    case error(String)
    /// The case does not apply to this target or policy; the reason says why.
    case skipped(String)

    public var label: String {
        switch self {
        case .passed: "PASS"
        case .failed: "FAIL"
        case .error: "ERROR"
        case .skipped: "SKIP"
        }
    }
}

/// One way the target broke the policy, with what was due and what came.
public struct Failure: Sendable, Hashable {
    /// The scenario step (0-based) where the reply was due.
    public var step: Int?
    public var rule: RuleID?
    /// The reply (or class) that was due, and when.
    public var expected: String
    public var got: String

    public init(step: Int?, rule: RuleID?, expected: String, got: String) {
        self.step = step
        self.rule = rule
        self.expected = expected
        self.got = got
    }
}

public struct CaseResult: Sendable {
    public var scenario: Scenario
    public var verdict: Verdict
    /// What was said on the wire; `nil` when no connection was made.
    public var transcript: Transcript?
    /// Seconds the case took.
    public var duration: Double
    /// The case's traffic as packets, when the run records (`run --record`).
    public var packets: [PcapWriter.Packet] = []

    public init(scenario: Scenario, verdict: Verdict, transcript: Transcript?, duration: Double) {
        self.scenario = scenario
        self.verdict = verdict
        self.transcript = transcript
        self.duration = duration
    }
}

/// A whole run.
public struct RunResult: Sendable {
    public var target: String
    public var policy: String
    public var profile: Profile
    public var cases: [CaseResult]
    public var duration: Double

    public init(target: String, policy: String, profile: Profile, cases: [CaseResult], duration: Double) {
        self.target = target
        self.policy = policy
        self.profile = profile
        self.cases = cases
        self.duration = duration
    }

    public func count(_ label: String) -> Int { self.cases.filter { $0.verdict.label == label }.count }

    /// DESIGN.md's exit codes: 1 if any case failed; else 2 if any could not run; else 0.
    public var exitCode: Int32 {
        if self.cases.contains(where: { if case .failed = $0.verdict { true } else { false } }) { return 1 }
        if self.cases.contains(where: { if case .error = $0.verdict { true } else { false } }) { return 2 }
        return 0
    }
}
