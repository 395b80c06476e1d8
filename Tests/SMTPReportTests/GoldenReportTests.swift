import Foundation
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPScenarios
import SMTPTestSupport
import Testing

/// Every report format against a golden file. The run is built without I/O:
/// the "server" is the policy's own session with relaying switched on, so
/// cases fail, pass and skip the same way every time, with no clock, port or
/// random id in them.
@Suite struct GoldenReportTests {
    static let password = "golden-secret-pw"
    static let credentials = Credentials(user: "alice", password: password)

    static func run() async throws -> RunResult {
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": password])
        var openRelay = policy
        openRelay.rules[.relayDenied] = nil
        let wanted = ["relay.external", "helo.bare-hostname", "auth.wrong-password", "discipline.bdat-chunks", "relay.local-delivery"]
        let scenarios = try battery().filter { wanted.contains($0.id) }
        var cases: [CaseResult] = []
        for scenario in scenarios {
            func simulate(_ policy: Policy) async -> Simulation {
                await Simulation.run(
                    scenario, policy: policy, credentials: Self.credentials, client: "192.0.2.10", tls: .starttls,
                    server: "198.51.100.25:25")
            }
            var actual = await simulate(openRelay).transcript
            actual.client = "192.0.2.10:40000"
            actual.server = "198.51.100.25:25"
            for index in actual.exchanges.indices {
                actual.exchanges[index].sentAt = nil
                actual.exchanges[index].repliedAt = nil
            }
            let judge = Judge(
                scenario: scenario, policy: policy, expected: await simulate(policy),
                conformance: Conformance(policy: policy, client: "192.0.2.10"))
            cases.append(CaseResult(scenario: scenario, verdict: judge.verdict(actual: actual), transcript: actual, duration: 0))
        }
        let trusted = try #require(try battery().first { $0.id == "relay.trusted-network" })
        cases.append(CaseResult(scenario: trusted, verdict: .skipped(.needs(.trustedSource)), transcript: nil, duration: 0))
        var lost = Transcript(client: "192.0.2.10:40001", server: "198.51.100.25:25")
        lost.exchanges = [
            .init(role: .greeting, response: .reply(SMTPReply(code: .serviceReady, lines: ["mx.example.net ESMTP"]))),
            .init(role: .answer, step: 0, sent: .command(Array("EHLO client.example.org".utf8))),
        ]
        lost.end = .timedOut(at: 30, unconsumed: Array("250-mx.example.net\r\n250-PIPE".utf8))
        let silent = try #require(try battery().first { $0.id == "helo.valid.fqdn" })
        cases.append(
            CaseResult(scenario: silent, verdict: .error(.session(lost.end ?? .closedByClient(at: 0))), transcript: lost, duration: 0))
        return RunResult(target: "golden server", policy: policy.source, profile: policy.profile, cases: cases, duration: 0)
    }

    /// The flags the command line would name.
    static let wording = Wording { hint in hint == .trustedSource ? "--source ADDR" : nil }

    @Test func everyFormatMatchesItsGoldenFile() async throws {
        let run = try await Self.run()
        #expect(run.count("PASS") > 0 && run.count("FAIL") > 0 && run.count("SKIP") == 1 && run.count("ERROR") == 1, "\(summary(run))")
        let outputs = [
            ("reports/console.txt", ConsoleReporter(useColor: false, verbose: true, wording: Self.wording).render(run)),
            ("reports/json.jsonl", JSONLinesReporter.render(run, wording: Self.wording)),
            ("reports/junit.xml", JUnitReporter.render(run, wording: Self.wording)),
            ("reports/tap.txt", TAPReporter.render(run, wording: Self.wording)),
            ("reports/report.html", HTMLStream.render(run, wording: Self.wording)),
        ]
        // Scenario files are named from wherever the repository was cloned.
        for (name, output) in outputs {
            let text = output.replacingOccurrences(of: Repository.root + "/", with: "")
            #expect(Golden.compare(text, name) == nil, "\(Golden.compare(text, name) ?? "")")
            #expect(!text.contains(Self.password), "\(name) leaks the password")
        }
    }
}
