import NIOCore
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// A broken or hostile server gets a clear verdict, never a hang or a crash.
@Suite struct HostileServerTests {
    static let relayCase = HostileServer.relayCase

    /// `timeout` is generous where an answer is expected, so a loaded machine
    /// cannot turn a pass into a time-out; the silent-server cases set it short.
    func runCase(_ yaml: String, greeting: String?, answers: [String?], policy: Policy = .defaultSite(), timeout: Int64 = 20) async throws
        -> CaseResult
    {
        let scenario = try Scenario.parse(yaml, file: "case.yaml")
        let server = try await ScriptedServer.start(
            greeting: greeting.map { Array($0.utf8) }, answers: answers.map { $0.map { Array($0.utf8) } })
        defer { Task { try? await server.stop() } }
        let result = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: policy, caseTimeout: .seconds(timeout))
        ).run([scenario])
        try await server.stop()
        return try #require(result.cases.first)
    }

    @Test func eximStyleRefusalPassesPortableAndFailsDocumented() async throws {
        let answers = ["250-exim.example\r\n250 HELP\r\n", "250 OK\r\n", "550 relay not permitted\r\n", "221 bye\r\n"]
        let portable = try await self.runCase(
            Self.relayCase, greeting: "220 exim ESMTP\r\n", answers: answers, policy: .defaultSite(profile: .portable))
        #expect(portable.verdict == .passed)
        let documented = try await self.runCase(Self.relayCase, greeting: "220 exim ESMTP\r\n", answers: answers)
        guard case .failed(let failures) = documented.verdict else {
            Issue.record("documented should fail: \(documented.verdict)")
            return
        }
        #expect(failures.first?.rule == .relayDenied)
        #expect(failures.first?.gotText == "550 relay not permitted")
    }

    @Test func bareLFRepliesTimeOutWithTheBytesShown() async throws {
        let result = try await self.runCase(Self.relayCase, greeting: "220 hello\n", answers: [], timeout: 1)
        guard case .error = result.verdict, let reason = result.reason else {
            Issue.record("expected an error, got \(result.verdict)")
            return
        }
        #expect(reason.contains("no greeting"))
        #expect(reason.contains("220 hello\\n"))
    }

    @Test func silentServerTimesOut() async throws {
        let result = try await self.runCase(Self.relayCase, greeting: "220 ok\r\n", answers: [nil], timeout: 3)
        guard case .error = result.verdict, let reason = result.reason else {
            Issue.record("expected an error, got \(result.verdict)")
            return
        }
        #expect(reason.contains("timed out waiting for the reply to EHLO client.example.org"), "\(reason)")
    }

    @Test func serverThatClosesMidSessionDoesNotHang() async throws {
        let result = try await self.runCase(Self.relayCase, greeting: "220 ok\r\n", answers: ["250 ok\r\n"], timeout: 20)
        // MAIL is never answered: the server closed. The relay refusal never came.
        guard case .failed(let failures) = result.verdict else {
            Issue.record("expected a failure, got \(result.verdict)")
            return
        }
        #expect(failures.first?.rule == .relayDenied)
        if case .closedByServer = result.transcript?.end {
        } else {
            Issue.record("expected a close by the server: \(String(describing: result.transcript?.end))")
        }
    }

    @Test func malformedAndOverlongRepliesAreFindings() async throws {
        let long = String(repeating: "x", count: 600)
        let answers = ["250-ok\r\n251 mixed\r\n", "garbage line\r\n", "250 \(long)\r\n", "221 bye\r\n"]
        let result = try await self.runCase(Self.relayCase, greeting: "220 ok\r\n", answers: answers)
        let exchanges = result.transcript?.exchanges ?? []
        #expect(exchanges.contains { $0.reply?.findings.contains(.inconsistentCode(line: 2, code: ReplyCode(251))) == true })
        #expect(exchanges.contains { if case .malformed = $0.response { true } else { false } })
        #expect(exchanges.contains { $0.reply?.findings.contains(.lineTooLong(line: 1, octets: 606)) == true })
        if case .failed = result.verdict {} else { Issue.record("a 250 to RCPT must fail the relay case: \(result.verdict)") }
    }

    @Test func refusedGreetingFails() async throws {
        let result = try await self.runCase(Self.relayCase, greeting: "554 go away\r\n", answers: ["221 bye\r\n"])
        guard case .failed(let failures) = result.verdict else {
            Issue.record("expected a failure, got \(result.verdict)")
            return
        }
        #expect(failures.first?.expected == .greeting)
    }

    /// An error, then a command the server may already have closed on.
    static let errorLimitCase = """
        id: t.limit
        title: limit
        steps:
          - send: EHLO client.example.org
          - send: XYZZY
          - send: NOOP
        expect:
          refused: cmd.too-many-errors
        """

    @Test func unsolicited421IsRecordedAsSuch() async throws {
        let yaml = Self.errorLimitCase
        var policy = Policy.defaultSite()
        policy.limits.errorLimit = 1
        let answers = ["250 ok\r\n", "500 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.example.net Error: too many errors\r\n"]
        let result = try await self.runCase(yaml, greeting: "220 ok\r\n", answers: answers, policy: policy)
        #expect(result.verdict == .passed, "\(result.verdict)")
        #expect(result.transcript?.exchanges.contains { $0.kind == .unsolicited && $0.reply?.code == .serviceNotAvailable } == true)
    }
}

/// XOAUTH2 is client-only: a scripted server plays the provider.
@Suite struct XOAUTH2Tests {
    static let yaml = """
        id: t.xoauth2
        title: xoauth2
        as: authenticated
        steps:
          - send: EHLO client.example.org
          - auth: {mechanism: XOAUTH2}
            expect: {code: 235}
        """

    func run(answers: [String?]) async throws -> CaseResult {
        let scenario = try Scenario.parse(Self.yaml, file: "case.yaml")
        let server = try await ScriptedServer.start(greeting: Array("220 ok\r\n".utf8), answers: answers.map { $0.map { Array($0.utf8) } })
        let credentials = Credentials(user: "alice@example.net", password: "unused", oauthToken: "ya29.secret-token-value")
        let result = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: .defaultSite(), credentials: credentials)
        ).run([scenario])
        try await server.stop()
        return try #require(result.cases.first)
    }

    @Test func acceptedToken() async throws {
        let result = try await self.run(answers: ["250-ok\r\n250 AUTH XOAUTH2 PLAIN\r\n", "235 2.7.0 Accepted\r\n", "221 bye\r\n"])
        #expect(result.verdict == .passed, "\(result.verdict)")
        let sent = result.transcript?.exchanges.compactMap(\.sent).map(Wording().unit) ?? []
        #expect(sent.contains { $0.hasPrefix("AUTH XOAUTH2 <redacted") })
        #expect(!sent.joined().contains("ya29"))
    }

    @Test func refusedTokenEndsWithAnEmptyLineAnd535() async throws {
        let error = "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIn0=\r\n"
        let result = try await self.run(answers: [
            "250-ok\r\n250 AUTH XOAUTH2\r\n", error, "535 5.7.8 Username and Password not accepted\r\n", "221 bye\r\n",
        ])
        guard case .failed(let failures) = result.verdict else {
            Issue.record("a refused token fails the case: \(result.verdict)")
            return
        }
        #expect(failures.first?.gotText == "535 5.7.8 Username and Password not accepted")
        #expect(result.transcript?.exchanges.contains { $0.kind == .saslResponse && $0.sent?.octets == 2 } == true)
    }

    @Test func aServerWithoutXOAUTH2IsSkipped() async throws {
        let result = try await self.run(answers: ["250-ok\r\n250 AUTH PLAIN LOGIN\r\n", "221 bye\r\n"])
        #expect(result.verdict == .skipped(.serverLacks(.authMechanism("XOAUTH2", offered: ["PLAIN", "LOGIN"]))))
        #expect(result.reason == "the server offers AUTH PLAIN LOGIN, not XOAUTH2")
    }
}
