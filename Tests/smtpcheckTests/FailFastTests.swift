import Foundation
import SMTPTestSupport
import Testing

/// Issue 13: the binary runs from any folder with its battery inside, and
/// what cannot work is said once, before anything runs.
@Suite struct FailFastTests {
    @Test func theBatteryAndThePoliciesTravelWithTheBinary() async throws {
        let list = try await Tool.run(in: "/", "list")
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("helo.bare-hostname"))
        let run = try await Tool.run(in: "/", "run", "--tag", "helo", "--policy", "mx")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("passed, 0 failed, 0 errors"))
    }

    @Test func anAddedCaseReplacesTheBuiltInOneAndSaysSo() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-added-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let original = try String(contentsOfFile: Repository.scenarios + "/helo/helo-bare-hostname.yaml", encoding: .utf8)
        try original.replacingOccurrences(of: "title: ", with: "title: (site) ").write(
            toFile: folder + "/mine.yaml", atomically: true, encoding: .utf8)
        let run = try await Tool.run(in: "/", "run", "--scenarios", folder, "--tag", "helo")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("helo.bare-hostname from --scenarios replaces the built-in case"))
        #expect(run.stdout.contains("(site) "))
    }

    @Test func aReportPathThatCannotBeWrittenStopsTheRunBeforeItStarts() async throws {
        let output = try await Tool.run("run", "--output", "/nonexistent-smtpcheck-folder/report.xml", "--format", "junit")
        #expect(output.status == 64)
        #expect(output.stderr.contains("the folder /nonexistent-smtpcheck-folder does not exist"))
        #expect(output.stdout.isEmpty)
        let record = try await Tool.run("run", "--record", "/nonexistent-smtpcheck-folder/run.pcap")
        #expect(record.status == 64)
    }

    @Test func aSourceAddressThisHostDoesNotHaveIsRefusedFirst() async throws {
        // 192.0.2.0/24 is for documentation (RFC 5737): no host has it.
        let output = try await Tool.run("run", "--source", "192.0.2.77", "--tag", "relay")
        #expect(output.status == 64)
        #expect(output.stderr.contains("not an address of this host"))
    }

    @Test func anUnreachableTargetIsSaidOnceWithExitTwo() async throws {
        let port = try await refusedPort()
        let output = try await Tool.run("run", "--target", "127.0.0.1:\(port)")
        #expect(output.status == 2)
        #expect(output.stderr.contains("cannot test 127.0.0.1:\(port)"))
        #expect(output.stderr.components(separatedBy: "\n").filter { $0.contains("Connection refused") }.count == 1)
        #expect(!output.stdout.contains("ERROR"))
    }

    @Test func aTargetThatDoesNotSpeakSMTPIsSaidOnceWithExitTwo() async throws {
        let server = try await ProgrammableServer.start(greeting: "SSH-2.0-OpenSSH_9.2p1 Debian-2") { { _ in .silence } }
        let output = try await Tool.run("run", "--target", "127.0.0.1:\(server.port)", "--timeout", "5")
        try await server.stop()
        #expect(output.status == 2)
        #expect(output.stderr.contains("does not speak SMTP"), "\(output.stderr)")
        #expect(output.stderr.contains("SSH-2.0-OpenSSH"))
    }
}

/// Issue 13, 5: a run shows each case as it ends, and Ctrl-C leaves a
/// summary of the cases so far and a complete report.
@Suite struct StreamingRunTests {
    /// A server that answers every command at once but never DATA: some
    /// cases end in milliseconds, others wait for their time-out.
    static func slowServer() async throws -> ProgrammableServer {
        try await ProgrammableServer.start {
            { line in
                let verb = line.uppercased()
                if verb.hasPrefix("DATA") { return .silence }
                if verb.hasPrefix("QUIT") { return .replyAndClose(["221 2.0.0 Bye"]) }
                if verb.hasPrefix("EHLO") { return .reply(["250-mx.example.net", "250 PIPELINING"]) }
                return .reply(["250 2.0.0 Ok"])
            }
        }
    }

    @Test func casesAreWrittenAsTheyEndAndCtrlCLeavesACompleteReport() async throws {
        let server = try await Self.slowServer()
        let (process, out, err) = Tool.process(["run", "--target", "127.0.0.1:\(server.port)", "--jobs", "1", "--timeout", "60"])
        try process.run()
        // The first case line comes while the run goes on: read until it does.
        let seen = try await offThePool { () throws -> String in
            var text = ""
            while !text.contains("\nPASS ") && !text.contains("\nFAIL ") {
                let chunk = out.fileHandleForReading.availableData
                guard !chunk.isEmpty else { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            return text
        }
        #expect(process.isRunning, "the run should still be going after its first case")
        process.interrupt()
        let (rest, errors) = try await offThePool {
            (out.fileHandleForReading.readDataToEndOfFile(), err.fileHandleForReading.readDataToEndOfFile())
        }
        process.waitUntilExit()
        try await server.stop()
        let console = seen + String(decoding: rest, as: UTF8.self)
        #expect(process.terminationStatus == 130)
        #expect(String(decoding: errors, as: UTF8.self).contains("interrupted after"))
        // The summary counts exactly the cases shown before the interruption.
        let shown = console.components(separatedBy: "\n").filter { ["PASS ", "FAIL ", "ERROR", "SKIP "].contains(String($0.prefix(5))) }
        #expect(!shown.isEmpty)
        let summary = try #require(console.components(separatedBy: "\n").first { $0.contains(" passed, ") && $0.contains(" skipped in ") })
        let counted = summary.split(separator: " ").compactMap { Int($0) }.reduce(0, +)
        #expect(counted == shown.count, "\(summary) against \(shown.count) cases shown")
    }
}

/// Issue 13, 2: the shells complete option values, not only option names.
@Suite struct CompletionTests {
    /// What the completion scripts ask the binary for one word (argument-parser's protocol).
    static func complete(_ option: String, _ prefix: String) async throws -> [String] {
        let words = ["smtpcheck", "run", option, prefix]
        let output = try await Tool.run("---completion", ["run", "--", option, "3", "\(prefix.count)"] + words)
        return output.stdout.split(separator: "\n").map(String.init)
    }

    @Test func policiesTagsAndFaultsAreCompleted() async throws {
        #expect(Set(try await Self.complete("--policy", "sub")) == ["submission", "submission-auth"])
        #expect(try await Self.complete("--policy", "scenarios/pol") == ["scenarios/policies/"])
        #expect(try await Self.complete("--tag", "rel").contains("relay"))
        let bash = try await Tool.run("--generate-completion-script", "bash")
        #expect(bash.stdout.contains("open-relay"), "faults are a fixed list in the script")
        for shell in ["zsh", "fish"] { #expect(try await Tool.run("--generate-completion-script", shell).status == 0) }
    }
}

/// Issue 13, 7: `serve` says what each session came to, in a line.
@Suite struct ServeLogTests {
    @Test(arguments: ["text", "json"])
    func eachSessionEndsWithALogLine(format: String) async throws {
        let (server, out, _) = Tool.process(["serve", "--listen", "127.0.0.1:0", "--tls", "none", "--log-format", format])
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
        }
        let banner = try await Tool.serveBanner(out)
        let port = try #require(banner.split(separator: "listening on 127.0.0.1:").last?.prefix { $0.isNumber })
        let run = try await Tool.run("run", "--target", "127.0.0.1:\(port)", "--tag", "relay", "--jobs", "1")
        #expect(run.status == 0, "\(run.stdout)")
        server.terminate()
        let rest = try await offThePool { out.fileHandleForReading.readDataToEndOfFile() }
        server.waitUntilExit()
        let lines = String(decoding: rest, as: UTF8.self).split(separator: "\n").map(String.init)
        if format == "json" {
            let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let denied = records.filter { ($0["rules"] as? [String])?.contains("relay.denied") == true }
            #expect(!denied.isEmpty, "\(lines.prefix(5))")
            #expect(denied.allSatisfy { $0["identity"] as? String == "external" && $0["outcome"] as? String == "quit" })
            #expect(denied.allSatisfy { $0["messages"] as? Int == 0 && $0["helo"] is String })
        } else {
            let denied = lines.filter { $0.contains(" session 127.0.0.1:") && $0.contains("rules=relay.denied") }
            #expect(!denied.isEmpty, "\(lines.prefix(5))")
            #expect(denied.allSatisfy { $0.contains(" external ") && $0.contains(" quit ") })
        }
    }
}

/// Issue 13, 8: `smtpcheck explain RULE`.
@Suite struct ExplainTests {
    @Test func aRuleIsExplainedWithItsReplyReferencesAndFix() async throws {
        let output = try await Tool.run(in: "/", "explain", "relay.denied", "--policy", "mx")
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("reply        554 5.7.1 <{rcpt}>: Relay access denied"))
        #expect(output.stdout.contains("RFC 5321 3.6.1"))
        #expect(output.stdout.contains("reject_unauth_destination"))
        #expect(output.stdout.contains("tested by    "))
        let unknown = try await Tool.run("explain", "relay")
        #expect(unknown.status == 64)
        #expect(unknown.stderr.contains("did you mean relay.denied?"))
    }
}
