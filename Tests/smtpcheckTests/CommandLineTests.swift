import Foundation
import SMTPTestSupport
import Testing

/// The `smtpcheck` binary, run as a user runs it.
struct Tool {
    static let path: String = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("smtpcheck").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return Repository.root + "/.build/debug/smtpcheck"
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func process(_ arguments: [String], environment: [String: String] = [:], in directory: String = Repository.root) -> (
        Process, Pipe, Pipe
    ) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: self.path)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.removeValue(forKey: "SMTPCHECK_PASSWORD")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        return (process, out, err)
    }

    /// Runs the tool to its end on a thread of its own (see `offThePool`):
    /// waiting for a process must not hold one of the cooperative pool's
    /// threads, which tests beside it need.
    static func run(_ arguments: String..., environment: [String: String] = [:]) async throws -> Output {
        try await self.run(arguments[0], Array(arguments.dropFirst()), environment: environment)
    }

    static func run(_ first: String, _ rest: [String], environment: [String: String] = [:]) async throws -> Output {
        try await offThePool { try Self.runBlocking(first, rest, environment: environment) }
    }

    static func runBlocking(_ arguments: String..., environment: [String: String] = [:]) throws -> Output {
        try self.runBlocking(arguments[0], Array(arguments.dropFirst()), environment: environment)
    }

    /// What `serve` says at start, up to "stop with" (its address, generated
    /// secrets), read off the cooperative pool.
    static func serveBanner(_ out: Pipe) async throws -> String {
        try await offThePool {
            var text = ""
            while !text.contains("stop with") {
                let data = out.fileHandleForReading.availableData
                guard !data.isEmpty else { break }
                text += String(decoding: data, as: UTF8.self)
            }
            return text
        }
    }

    /// Runs the tool from `directory` instead of the repository's root.
    static func run(in directory: String, _ arguments: String...) async throws -> Output {
        try await offThePool { try Self.runBlocking(arguments[0], Array(arguments.dropFirst()), in: directory) }
    }

    static func runBlocking(
        _ first: String, _ rest: [String], environment: [String: String] = [:], in directory: String = Repository.root
    ) throws -> Output {
        let (process, out, err) = self.process([first] + rest, environment: environment, in: directory)
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite(.serialized) struct CommandLineTests {
    @Test func runPassesTheBatteryAndExitsZero() async throws {
        let output = try await Tool.run("run")
        #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
        #expect(output.stdout.contains("PASS  relay.external"))
        // What the shipped default site cannot apply is skipped, the rest passes.
        let cases = try battery()
        let skipped = ["tls.auth-before-starttls", "tls.mail-before-starttls", "discipline.early-talker", "auth.required"]
        #expect(output.stdout.contains("\(cases.count - skipped.count) passed, 0 failed, 0 errors, \(skipped.count) skipped"))
    }

    @Test func aFaultMakesTheRunFailWithExitOne() async throws {
        let output = try await Tool.run("run", "--fault", "open-relay", "--tag", "relay")
        #expect(output.status == 1)
        #expect(output.stdout.contains("FAIL  relay.external"))
        #expect(output.stdout.contains("got: 250 2.1.5 Ok"))
    }

    @Test func badFilesExitSixtyFiveNamingFileAndLine() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-cli-\(UInt32.random(in: 0...UInt32.max))")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let scenario = folder + "/broken.yaml"
        _ = FileManager.default.createFile(atPath: scenario, contents: Data("id: x\ntitle: t\nsteps:\n  - sned: NOOP\n".utf8))
        let bad = try await Tool.run("run", scenario)
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("\(scenario):4:5: steps[0].sned: unknown field 'sned'"), "\(bad.stderr)")
        let policy = folder + "/policy.yaml"
        _ = FileManager.default.createFile(atPath: policy, contents: Data("limits:\n  error_limit: lots\n".utf8))
        let badPolicy = try await Tool.run("run", "--policy", policy)
        #expect(badPolicy.status == 65)
        #expect(badPolicy.stderr.contains("\(policy):2:16: limits.error_limit: 'lots' is not a whole number"), "\(badPolicy.stderr)")
        #expect(try await Tool.run("list", folder + "/missing").status == 65)
    }

    @Test func badUsageExitsSixtyFour() async throws {
        #expect(try await Tool.run("run", "--jobs", "0").status == 64)
        #expect(try await Tool.run("run", "--target", "no:port:here:x").status == 64)
        #expect(try await Tool.run("run", "--user", "alice").status == 64)
        #expect(try await Tool.run("run", "--format", "xml").status == 64)
        #expect(try await Tool.run("serve", "--fault", "bogus").status == 64)
        // A capture given twice would be one JUnit suite naming each session twice.
        let twice = try await Tool.run("check", "a.pcap", "b.pcap", "a.pcap")
        #expect(twice.status == 64 && twice.stderr.contains("a.pcap is given twice"))
    }

    @Test func unreachableTargetExitsTwo() async throws {
        let port = try await refusedPort()
        let output = try await Tool.run("run", "--target", "127.0.0.1:\(port)", "--format", "tap")
        #expect(output.status == 2)
        #expect(output.stdout.contains("Bail out!"))
        #expect(!output.stdout.contains("\nok "))
    }

    @Test func reportFormatsGoToTheOutputFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-\(UInt32.random(in: 0...UInt32.max)).xml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let output = try await Tool.run("run", "--format", "junit", "--output", file, "--tag", "helo")
        #expect(output.status == 0)
        #expect(output.stdout.isEmpty)
        #expect(output.stderr.contains("report written to \(file)"))
        let xml = try String(contentsOfFile: file, encoding: .utf8)
        #expect(xml.hasPrefix("<?xml"))
        #expect(xml.contains("<testcase classname=\"smtpcheck.helo\""))
    }

    @Test func listShowsCasesTagsAndRules() async throws {
        let output = try await Tool.run("list", "--policy", "postfix")
        #expect(output.status == 0)
        #expect(output.stdout.contains("relay.external"))
        #expect(output.stdout.contains("tags: "))
        #expect(output.stdout.contains("relay.denied"))
        #expect(output.stdout.contains("454 4.7.1 <{rcpt}>: Relay access denied"))
        let relayOnly = try await Tool.run("list", "--tag", "relay")
        #expect(!relayOnly.stdout.contains("helo.bare-hostname"))
    }

    /// `serve` on its own, then `run --target` against it: the same verdicts as
    /// the in-process default. The server is stopped by its own PID.
    @Test func serveThenRunAgainstIt() async throws {
        let (server, out, _) = Tool.process(["serve", "--listen", "127.0.0.1:0"])
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
        }
        let banner = try await Tool.serveBanner(out)
        let port = try #require(banner.split(separator: "listening on 127.0.0.1:").last?.prefix { $0.isNumber })
        let password = try #require(banner.split(separator: "generated password: ").last?.prefix { !$0.isWhitespace })
        let token = try #require(banner.split(separator: "generated bearer token: ").last?.prefix { !$0.isWhitespace })
        let live = try await Tool.run(
            "run", "--target", "127.0.0.1:\(port)", "--user", "alice", "--password-env", "SERVE_PW", "--oauth-token-env", "SERVE_TOKEN",
            environment: ["SERVE_PW": String(password), "SERVE_TOKEN": String(token)])
        let inProcess = try await Tool.run("run")
        #expect(live.status == 0, "\(live.stdout)")
        // Implicit-TLS cases need --tls implicit against a live server; the rest agree.
        func verdicts(_ text: String) -> [Substring] {
            text.split(separator: "\n").filter {
                ($0.hasPrefix("PASS") || $0.hasPrefix("FAIL") || $0.hasPrefix("SKIP") || $0.hasPrefix("ERROR"))
                    && !$0.contains("tls.implicit.") && !$0.contains("@proxy-")
            }
        }
        // Cases are written as they end: compared whatever their order.
        #expect(verdicts(live.stdout).sorted() == verdicts(inProcess.stdout).sorted())
        #expect(!live.stdout.contains(String(password)))
        #expect(!live.stdout.contains(String(token)))
        server.terminate()
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
    }

    @Test func helpListsTheSubcommands() async throws {
        let output = try await Tool.run("--help")
        #expect(output.status == 0)
        for word in ["run", "serve", "list", "Exit codes"] { #expect(output.stdout.contains(word)) }
    }
}

@Suite(.serialized) struct CaptureCommandLineTests {
    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-cli-\(UInt32.random(in: 0...UInt32.max))-\(name)").path
    }

    @Test func recordThenSessionsCheckAndRunOnTheCapture() async throws {
        let capture = Self.temporary("battery.pcap")
        defer { try? FileManager.default.removeItem(atPath: capture) }
        let recorded = try await Tool.run("run", "--record", capture, environment: ["SMTPCHECK_PASSWORD": "cli-pw"])
        #expect(recorded.status == 0, "\(recorded.stdout)")

        let sessions = try await Tool.run("sessions", capture)
        #expect(sessions.status == 0)
        #expect(sessions.stdout.contains("C: EHLO client.example.org"))
        #expect(sessions.stdout.contains("AUTH PLAIN <redacted"))
        #expect(!sessions.stdout.contains("cli-pw"))
        #expect(sessions.stdout.contains(" SMTP sessions in "))

        let file = Self.temporary("sessions.txt")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let written = try await Tool.run("sessions", capture, "--output", file)
        #expect(written.status == 0 && written.stdout.isEmpty)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == sessions.stdout, "--output writes what standard output shows")

        let json = try await Tool.run("sessions", "--format", "json", capture)
        let lines = json.stdout.split(separator: "\n")
        #expect(lines.count > 40)
        for line in lines { #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil) }
        // Numbers as numbers: a session's number is one.
        let first = try #require(try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: Any])
        #expect(first["number"] as? Int != nil && !(first["number"] is String), "\(first["number"] ?? "none")")
        #expect(json.stdout.range(of: #""number":\d+,"#, options: .regularExpression) != nil)

        let check = try await Tool.run("check", capture, environment: ["SMTPCHECK_PASSWORD": "cli-pw"])
        #expect(check.status == 0, "\(check.stdout)")
        let judged = try await Tool.run(
            "run", "--capture", capture, "--user", "alice", "--password-env", "PW", environment: ["PW": "cli-pw"])
        #expect(judged.status == 0, "\(judged.stdout)")
        #expect(judged.stdout.contains("not covered"))
    }

    @Test func checkFindsTheOpenRelayAndExitsOne() async throws {
        let capture = Self.temporary("open.pcap")
        defer { try? FileManager.default.removeItem(atPath: capture) }
        _ = try await Tool.run("run", "--fault", "open-relay", "--record", capture)
        let check = try await Tool.run("check", capture, "--format", "tap")
        #expect(check.status == 1)
        #expect(check.stdout.contains("rule: \"relay.denied\""))
    }

    @Test func unusableCapturesExitSixtyFive() async throws {
        let bad = Self.temporary("bad.pcap")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        _ = FileManager.default.createFile(atPath: bad, contents: Data("not a capture".utf8))
        for command in [["sessions", bad], ["check", bad], ["replay", bad, "--target", "127.0.0.1:25"], ["run", "--capture", bad]] {
            let output = try await Tool.run(command[0], Array(command.dropFirst()))
            #expect(output.status == 65, "\(command): \(output.stderr)")
            #expect(output.stderr.contains(bad))
        }
        #expect(try await Tool.run("sessions", "/nonexistent.pcap").status == 65)
        #expect(try await Tool.run("sessions", Repository.root + "/Package.swift", "--filter", "port").status == 65)
    }
}
