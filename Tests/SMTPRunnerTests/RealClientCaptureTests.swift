import Foundation
import SMTPCapture
import SMTPPolicy
import SMTPProtocol
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// Captures of real clients made here with tcpdump: what was pipelined is
/// read from TCP order, so a client that waited for each reply is never
/// judged as pipelining, and one that pipelined is.
@Suite(.serialized) struct RealClientCaptureTests {
    static let ready = getuid() == 0 && ["tcpdump", "swaks", "python3"].allSatisfy(ExternalTools.installed)

    /// tcpdump on loopback for one port, started and ready; stopped by its own PID.
    final class Capture: @unchecked Sendable {
        let process = Process()
        let path: String
        let log: String

        init(port: Int) throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-real-\(UUID().uuidString)").path
            self.path = base + ".pcap"
            self.log = base + ".log"
            _ = FileManager.default.createFile(atPath: self.log, contents: nil)
            // The test runner's threads block or ignore SIGTERM, and a child
            // inherits that through exec: python3 restores the defaults, then
            // becomes tcpdump, which then stops on SIGTERM and flushes its file.
            self.process.executableURL = URL(fileURLWithPath: ExternalTools.path("python3") ?? "python3")
            self.process.arguments = [
                "-c",
                "import os, signal, sys\nfor s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, signal.SIG_DFL)\n"
                    + "signal.pthread_sigmask(signal.SIG_SETMASK, [])\nos.execv(sys.argv[1], sys.argv[1:])",
                ExternalTools.path("tcpdump") ?? "tcpdump", "-i", "lo", "-s", "0", "-U", "--immediate-mode", "-w", self.path,
                "tcp port \(port)",
            ]
            self.process.standardError = FileHandle(forWritingAtPath: self.log)
            self.process.standardOutput = FileHandle.nullDevice
            try self.process.run()
            // tcpdump says when it listens; nothing is sent before that.
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if let text = try? String(contentsOfFile: self.log, encoding: .utf8), text.contains("listening on") { return }
                usleep(20_000)
            }
            throw CaptureError(message: "tcpdump did not start: \((try? String(contentsOfFile: self.log, encoding: .utf8)) ?? "")")
        }

        func stop() -> String {
            self.process.terminate()
            self.process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: self.log)
            return self.path
        }
    }

    struct CaptureError: Error { let message: String }

    /// The client's exit status (-1 when it is not installed); the wait runs
    /// on a thread of its own, off the cooperative pool.
    static func run(_ tool: String, _ arguments: [String], input: String? = nil) async throws -> Int32 {
        try await offThePool { try ExternalTools.run(tool, arguments, input: input)?.status ?? -1 }
    }

    static let smtplib = """
        import smtplib, sys
        port = int(sys.argv[1])
        for greet in ("ehlo", "helo"):
            client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=10)
            getattr(client, greet)()
            client.sendmail("a@client.example.org", ["postmaster@example.net"], "Subject: smtplib\\r\\n\\r\\nhello\\r\\n")
            client.quit()
        """

    /// Issue 11, 1. swaks with and without ESMTP, smtplib after EHLO and
    /// HELO, and Postfix's smtp-source where it is installed: none waits
    /// less than a reply, so nothing is pipelined and `check` passes every
    /// session; swaks --pipeline pipelines, and the capture says so.
    @Test(.enabled(if: ready, "needs root, tcpdump, swaks and python3 (CI has them)"))
    func whatWasPipelinedComesFromTCPOrder() async throws {
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "real-clients-pw"])
        let (path, port) = try await withReferenceServer(policy: policy) { server in
            let capture = try Capture(port: server.port)
            let target = "127.0.0.1:\(server.port)"
            let common = [
                "--server", target, "--helo", "client.example.org", "--from", "a@client.example.org", "--to", "postmaster@example.net",
            ]
            #expect(try await Self.run("swaks", common + ["--protocol", "SMTP"]) == 0)
            #expect(try await Self.run("swaks", common) == 0)
            #expect(try await Self.run("python3", ["-", String(server.port)], input: Self.smtplib) == 0)
            if ExternalTools.installed("smtp-source") {
                #expect(
                    try await Self.run(
                        "smtp-source",
                        ["-c", "-m", "2", "-M", "client.example.org", "-f", "a@client.example.org", "-t", "postmaster@example.net", target])
                        == 0)
            }
            #expect(try await Self.run("swaks", common + ["--pipeline"]) == 0)
            return (capture.stop(), server.port)
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        // `tcp port N` also catches another test's client that happened to
        // get N as its own port: only sessions with this server count.
        let sessions = try CaptureReader.read(path).sessions.filter { $0.server.port == UInt16(port) }
        #expect(sessions.count >= 5, "\(sessions.count) sessions")
        let piped = try #require(sessions.last)
        for session in sessions.dropLast() {
            let groups = session.transcript.exchanges.compactMap(\.pipelineGroup)
            #expect(groups.isEmpty, "session \(session.number) was not pipelined: \(session.transcript.exchanges.map(\.pipelineGroup))")
            let verdict = Audit.judge(session.recorded, policy: policy, file: path).verdict
            #expect(verdict == .passed, "session \(session.number): \(verdict)")
        }
        // swaks --pipeline writes MAIL, RCPT and DATA in one go after EHLO.
        let group = piped.transcript.exchanges.filter { $0.pipelineGroup != nil }.compactMap { $0.command?.verb }
        #expect(group == [.mail, .rcpt, .data], "\(group)")
    }
}
