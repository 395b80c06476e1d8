import Foundation
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite struct ReportTests {
    static let password = "Zq8-unmistakable-Secret"

    func authRun(faults: ServerFaults = []) async throws -> RunResult {
        let scenarios = try battery().filter { $0.tags.contains("auth") }
        #expect(scenarios.count >= 5)
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": Self.password])
        return try await ScenarioRunner(.init(target: .reference(faults: faults), policy: policy)).run(scenarios)
    }

    static func renderAll(_ run: RunResult) -> [String: String] {
        [
            "console": ConsoleReporter(useColor: false, verbose: true).render(run),
            "json": JSONLinesReporter.render(run),
            "junit": JUnitReporter.render(run),
            "tap": TAPReporter.render(run),
        ]
    }

    /// No password, in any encoding a client sends it, reaches any report.
    @Test(arguments: [ServerFaults(), .acceptAnyPassword, .openRelay])
    func noPasswordInAnyFormat(faults: ServerFaults) async throws {
        let run = try await self.authRun(faults: faults)
        let secrets = [
            Self.password, SASL.base64(Self.password.utf8), SASL.plainResponse(user: "alice", password: Self.password),
            Self.password + "-wrong", SASL.base64((Self.password + "-wrong").utf8),
            SASL.plainResponse(user: "alice", password: Self.password + "-wrong"),
        ]
        for (format, text) in Self.renderAll(run) {
            // TAP shows transcripts only for cases that did not pass.
            if format != "tap" || run.cases.contains(where: { $0.verdict.label == "FAIL" }) {
                #expect(text.contains("redacted"), "\(format) shows no redaction marker")
            }
            for secret in secrets { #expect(!text.contains(secret), "\(format) leaks \(secret)") }
        }
    }

    @Test func jsonLinesAreOneObjectPerCaseAndASummary() async throws {
        let run = try await self.authRun(faults: .openRelay)
        let lines = JSONLinesReporter.render(run).split(separator: "\n")
        #expect(lines.count == run.cases.count + 1)
        var verdicts: [String] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if object["type"] as? String == "case" {
                verdicts.append(try #require(object["verdict"] as? String))
            } else {
                #expect(object["type"] as? String == "summary")
                #expect(object["failed"] as? Int == run.count("FAIL"))
            }
        }
        #expect(verdicts.contains("fail"))
        #expect(verdicts.count == run.cases.count)
    }

    @Test func junitSeparatesFailuresErrorsAndSkips() async throws {
        let port = try await refusedPort()
        let unreachable = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: port)), policy: .defaultSite())
        )
        .run(try battery().prefix(3).map { $0 })
        let xml = JUnitReporter.render(unreachable)
        #expect(xml.contains("errors=\"3\""))
        #expect(xml.components(separatedBy: "<error ").count == 4)
        #expect(!xml.contains("<failure"))
        let failing = JUnitReporter.render(try await self.authRun(faults: .openRelay))
        #expect(failing.contains("<failure message=\"relay.denied: expected"))
        #expect(failing.contains("<system-out>"))
        let parser = XMLParser(data: Data(failing.utf8))
        #expect(parser.parse(), "JUnit output is not well-formed XML")
        #expect(TAPReporter.render(unreachable).contains("Bail out!"))
    }

    /// Issue 11, 8. Captures checked together: a JUnit suite each, so that
    /// their `session-1`s are never merged, and the console names each file.
    @Test func casesOfSeveralCapturesStayWithTheirFile() throws {
        func result(_ file: String, _ verdict: Verdict) -> CaseResult {
            CaseResult(
                scenario: Scenario(id: "session-1", title: "a -> b", tags: ["capture"], file: file), verdict: verdict, transcript: nil,
                duration: 0.05)
        }
        var run = RunResult(
            target: "capture a.pcap, b.pcap", policy: "default", profile: .documented,
            cases: [result("a.pcap", .passed), result("b.pcap", .skipped(.nothingAnswered))], duration: 0.1)
        run.groupedByFile = true
        let xml = JUnitReporter.render(run)
        #expect(xml.components(separatedBy: "<testsuite ").count == 3)
        #expect(xml.contains("<testsuite name=\"smtpcheck against capture a.pcap\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\""))
        #expect(xml.contains("<testsuite name=\"smtpcheck against capture b.pcap\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\""))
        #expect(XMLParser(data: Data(xml.utf8)).parse())
        let console = ConsoleReporter(useColor: false).render(run)
        #expect(console.contains("== a.pcap\nPASS  session-1"))
        #expect(console.contains("== b.pcap\nSKIP  session-1"))
    }

    /// A client line of any length is shown cut, with its size.
    @Test func aLongClientLineIsShownCut() {
        let line = Wording().unit(.command(Array(repeating: UInt8(ascii: "y"), count: 36_000)))
        #expect(line.count < 1_100)
        #expect(line.hasSuffix("... (36000 octets)"))
    }

    @Test func tapIsVersion14WithAPlanAndSkips() async throws {
        var policy = Policy.defaultSite()
        policy.trustedNetworks = []
        let run = try await ScenarioRunner(.init(target: .reference(faults: .openRelay), policy: policy)).run(try battery())
        let tap = TAPReporter.render(run)
        let lines = tap.split(separator: "\n")
        #expect(lines[0] == "TAP version 14")
        #expect(lines[1] == "1..\(run.cases.count)")
        #expect(tap.contains("# SKIP"))
        #expect(tap.contains("not ok"))
        #expect(lines.filter { $0.hasPrefix("ok ") || $0.hasPrefix("not ok ") }.count == run.cases.count)
    }

    @Test func consoleShowsRuleExpectedGotAndTranscript() async throws {
        let run = try await self.authRun(faults: .openRelay)
        let text = ConsoleReporter(useColor: false).render(run)
        #expect(text.contains("FAIL  auth.wrong-password"))
        #expect(text.contains("rule relay.denied, step 4: expected 554 5.7.1 <someone@example.org>: Relay access denied"))
        #expect(text.contains("got: 250 2.1.5 Ok"))
        #expect(text.contains("[4] C: RCPT TO:<someone@example.org>"))
        #expect(!text.contains("\u{1B}["))
        #expect(ConsoleReporter(useColor: true).render(run).contains("\u{1B}[31;1mFAIL"))
        #expect(text.hasSuffix(" s\n"))
    }
}
