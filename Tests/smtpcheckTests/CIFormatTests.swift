import Foundation
import SMTPTestSupport
import Testing

/// Issue 13, 4: reports that CI systems read as they are.
@Suite struct CIFormatTests {
    /// The line of `needle` in a scenario file, 1-based.
    static func line(of needle: String, in file: String) throws -> Int {
        let text = try String(contentsOfFile: Repository.root + "/" + file, encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        return (lines.firstIndex { $0.contains(needle) } ?? -1) + 1
    }

    @Test func githubAnnotatesTheFailingStepAndWritesAJobSummary() async throws {
        let summary = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-summary-\(UUID().uuidString).md").path
        try "earlier step\n".write(toFile: summary, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: summary) }
        let output = try await Tool.run(
            "run", ["--fault", "open-relay", "--tag", "relay", "--format", "github"], environment: ["GITHUB_STEP_SUMMARY": summary])
        #expect(output.status == 1)
        let file = "scenarios/relay/relay-external.yaml"
        let line = try Self.line(of: "RCPT TO:<someone@example.org>", in: file)
        #expect(line > 1)
        let annotation = output.stdout.components(separatedBy: "\n").first {
            $0.hasPrefix("::error file=\(file),line=\(line),title=smtpcheck relay.external::")
        }
        #expect(annotation?.contains("rule relay.denied, step 3: expected 554 5.7.1") == true, "\(output.stdout.prefix(600))")
        // What the server said is shown with workflow commands stopped around it.
        let opened = output.stdout.components(separatedBy: "::stop-commands::").count - 1
        #expect(opened > 0)
        #expect(output.stdout.contains("::group::relay.external transcript"))
        let written = try String(contentsOfFile: summary, encoding: .utf8)
        #expect(written.hasPrefix("earlier step\n## smtpcheck against in-process reference server"), "appended, not replaced")
        #expect(written.contains("| ❌ FAIL | `relay.external` |"))
        #expect(!written.contains("✅ PASS"), "the job summary lists only the cases that did not pass")
    }

    @Test func markdownIsATableWithARowPerCase() async throws {
        let output = try await Tool.run("run", "--tag", "helo", "--format", "markdown")
        #expect(output.status == 0)
        let rows = output.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("| ✅ PASS |") }
        #expect(rows.count == 64)
        #expect(output.stdout.contains("| result | case | title | details |"))
        #expect(output.stdout.contains("**64 passed, 0 failed, 0 errors, 0 skipped**"))
    }

    @Test func junitCarriesTimestampHostnamePropertiesAndTheSuiteName() async throws {
        let output = try await Tool.run("run", "--tag", "helo", "--format", "junit", "--junit-suite-name", "mx fleet")
        #expect(output.status == 0)
        let suite = try #require(output.stdout.components(separatedBy: "\n").first { $0.contains("<testsuite ") })
        #expect(suite.contains("name=\"mx fleet\""))
        #expect(suite.contains("hostname=\"\(ProcessInfo.processInfo.hostName)\""))
        let stamp = try #require(suite.range(of: "timestamp=\"")).upperBound
        #expect(suite[stamp...].prefix(19).wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/) != nil, "\(suite)")
        for property in ["target", "policy", "profile", "smtpcheck.version"] {
            #expect(output.stdout.contains("<property name=\"\(property)\" value=\""), "\(property)")
        }
    }
}
