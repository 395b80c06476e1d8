import NIOConcurrencyHelpers
import NIOCore
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// Cases that cannot apply to the shipped sites: the TLS-required cases need a
/// policy that enforces `auth.tls-required`, the early talker one with a
/// greeting pause (`limits.greet_pause_ms`).
let skippedUnderTheDefaultSite: Set<String> = [
    "tls.auth-before-starttls", "tls.mail-before-starttls", "discipline.early-talker", "auth.required",
]

@Suite struct BatteryTests {
    /// Every scenario passes against the reference server, in both timings and
    /// under every profile the reference server claims.
    @Test(arguments: [
        ("default", RuleTiming.atCommand), ("default", .noLaterThanRCPT), ("postfix", .atCommand), ("postfix", .noLaterThanRCPT),
        ("portable", .atCommand), ("portable", .noLaterThanRCPT),
    ])
    func everyScenarioPasses(policyName: String, timing: RuleTiming) async throws {
        var policy = try Policy.load(policyName, environment: [:])
        policy.heloTiming = timing
        let scenarios = try battery()
        #expect(!scenarios.isEmpty)
        let result = try await run(scenarios, policy: policy)
        #expect(result.cases.count == scenarios.count)
        // Under portable the limits the policy does not state are not judged (SIZE is, against the offered SIZE).
        let unstated = Set(
            scenarios.filter { scenario in
                scenario.rulesNamed.contains { rule in
                    rule != .mailTooBig && Policy.limit(of: rule).map { !policy.statedLimits.contains($0) } == true
                }
            }.map(\.id))
        #expect(policyName != "portable" || !unstated.isEmpty)
        #expect(ids(result, "SKIP") == skippedUnderTheDefaultSite.union(unstated), "\(summary(result))")
        #expect(ids(result, "FAIL").isEmpty && ids(result, "ERROR").isEmpty, "\(summary(result))")
        #expect(result.exitCode == 0)
    }

    @Test func theShippedPolicyFilesPass() async throws {
        for file in ["default-site.yaml", "default-site-delayed.yaml", "postfix-stock.yaml", "mx.yaml"] {
            let policy = try Policy.load(Repository.policies + "/" + file, environment: [:])
            let result = try await run(try battery(), policy: policy)
            #expect(ids(result, "SKIP") == skippedUnderTheDefaultSite, "\(file): \(summary(result))")
            #expect(result.exitCode == 0, "\(file): \(summary(result))")
        }
    }

    /// As submission (TLS required) with --tls starttls, every case that the
    /// server can serve passes, the TLS-required ones included. What the EHLO
    /// before STARTTLS said of PIPELINING is forgotten after it (RFC 3207
    /// 4.2), so the case of a client never told of it runs inside TLS.
    @Test func submissionPolicyWithSTARTTLSPasses() async throws {
        let policy = try Policy.load(Repository.policies + "/submission.yaml", environment: [:])
        let result = try await ScenarioRunner(.init(target: .reference(faults: []), policy: policy, tls: .starttls)).run(try battery())
        // AUTH before mail is submission-auth.yaml's rule, not this one's.
        #expect(ids(result, "SKIP") == ["auth.required", "discipline.early-talker"], "\(summary(result))")
        #expect(ids(result, "PASS").contains("discipline.pipelining-without-pipelining"))
        #expect(result.exitCode == 0, "\(summary(result))")
        // Every auto case really ran inside TLS.
        for result in result.cases where result.scenario.tls == .auto && result.verdict == .passed {
            #expect(result.transcript?.tls?.mode == .starttls, "\(result.scenario.id)")
        }
    }

    /// Submission without TLS: the cases that need MAIL or AUTH are skipped
    /// because the policy refuses those steps before TLS; none fails.
    @Test func submissionPolicyWithoutTLSSkipsWithAReason() async throws {
        let policy = try Policy.load(Repository.policies + "/submission.yaml", environment: [:])
        let result = try await run(try battery(), policy: policy)
        #expect(result.exitCode == 0, "\(summary(result))")
        #expect(ids(result, "PASS").isSuperset(of: ["tls.auth-before-starttls", "tls.mail-before-starttls", "tls.starttls-auth-relay"]))
        for result in result.cases where result.verdict.label == "SKIP" {
            guard let reason = result.verdict.reason else { continue }
            #expect(
                reason.contains("auth.tls-required") || reason.contains("STARTTLS") || reason.contains("greeting pause")
                    || reason.contains("does not enforce auth.required"),
                "\(result.scenario.id): \(reason)")
        }
    }

    /// Issue 16, 5. A site that takes mail only after AUTH (RFC 6409 4.3):
    /// a case whose topic lies behind the 530 is skipped with that reason,
    /// never passed on it; what runs after AUTH runs.
    @Test func anAuthRequiredSiteSkipsWhatItsGatePreempts() async throws {
        let policy = try Policy.load(
            Repository.policies + "/submission-auth.yaml", environment: ["SMTPCHECK_PASSWORD": "submission-pw"])
        let result = try await ScenarioRunner(.init(target: .reference(faults: []), policy: policy, tls: .starttls)).run(try battery())
        #expect(result.exitCode == 0, "\(summary(result))")
        let passed = ids(result, "PASS")
        #expect(passed.isSuperset(of: ["auth.required", "auth.relay.plain", "relay.external@authenticated", "tls.starttls-auth-relay"]))
        for id in [
            "relay.external", "relay.external@trusted", "relay.trick.plain", "smuggling.data.lf-dot-lf", "discipline.rset-resets-envelope",
        ] {
            let found = try #require(result.cases.first { $0.scenario.id == id }, "\(id)")
            #expect(found.verdict.label == "SKIP", "\(id): \(found.verdict)")
            #expect(found.verdict.reason?.contains("auth.required") == true, "\(id): \(found.verdict.reason ?? "")")
        }
        // Nothing that passes got there on a 530 alone, unless the case is about it.
        for found in result.cases where found.verdict == .passed && !found.scenario.rulesNamed.contains(.authRequired) {
            let gated = found.transcript?.exchanges.contains { $0.reply?.code.value == 530 && $0.command?.verb == .mail } ?? false
            #expect(
                !gated || found.scenario.id.hasPrefix("helo.") || found.scenario.id.hasPrefix("tls."),
                "\(found.scenario.id) passed on the 530")
        }
    }

    @Test func implicitTLSRunsTheAutoCasesInsideTLS() async throws {
        let result = try await ScenarioRunner(.init(target: .reference(faults: []), policy: .defaultSite(), tls: .implicit)).run(
            try battery())
        #expect(result.exitCode == 0, "\(summary(result))")
        // Cases that drive STARTTLS themselves, and PROXY cases (their listener is not implicit TLS).
        let manual = Set(try battery().filter { $0.tls == .manual || $0.identity.isProxied }.map(\.id)).union([
            "discipline.early-talker", "auth.required",
        ])
        #expect(ids(result, "SKIP") == manual, "\(summary(result))")
        for result in result.cases where result.verdict == .passed {
            #expect(result.transcript?.tls?.mode == .implicit, "\(result.scenario.id)")
        }
    }

    /// The battery can fail: each deliberate defect makes exactly the cases
    /// that name its rules fail, and nothing else.
    struct FaultCase: Sendable, CustomTestStringConvertible {
        var fault: ServerFaults
        var rules: Set<RuleID>
        var testDescription: String { ServerFaults.byName.first { $0.value == self.fault }?.key ?? "fault" }
    }

    @Test(arguments: [
        FaultCase(fault: .openRelay, rules: [.relayDenied]),
        FaultCase(fault: .noHeloChecks, rules: [.heloInvalid, .heloInvalidLiteral, .heloNonFQDN, .heloDenied]),
        FaultCase(fault: .acceptAnyPassword, rules: [.authFailed]),
    ])
    func eachFaultFailsExactlyItsRulesCases(_ faultCase: FaultCase) async throws {
        let (fault, rules) = (faultCase.fault, faultCase.rules)
        let scenarios = try battery()
        // Identity variants that may relay expect relaying to succeed, so an open relay cannot fail them.
        let mayRelay: Set<Scenario.Identity> = [.trusted, .authenticated, .xclientTrusted, .proxyV1Trusted, .proxyV2Trusted]
        let expected = Set(
            scenarios.filter {
                !$0.rulesNamed.isDisjoint(with: rules)
                    && !($0.derivedExpectations && rules.contains(.relayDenied) && mayRelay.contains($0.identity))
            }
            .map(\.id))
        #expect(!expected.isEmpty)
        for timing in RuleTiming.allCases {
            var policy = Policy.defaultSite()
            policy.heloTiming = timing
            let result = try await run(scenarios, policy: policy, faults: fault)
            let failed = Set(result.cases.filter { if case .failed = $0.verdict { true } else { false } }.map(\.scenario.id))
            #expect(failed == expected, "\(timing): \(summary(result))")
            #expect(result.cases.allSatisfy { if case .error = $0.verdict { false } else { true } })
            #expect(result.exitCode == 1)
            // The report names the rule and what came instead.
            for result in result.cases where failed.contains(result.scenario.id) {
                guard case .failed(let failures) = result.verdict else { continue }
                #expect(failures.contains { $0.rule.map(rules.contains) == true }, "\(result.scenario.id): \(failures)")
            }
        }
    }

    /// Families broken by a configuration rather than one rule: exactly
    /// those cases fail.
    @Test func smugglingAndLaxProtocolBreakTheirFamilies() async throws {
        let scenarios = try battery()
        let smuggling = Set(scenarios.filter { $0.tags.contains("smuggling") }.map(\.id))
        #expect(!smuggling.isEmpty)
        let smuggled = try await run(scenarios, policy: .defaultSite(), faults: .smuggling)
        #expect(ids(smuggled, "FAIL") == smuggling, "\(summary(smuggled))")

        let limits: Set<RuleID> = [.lineTooLong, .tooManyRecipients, .mailTooBig, .vrfyDisabled, .unknownCommand, .unauthPipelining]
        // The early talker needs a greeting pause (greetingPauseCatchesEarlyTalkers).
        let lax = Set(
            scenarios.filter { $0.tags.contains("discipline") && (!$0.rulesNamed.isDisjoint(with: limits) || $0.noExtraReplies) }.map(\.id)
        ).subtracting(["discipline.early-talker"])
        #expect(!lax.isEmpty)
        let laxRun = try await run(scenarios, policy: .defaultSite(), faults: .laxProtocol)
        #expect(ids(laxRun, "FAIL") == lax, "\(summary(laxRun))")
    }

    /// The policies written for the real Postfix (its readings of HELO names
    /// and recipients, `extends:`) hold for the reference server too: it
    /// serves them and passes.
    @Test(arguments: ["policy.yaml", "policy-delayed.yaml"])
    func thePostfixFixturePoliciesPassInProcess(file: String) async throws {
        let policy = try Policy.load(Repository.root + "/fixtures/postfix/" + file, environment: [:])
        #expect(policy.heloSyntax == .postfix && policy.addressSyntax == .postfix)
        let result = try await run(try battery(), policy: policy)
        #expect(result.exitCode == 0, "\(summary(result))")
        #expect(ids(result, "PASS").count > 150, "\(summary(result))")
    }

    /// With a greeting pause the early talker is caught, and lax-protocol lets it through.
    @Test func greetingPauseCatchesEarlyTalkers() async throws {
        let policy = try Policy.load(Repository.policies + "/greet-pause.yaml", environment: [:])
        let scenarios = try battery().filter { $0.tags.contains("pipelining") }
        let caught = try await run(scenarios, policy: policy)
        #expect(caught.cases.allSatisfy { $0.verdict == .passed }, "\(summary(caught))")
        let lax = try await run(scenarios, policy: policy, faults: .laxProtocol)
        #expect(ids(lax, "FAIL") == ["discipline.early-talker", "discipline.pipelining-without-pipelining"], "\(summary(lax))")
    }

    @Test func consoleCountsRefusedRelayAttempts() async throws {
        let scenarios = try battery().filter { $0.tags.contains("relay") }
        let healthy = ConsoleReporter(useColor: false).render(try await run(scenarios, policy: .defaultSite()))
        let attempts = scenarios.filter { $0.identity == .external && !$0.tags.contains("accepted") }.count
        #expect(healthy.contains("relay: \(attempts) of \(attempts) relay attempts refused"))
        let open = ConsoleReporter(useColor: false).render(try await run(scenarios, policy: .defaultSite(), faults: .openRelay))
        // An open relay still refuses the attempts some other rule stops: the
        // policy's own verdict says how many (its refusal of any RCPT).
        var stillRefused = 0
        for scenario in scenarios where scenario.identity == .external && !scenario.tags.contains("accepted") {
            var openRelay = Policy.defaultSite()
            openRelay.rules[.relayDenied] = nil
            let simulated = await Simulation.run(
                scenario, policy: openRelay, credentials: nil, client: "192.0.2.10", tls: .starttls, server: nil)
            let rcpts = simulated.transcript.exchanges.filter { $0.command?.verb == .rcpt && $0.reply != nil }
            if rcpts.last?.reply?.code.isPositive == false { stillRefused += 1 }
        }
        #expect(stillRefused < attempts)
        #expect(open.contains("relay: \(stillRefused) of \(attempts) relay attempts refused"), "\(open.suffix(300))")
    }

    /// A server that judges the proxy instead of the client XCLIENT or a
    /// PROXY header names: exactly the variants impersonating a trusted client fail.
    @Test func ignoringTheNamedClientFailsTheTrustedProxyVariants() async throws {
        let scenarios = try battery()
        let trustedViaProxy: Set<Scenario.Identity> = [.xclientTrusted, .proxyV1Trusted, .proxyV2Trusted]
        let expected = Set(
            scenarios.filter { trustedViaProxy.contains($0.identity) && $0.rulesNamed.contains(.relayDenied) }.map(\.id))
        #expect(!expected.isEmpty)
        let result = try await run(scenarios, policy: .defaultSite(), faults: .ignoreClientIdentity)
        #expect(ids(result, "FAIL") == expected, "\(summary(result))")
    }

    @Test func identityMatrixCoversEveryIdentity() throws {
        let scenarios = try battery()
        let matrix = scenarios.filter { $0.matrix }
        #expect(!matrix.isEmpty)
        #expect(scenarios.count == Set(scenarios.map(\.file)).count + matrix.count * (Scenario.Identity.allCases.count - 1))
        for base in matrix {
            let variants = scenarios.filter { $0.id.hasPrefix(base.id + "@") }
            #expect(Set(variants.map(\.identity)).union([base.identity]) == Set(Scenario.Identity.allCases), "\(base.id)")
        }
    }

    /// An address literal is connected to as it is, a name through the
    /// resolver: both reach the server.
    @Test(arguments: ["127.0.0.1", "localhost"])
    func theClientConnectsByAddressAndByName(host: String) async throws {
        let server = try await ReferenceServer.start(.init(policy: .defaultSite()))
        let connection = try await SMTPClientConnection.connect(.init(host: host, port: server.port))
        let event = await connection.nextEvent(timeout: .seconds(10))
        if case .response(let greeting) = event {
            #expect(greeting.reply?.code == .serviceReady)
        } else {
            Issue.record("no greeting: \(event)")
        }
        await connection.close()
        try await server.stop()
    }

    @Test func aPeerNotAllowedToSendPROXYHeadersIsCutOff() async throws {
        var configuration = ReferenceServer.Configuration(policy: .defaultSite())
        configuration.proxyProtocol = true
        let server = try await ReferenceServer.start(configuration)
        // From 127.0.0.1, not one of the proxy hosts: no greeting, the connection is closed.
        do {
            let connection = try await SMTPClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let event = await connection.nextEvent(timeout: .seconds(10))
            #expect(event == .closed(unconsumed: []))
            await connection.close()
        } catch {
            // Closed so fast that the connect itself saw it go.
        }
        try await server.stop()
    }

    /// A server that answers what was pipelined behind STARTTLS inside TLS
    /// fails the injection probe and nothing else.
    @Test func injectionFaultFailsOnlyTheInjectionProbe() async throws {
        let result = try await run(try battery(), policy: .defaultSite(), faults: .starttlsInjection)
        #expect(ids(result, "FAIL") == ["tls.starttls-injection"], "\(summary(result))")
        let probe = try #require(result.cases.first { $0.scenario.id == "tls.starttls-injection" })
        guard case .failed(let failures) = probe.verdict else { return }
        #expect(failures.first?.gotText.contains("250-mx.example.net") == true, "\(failures)")
    }

    /// Against a server without STARTTLS, the cases that need it are skipped
    /// with the reason, not failed.
    @Test func casesNeedingSTARTTLSAreSkippedWithoutIt() async throws {
        let credentials = Credentials(user: "alice", password: "pw")
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": credentials.password])
        try await withReferenceServer(policy: policy) { server in
            let result = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: policy, credentials: credentials)
            ).run(try battery())
            let starttls = Set(
                try battery().filter { $0.steps.contains { if case .starttls = $0.action { true } else { false } } }.map(\.id))
            for result in result.cases where starttls.contains(result.scenario.id) {
                #expect(result.verdict == .skipped(.serverLacks(.startTLS)), "\(result.scenario.id)")
            }
            #expect(result.exitCode == 0, "\(summary(result))")
        }
    }

    /// The at-command policy does not accept a server that delays its HELO
    /// refusals: timing is judged, not only codes.
    @Test func delayedServerFailsTheAtCommandPolicy() async throws {
        var delayed = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"])
        delayed.heloTiming = .noLaterThanRCPT
        // No credentials and no PROXY listener in this live run: those variants are skipped.
        let scenarios = try battery().filter { $0.tags.contains("helo") && !$0.identity.isProxied && $0.identity != .authenticated }
        try await withReferenceServer(policy: delayed) { server in
            let atCommand = Policy.defaultSite()
            let result = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: atCommand)
            ).run(scenarios)
            let failed = Set(result.cases.filter { if case .failed = $0.verdict { true } else { false } }.map(\.scenario.id))
            let heloNameCases = Set(scenarios.filter { !$0.rulesNamed.isDisjoint(with: RuleID.heloNameRules) }.map(\.id))
            #expect(failed == heloNameCases, "\(summary(result))")
        }
    }

    /// `serve` + `--target` gives the same verdicts as the in-process default.
    @Test func liveReferenceServerGivesTheSameVerdicts() async throws {
        let credentials = Credentials(user: "alice", password: "correct-horse", oauthToken: "bearer-token")
        var policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": credentials.password])
        policy.authUsers[0].oauthToken = credentials.oauthToken
        let scenarios = try battery()
        let inProcess = try await run(scenarios, policy: policy)
        let identity = try TLSIdentity.selfSigned(hostname: policy.serverName)
        try await withReferenceServer(policy: policy, tls: .init(mode: .starttls, identity: identity)) { server in
            let live = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: .defaultSite(), credentials: credentials)
            ).run(scenarios)
            // Implicit-TLS cases need --tls implicit against a live server; the rest agree.
            let implicit = Set(scenarios.filter { $0.tls == .implicit || $0.identity.isProxied }.map(\.id))
            for (live, local) in zip(live.cases, inProcess.cases) where !implicit.contains(live.scenario.id) {
                #expect(live.verdict == local.verdict, "\(live.scenario.id)")
            }
            #expect(ids(live, "FAIL").isEmpty && ids(live, "ERROR").isEmpty, "\(summary(live))")
            #expect(!server.store.all.isEmpty)
        }
    }

    @Test func unreachableTargetMakesEveryCaseAnError() async throws {
        let port = try await refusedPort()
        let result = try await ScenarioRunner(.init(target: .live(TargetAddress(host: "127.0.0.1", port: port)), policy: .defaultSite()))
            .run(try battery())
        #expect(result.cases.allSatisfy { $0.verdict.label == "ERROR" && $0.verdict.reason?.contains("refused") == true })
        #expect(result.exitCode == 2)
    }

    @Test func oneJobGivesTheSameVerdictsAsMany() async throws {
        let scenarios = try battery()
        let serial = try await run(scenarios, policy: .defaultSite(), jobs: 1)
        let parallel = try await run(scenarios, policy: .defaultSite(), jobs: 16)
        #expect(serial.cases.map(\.scenario.id) == parallel.cases.map(\.scenario.id))
        #expect(serial.cases.map(\.verdict) == parallel.cases.map(\.verdict))
    }

    /// A target sees at most `jobs` of the run's connections at once, and
    /// that many while there are cases enough. A case's connection counts
    /// from its greeting to its QUIT (the client's next connection may reach
    /// the server before the server has seen the last one close); the first
    /// connection is the run's probe, which reads the greeting and closes.
    @Test(arguments: [1, 3])
    func aTargetSeesAtMostJobsConnectionsAtOnce(jobs: Int) async throws {
        let open = NIOLockedValueBox((connections: 0, now: 0, most: 0, quits: 0))
        let server = try await ProgrammableServer.start {
            let probe = open.withLockedValue {
                $0.connections += 1
                guard $0.connections > 1 else { return true }
                $0.now += 1
                $0.most = max($0.most, $0.now)
                return false
            }
            return { line in
                guard line.uppercased() == "QUIT", !probe else { return .reply(["250 2.0.0 ok"]) }
                open.withLockedValue {
                    $0.now -= 1
                    $0.quits += 1
                }
                return .replyAndClose(["221 2.0.0 bye"])
            }
        }
        let scenarios = try battery().filter { $0.tags.contains("helo") && $0.identity == .external }
        #expect(scenarios.count > 3 * jobs)
        let result = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: .defaultSite(), jobs: jobs)
        ).run(scenarios)
        try await server.stop()
        #expect(result.cases.map(\.scenario.id) == scenarios.map(\.id))
        let seen = open.withLockedValue { $0 }
        // Every case's connection ended with QUIT, so the count is whole.
        #expect(seen.now == 0 && seen.quits == seen.connections - 1)
        #expect(seen.most == jobs)
    }

    @Test func trustedCasesAreSkippedWithAReasonWithoutATrustedSource() async throws {
        try await withReferenceServer { server in
            // No trusted network on loopback: no source address can be found for trusted cases.
            var policy = Policy.defaultSite()
            policy.trustedNetworks = [IPNetwork("10.0.0.0/8")].compactMap { $0 }
            let result = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: policy)
            ).run(try battery().filter { $0.identity == .trusted || $0.identity == .authenticated })
            for result in result.cases {
                #expect(result.verdict == .skipped(.needs(result.scenario.identity == .trusted ? .trustedSource : .credentials)))
            }
        }
    }
}
