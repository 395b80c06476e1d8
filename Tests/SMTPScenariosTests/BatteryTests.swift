import NIOCore
import SMTPPolicy
import SMTPProtocol
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

func battery() throws -> [Scenario] {
    try ScenarioLoader.load([Repository.scenarios])
}

func run(_ scenarios: [Scenario], policy: Policy, faults: PolicySession.Faults = [], jobs: Int = 4) async throws -> RunResult {
    try await ScenarioRunner(.init(target: .reference(faults: faults), policy: policy, jobs: jobs, caseTimeout: .seconds(20))).run(
        scenarios)
}

func summary(_ result: RunResult) -> String {
    result.cases.filter { $0.verdict != .passed }.map { "\($0.scenario.id): \($0.verdict)" }.joined(separator: "\n")
}

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
        #expect(scenarios.count >= 35)
        let result = try await run(scenarios, policy: policy)
        #expect(result.cases.count == scenarios.count)
        #expect(result.cases.allSatisfy { $0.verdict == .passed }, "\(summary(result))")
        #expect(result.exitCode == 0)
    }

    @Test func theShippedPolicyFilesPass() async throws {
        for file in ["default-site.yaml", "default-site-delayed.yaml", "postfix-stock.yaml"] {
            let policy = try Policy.load(Repository.policies + "/" + file, environment: [:])
            let result = try await run(try battery(), policy: policy)
            #expect(result.cases.allSatisfy { $0.verdict == .passed }, "\(file): \(summary(result))")
        }
    }

    /// The battery can fail: each deliberate defect makes exactly the cases
    /// that name its rules fail, and nothing else.
    struct FaultCase: Sendable, CustomTestStringConvertible {
        var fault: PolicySession.Faults
        var rules: Set<RuleID>
        var testDescription: String { PolicySession.Faults.byName.first { $0.value == self.fault }?.key ?? "fault" }
    }

    @Test(arguments: [
        FaultCase(fault: .openRelay, rules: [.relayDenied]),
        FaultCase(fault: .noHeloChecks, rules: [.heloInvalid, .heloInvalidLiteral, .heloNonFQDN, .heloDenied]),
        FaultCase(fault: .acceptAnyPassword, rules: [.authFailed]),
    ])
    func eachFaultFailsExactlyItsRulesCases(_ faultCase: FaultCase) async throws {
        let (fault, rules) = (faultCase.fault, faultCase.rules)
        let scenarios = try battery()
        let expected = Set(scenarios.filter { !$0.rulesNamed.isDisjoint(with: rules) }.map(\.id))
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

    /// The at-command policy does not accept a server that delays its HELO
    /// refusals: timing is judged, not only codes.
    @Test func delayedServerFailsTheAtCommandPolicy() async throws {
        var delayed = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"])
        delayed.heloTiming = .noLaterThanRCPT
        let scenarios = try battery().filter { $0.tags.contains("helo") }
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
        let credentials = Credentials(user: "alice", password: "correct-horse")
        let policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": credentials.password])
        let scenarios = try battery()
        let inProcess = try await run(scenarios, policy: policy)
        try await withReferenceServer(policy: policy) { server in
            let live = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: .defaultSite(), credentials: credentials)
            ).run(scenarios)
            #expect(live.cases.map(\.verdict) == inProcess.cases.map(\.verdict))
            #expect(live.cases.allSatisfy { $0.verdict == .passed }, "\(summary(live))")
            #expect(!server.store.all.isEmpty)
        }
    }

    @Test func unreachableTargetMakesEveryCaseAnError() async throws {
        let port = try await refusedPort()
        let result = try await ScenarioRunner(.init(target: .live(TargetAddress(host: "127.0.0.1", port: port)), policy: .defaultSite()))
            .run(try battery())
        #expect(result.cases.allSatisfy { if case .error(let reason) = $0.verdict { reason.contains("refused") } else { false } })
        #expect(result.exitCode == 2)
    }

    @Test func oneJobGivesTheSameVerdictsAsMany() async throws {
        let scenarios = try battery()
        let serial = try await run(scenarios, policy: .defaultSite(), jobs: 1)
        let parallel = try await run(scenarios, policy: .defaultSite(), jobs: 16)
        #expect(serial.cases.map(\.scenario.id) == parallel.cases.map(\.scenario.id))
        #expect(serial.cases.map(\.verdict) == parallel.cases.map(\.verdict))
    }

    @Test func trustedCasesAreSkippedWithAReasonWithoutATrustedSource() async throws {
        try await withReferenceServer { server in
            // No trusted network on loopback: no source address can be found for trusted cases.
            var policy = Policy.defaultSite()
            policy.trustedNetworks = [IPNetwork("10.0.0.0/8")].compactMap { $0 }
            let result = try await ScenarioRunner(
                .init(target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: policy)
            ).run(try battery().filter { $0.identity != .external })
            for result in result.cases {
                guard case .skipped(let reason) = result.verdict else {
                    Issue.record("\(result.scenario.id) should be skipped, was \(result.verdict)")
                    continue
                }
                #expect(reason.contains(result.scenario.identity == .trusted ? "--source" : "--user"))
            }
        }
    }
}
