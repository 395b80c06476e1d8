import NIOCore
import NIOPosix
import NIOSSL
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// Issue-10 behaviour that needs a run: preludes tried once, address
/// families, a run that tested nothing, a server that leaves TLS.
@Suite struct FidelityRunTests {
    static let credentials = Credentials(user: "alice", password: "run-pw")

    /// A server that takes AUTH PLAIN and then refuses any further EHLO with 503.
    static func refusesEhloAfterAuth() -> (String) -> ProgrammedAnswer {
        var authenticated = false
        return { line in
            switch line.split(separator: " ").first.map({ $0.uppercased() }) ?? "" {
            case "EHLO", "HELO":
                return authenticated
                    ? .reply(["503 5.5.1 Already identified"]) : .reply(["250-mx.example.net", "250-AUTH PLAIN", "250 PIPELINING"])
            case "AUTH":
                authenticated = true
                return .reply(["235 2.7.0 Authentication successful"])
            case "QUIT": return .replyAndClose(["221 2.0.0 Bye"])
            default: return .reply(["250 2.0.0 Ok"])
            }
        }
    }

    static func run(_ scenarios: [Scenario], port: Int, host: String = "127.0.0.1", policy: Policy) async throws -> RunResult {
        try await ScenarioRunner(
            .init(
                target: .live(TargetAddress(host: host, port: port)), policy: policy, credentials: Self.credentials,
                caseTimeout: .seconds(10))
        ).run(scenarios)
    }

    /// 11. One defect, one failure: a server that refuses the case's EHLO
    /// after the harness's own EHLO and AUTH shows it once, in the prelude.
    @Test func aBrokenPreludeIsOneFailureNotOneForEveryVariant() async throws {
        let server = try await ProgrammableServer.start(connection: Self.refusesEhloAfterAuth)
        let scenarios = try battery().filter { $0.id.hasPrefix("helo.bare-hostname") || $0.id.hasPrefix("relay.external") }
        let documented = try await Self.run(
            scenarios, port: server.port, policy: .defaultSite(environment: ["SMTPCHECK_PASSWORD": "run-pw"]))
        let prelude = documented.cases.filter { $0.scenario.id == "prelude.authenticated" }
        #expect(prelude.count == 1 && prelude.first?.verdict.isFailure == true, "\(summary(documented))")
        let variants = documented.cases.filter { $0.scenario.identity == .authenticated && $0.scenario.derivedExpectations }
        #expect(!variants.isEmpty)
        #expect(variants.allSatisfy { $0.verdict == .skipped(.preludeFailed("prelude.authenticated")) }, "\(summary(documented))")

        // Under portable a second EHLO may be refused (RFC 5321 4.1.4): the
        // prelude holds, and only the HELO cases after it are skipped.
        let portable = try await Self.run(
            scenarios, port: server.port, policy: .defaultSite(profile: .portable, environment: ["SMTPCHECK_PASSWORD": "run-pw"]))
        #expect(!portable.cases.contains { $0.scenario.id == "prelude.authenticated" })
        let helo = try #require(portable.cases.first { $0.scenario.id == "helo.bare-hostname@authenticated" })
        #expect(helo.verdict == .skipped(.secondGreetingRefused(prelude: "prelude.authenticated")), "\(helo.verdict)")
        let relay = try #require(portable.cases.first { $0.scenario.id == "relay.external@authenticated" })
        #expect(relay.verdict == .passed, "\(relay.verdict)")
        try await server.stop()
    }

    /// 14. Against an IPv6 target, identities whose source address is IPv4
    /// are skipped with the reason, not run into a connect error.
    @Test func identitiesOfTheOtherFamilyAreSkippedAgainstIPv6() async throws {
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "run-pw"])
        var configuration = ReferenceServer.Configuration(policy: policy, host: "::1")
        configuration.tls = nil
        guard let server = try? await ReferenceServer.start(configuration) else {
            Issue.record("cannot listen on ::1 here")
            return
        }
        let scenarios = try battery().filter { $0.identity == .trusted || $0.identity.usesXCLIENT }
        let result = try await Self.run(scenarios, port: server.port, host: "::1", policy: policy)
        #expect(ids(result, "ERROR").isEmpty, "\(summary(result))")
        for result in result.cases {
            guard case .skipped(.sourceFamily(_, let target)) = result.verdict else {
                Issue.record("\(result.scenario.id): \(result.verdict)")
                continue
            }
            #expect(target == "::1")
        }
        try await server.stop()
    }

    /// 10. A run that tested nothing is not green.
    @Test func aRunThatTestedNothingIsNotGreen() async throws {
        var policy = Policy.defaultSite()
        policy.trustedNetworks = [IPNetwork("10.0.0.0/8")].compactMap { $0 }
        let result = try await withReferenceServer(policy: policy) { server in
            try await Self.run(try battery().filter { $0.identity == .trusted }, port: server.port, policy: policy)
        }
        #expect(result.nothingTested)
        #expect(result.exitCode == 2)
        #expect(result.skipReasons.first?.reason == .needs(.trustedSource))
    }

    /// 15. A server that leaves TLS and goes on in plain text: a TLS finding
    /// with the octets that came, not a silent drop.
    @Test func plainTextAfterTLSIsAFinding() async throws {
        let identity = try TLSIdentity.selfSigned(hostname: "mx.example.net")
        let context = try identity.serverContext()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LeavesTLS(context: context)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let scenario = try Scenario.parse(
            """
            id: t.tls
            title: tls
            tls: manual
            steps:
              - send: EHLO client.example.org
              - starttls: true
              - send: EHLO client.example.org
              - send: NOOP
                expect: {code: 250}
            """, file: "case.yaml")
        let result = try await ScenarioRunner(
            .init(
                target: .live(TargetAddress(host: "127.0.0.1", port: channel.localAddress?.port ?? 0)), policy: .defaultSite(),
                caseTimeout: .seconds(10), tlsOptions: ClientTLSOptions(verification: .off))
        ).run([scenario])
        try await channel.close()
        let verdict = try #require(result.cases.first?.verdict)
        #expect(verdict.failures.contains { $0.expected == .staysInTLS }, "\(verdict)")
        if case .plaintextAfterTLS(let octets, let preview) = verdict.failures.first(where: { $0.expected == .staysInTLS })?.got {
            #expect(octets > 0 && String(decoding: preview, as: UTF8.self).hasPrefix("250 plain"))
        } else {
            Issue.record("no plain text recorded: \(verdict)")
        }
    }
}

/// Plays a server that upgrades with STARTTLS, answers one EHLO inside TLS,
/// then drops TLS (close_notify) and talks on in plain text.
final class LeavesTLS: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: NIOSSLContext
    private var line: [UInt8] = []
    private var inside = false

    init(context: NIOSSLContext) { self.context = context }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "220 mx.example.net ESMTP\r\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.line += self.unwrapInboundIn(data).readableBytesView
        while let end = self.line.firstIndex(of: 0x0A) {
            let text = String(decoding: self.line[..<end].filter { $0 != 0x0D }, as: UTF8.self)
            self.line.removeFirst(end + 1)
            if text == "STARTTLS" {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "220 2.0.0 Ready\r\n")), promise: nil)
                let handler = NIOSSLServerHandler(context: self.context)
                try? context.pipeline.syncOperations.addHandler(handler, position: .first)
                self.inside = true
            } else if !self.inside, text.hasPrefix("EHLO") {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "250-mx.example.net\r\n250 STARTTLS\r\n")), promise: nil)
            } else if self.inside, text.hasPrefix("EHLO") {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "250 mx.example.net\r\n")), promise: nil)
                // Leave TLS: what is written from the TLS handler's own place
                // in the pipeline goes out below it, in plain text.
                if let tls = try? context.pipeline.syncOperations.context(handlerType: NIOSSLServerHandler.self) {
                    tls.writeAndFlush(NIOAny(ByteBuffer(string: "250 plain text after TLS\r\n")), promise: nil)
                }
            }
        }
    }
}
