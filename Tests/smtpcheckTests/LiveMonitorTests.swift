import Foundation
import SMTPTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `check --interface lo` as a passive monitor: real clients (`run` against
/// `serve`, and Python's smtplib) talk to the reference server while it
/// watches; SIGINT stops it with a complete report, and its verdict on each
/// session agrees with the verdict `run` gave the case that made it.
@Suite(.serialized, .enabled(if: getuid() == 0, "capturing on lo needs root (CI runs as root)"))
struct LiveMonitorTests {
    struct Verdicts {
        /// By client endpoint: the verdict and the rules that failed.
        var byClient: [String: (verdict: String, rules: Set<String>)] = [:]
        var summary: [String: Any] = [:]
    }

    static func verdicts(jsonLines text: String) -> Verdicts {
        var out = Verdicts()
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if object["type"] as? String == "summary" { out.summary = object }
            guard object["type"] as? String == "case", let verdict = object["verdict"] as? String,
                let transcript = object["transcript"] as? [String: Any], let client = transcript["client"] as? String
            else { continue }
            let rules = (object["failures"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
            out.byClient[client] = (verdict, Set(rules))
        }
        return out
    }

    /// Starts the monitor and returns once it is capturing.
    static func startMonitor(port: Int, output: String) throws -> (Process, Pipe) {
        let (process, _, err) = Tool.process([
            "check", "--interface", "lo", "--filter", "tcp port \(port)", "--port", "\(port)", "--format", "json", "--output", output,
        ])
        try process.run()
        var said = ""
        while !said.contains("watching lo") {
            let data = err.fileHandleForReading.availableData
            guard !data.isEmpty else { break }
            said += String(decoding: data, as: UTF8.self)
        }
        #expect(said.contains("watching lo"), "the monitor said: \(said)")
        return (process, err)
    }

    @Test(arguments: [[], ["--fault", "open-relay"]])
    func theMonitorAgreesWithRun(faults: [String]) async throws {
        let serve = try ServeAbuseTests.ServeProcess(faults)
        defer { serve.stop() }
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("monitor-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let (monitor, _) = try Self.startMonitor(port: serve.port, output: report)

        let port = serve.port
        let run = try await offThePool {
            try Tool.runBlocking("run", "--target", "127.0.0.1:\(port)", "--tag", "relay", "--format", "json")
        }
        let smtplib = try await offThePool { try Self.sendWithSmtplib(port: port) }
        #expect(smtplib.status == 0, "\(smtplib.stderr)")

        kill(monitor.processIdentifier, SIGINT)
        try await offThePool { monitor.waitUntilExit() }
        let watched = Self.verdicts(jsonLines: (try? String(contentsOfFile: report, encoding: .utf8)) ?? "")
        let ran = Self.verdicts(jsonLines: run.stdout)

        // A complete report after SIGINT: the summary line is there, and the
        // exit status follows the verdicts, not the signal.
        let failedCount = watched.summary["failed"] as? Int ?? -1
        #expect(!watched.summary.isEmpty, "no summary after SIGINT")
        #expect(monitor.terminationStatus == (failedCount > 0 ? 1 : 0), "exit \(monitor.terminationStatus)")

        let judged = ran.byClient.filter { ["pass", "fail"].contains($0.value.verdict) }
        #expect(judged.count >= 20, "run judged \(judged.count) cases")
        for (client, case_) in judged {
            guard let session = watched.byClient[client] else {
                Issue.record("the monitor saw no session from \(client)")
                continue
            }
            let relayFailure = case_.rules.contains("relay.denied")
            #expect(
                session.rules.contains("relay.denied") == relayFailure,
                "\(client): run \(case_.verdict) \(case_.rules), monitor \(session.verdict) \(session.rules)")
            if case_.verdict == "pass" { #expect(session.verdict != "fail", "\(client): run passed, monitor \(session.rules)") }
        }
        if faults.isEmpty {
            #expect(failedCount == 0, "the monitor failed sessions of a conforming server")
        } else {
            #expect(judged.values.contains { $0.rules.contains("relay.denied") }, "open-relay should fail relay cases")
        }
        // The smtplib session (a delivery to a local user) is seen and passes.
        let others = watched.byClient.filter { ran.byClient[$0.key] == nil && $0.value.verdict != "skip" }
        #expect(others.contains { $0.value.verdict == "pass" }, "the smtplib session: \(others)")
        print(
            "live monitor\(faults.isEmpty ? "" : " " + faults.joined(separator: " ")): \(watched.byClient.count) sessions seen, \(judged.count) run cases compared, \(failedCount) failed"
        )
    }

    static func sendWithSmtplib(port: Int) throws -> Tool.Output {
        let script = """
            import smtplib, sys
            with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example.org", timeout=30) as s:
                s.sendmail("a@client.example.org", ["postmaster@example.net"], "Subject: hi\\r\\n\\r\\nhello\\r\\n")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, "\(port)"]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Tool.Output(status: process.terminationStatus, stdout: "", stderr: String(decoding: stderr, as: UTF8.self))
    }
}
