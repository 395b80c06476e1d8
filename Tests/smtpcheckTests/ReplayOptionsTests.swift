import Foundation
import SMTPTestSupport
import Testing

/// Issue 13, part 8: `replay` takes `--tls` and `--jobs` as `run` does.
@Suite(.serialized) struct ReplayOptionsTests {
    static func records(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "case" }
    }

    @Test func replayUpgradesEverySessionWithSTARTTLSFirst() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-replay-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let capture = folder + "/relay.pcap"
        #expect(try await Tool.run("run", "--tag", "relay", "--record", capture).status == 0)
        let server = try await ServeProcess.start([])
        defer { server.stop() }
        let target = "127.0.0.1:\(server.port)"
        let plain = try await Tool.run("replay", capture, "--target", target, "--format", "json")
        let upgraded = try await Tool.run(
            "replay", capture, "--target", target, "--tls", "starttls", "--tls-verify", "off", "--format", "json")
        // The same verdicts inside TLS as in plain text (the sessions the
        // capture made through other listeners differ in both alike).
        #expect(upgraded.status == plain.status, "\(upgraded.stderr)\n\(upgraded.stdout.prefix(2000))")
        let cases = Self.records(upgraded.stdout)
        func verdicts(_ records: [[String: Any]]) -> [String] { records.map { "\($0["id"] ?? "") \($0["verdict"] ?? "")" } }
        #expect(verdicts(cases) == verdicts(Self.records(plain.stdout)))
        #expect(cases.filter { $0["verdict"] as? String == "pass" }.count > 10)
        for record in cases where record["verdict"] as? String == "pass" {
            let transcript = record["transcript"] as? [String: Any]
            let tls = transcript?["tls"] as? [String: Any]
            #expect(tls?["mode"] as? String == "starttls", "\(record["id"] ?? "")")
            // The captured commands went inside TLS, after the replay's own EHLO and STARTTLS.
            let exchanges = transcript?["exchanges"] as? [[String: Any]] ?? []
            #expect(exchanges.dropFirst().first?["verb"] as? String == "EHLO")
            #expect(exchanges.dropFirst(2).first?["verb"] as? String == "STARTTLS")
            #expect(exchanges.dropFirst(3).allSatisfy { $0["encrypted"] as? Bool == true })
        }
        // A server without STARTTLS: each session is skipped with the reason, not failed.
        let bare = try await ServeProcess.start(["--tls", "none"])
        defer { bare.stop() }
        let skipped = try await Tool.run("replay", capture, "--target", "127.0.0.1:\(bare.port)", "--tls", "starttls")
        #expect(skipped.status != 1, "\(skipped.stdout.prefix(1000))")
        #expect(skipped.stdout.contains("STARTTLS"), "\(skipped.stdout.prefix(1000))")
        #expect(!skipped.stdout.contains("FAIL "))
    }

    @Test func replayJobsKeepTheCaptureOrderAndTheVerdicts() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-replay-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let capture = folder + "/helo.pcap"
        #expect(try await Tool.run("run", "--tag", "helo", "--record", capture).status == 0)
        let server = try await ServeProcess.start(["--fault", "no-helo-checks"])
        defer { server.stop() }
        let target = "127.0.0.1:\(server.port)"
        let one = try await Tool.run("replay", capture, "--target", target, "--format", "json")
        let four = try await Tool.run("replay", capture, "--target", target, "--format", "json", "--jobs", "4")
        #expect(one.status == 1)
        #expect(four.status == 1)
        func verdicts(_ text: String) -> [String] {
            Self.records(text).map { "\($0["id"] ?? "") \($0["verdict"] ?? "") \(($0["failures"] as? [Any])?.count ?? 0)" }
        }
        #expect(verdicts(one.stdout).count > 50)
        #expect(verdicts(four.stdout) == verdicts(one.stdout))
        #expect(try await Tool.run("replay", capture, "--target", target, "--jobs", "0").status == 64)
    }
}
