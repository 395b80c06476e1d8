import Foundation
import SMTPCapture
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// The paths that judge (a live run, `check`, `run --capture`, `replay`)
/// share one judge: they agree, and a policy means the same on each.
@Suite(.serialized) struct OneJudgeTests {
    static let credentials = Credentials(user: "alice", password: "one-judge-pw")
    static var policy: Policy { .defaultSite(environment: ["SMTPCHECK_PASSWORD": credentials.password]) }

    /// The battery run against the reference server, recorded.
    func record(faults: ServerFaults) async throws -> (path: String, run: RunResult) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smtpcheck-judge-\(UInt32.random(in: 0...UInt32.max)).pcap"
        ).path
        let run = try await ScenarioRunner(
            .init(target: .reference(faults: faults), policy: Self.policy, credentials: Self.credentials, recordTo: path)
        ).run(try battery())
        return (path, run)
    }

    /// Issue 16, 3. What a report says is filled in: no `{helo}`, `{rcpt}` or
    /// scenario placeholder is left in any failure, under any fault, in the
    /// exact profile's words (which carry the most text).
    @Test func reportsLeaveNoPlaceholderUnfilled() async throws {
        let profile = Profile.documented
        let names = Placeholders.names.union(["helo", "rcpt", "server", "verb", "param"])
        for (name, fault, _) in ServerFaults.catalogue {
            let result = try await run(
                try battery(), policy: .defaultSite(profile: profile, environment: ["SMTPCHECK_PASSWORD": "pw"]), faults: fault)
            #expect(result.cases.contains { $0.verdict.isFailure }, "\(name) broke nothing")
            let text = ConsoleReporter(useColor: false, verbose: true).render(result)
            for placeholder in names { #expect(!text.contains("{\(placeholder)}"), "\(name): {\(placeholder)} left in the report") }
        }
    }

    /// Every session `run --capture` judges a case on is judged by `check`
    /// too: a case that fails there fails under `check` at the same reply
    /// under the same rule, and a session `check` passes passes every case
    /// judged on it.
    @Test(arguments: [ServerFaults(), .openRelay, .noHeloChecks])
    func checkAndRunCaptureAgree(faults: ServerFaults) async throws {
        let (path, _) = try await self.record(faults: faults)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sessions = try CaptureReader.read(path).sessions.map(\.recorded)
        // By client endpoint; a port the kernel gave out twice in one run (the
        // server closes first, so the client's port is free again at once)
        // names two sessions, and either may be the case's.
        let audits = Dictionary(grouping: sessions.map { ($0.client, Audit.judge($0, policy: Self.policy, file: path)) }, by: \.0)
            .mapValues { $0.map(\.1) }
        let cases = await CaptureMatch(policy: Self.policy, credentials: Self.credentials).run(
            try battery(), sessions: sessions, file: path)
        var judgedBoth = 0
        for result in cases.cases where result.verdict.label == "PASS" || result.verdict.label == "FAIL" {
            guard let client = result.transcript?.client, let candidates = audits[client] else {
                Issue.record("\(result.scenario.id): its session is not among the capture's")
                continue
            }
            judgedBoth += 1
            // The session of the case is the candidate whose findings cover it.
            let audit =
                candidates.first { audit in
                    result.verdict.failures.allSatisfy { failure in
                        audit.verdict.failures.contains { $0.rule == failure.rule && Self.sameReply($0.got, failure.got) }
                    }
                } ?? candidates[0]
            let checked = audit.verdict.failures
            for failure in result.verdict.failures {
                // The case's failure rests on a reply check also finds wanting.
                #expect(
                    checked.contains { $0.rule == failure.rule && Self.sameReply($0.got, failure.got) },
                    "\(result.scenario.id): \(failure) not found by check: \(checked)")
            }
            if audit.verdict == .passed && candidates.count == 1 {
                #expect(result.verdict == .passed, "\(result.scenario.id): check passes its session, run --capture says \(result.verdict)")
            }
        }
        #expect(judgedBoth > 0)
        #expect(faults.isEmpty == cases.cases.allSatisfy { !$0.verdict.isFailure })
    }

    /// The reply an observation rests on, whatever it says of it.
    static func sameReply(_ a: Observation, _ b: Observation) -> Bool {
        func reply(_ observation: Observation) -> ServerResponse? {
            switch observation {
            case .reply(let response), .accepting(let response, _), .refusing(let response, _), .acceptedRecipient(_, let response):
                response
            default: nil
            }
        }
        return reply(a) != nil && reply(a) == reply(b)
    }

    /// A policy that switches rules off (relaying, VRFY) against a server
    /// that breaks them: no path fails a case or a session for those rules.
    @Test func aRuleSwitchedOffIsHonouredOnEveryPath() async throws {
        var lenient = Self.policy
        lenient.rules[.relayDenied] = nil
        lenient.rules[.vrfyDisabled] = nil
        let off: Set<RuleID> = [.relayDenied, .vrfyDisabled]
        let scenarios = try battery()
        let naming = Set(scenarios.filter { !$0.rulesNamed.isDisjoint(with: off) && !$0.derivedExpectations }.map(\.id))
        #expect(!naming.isEmpty)

        // The server relays for anyone and answers VRFY.
        let (path, _) = try await self.record(faults: [.openRelay, .laxProtocol])
        defer { try? FileManager.default.removeItem(atPath: path) }

        // A live run: the cases that name the rules are skipped, saying so.
        let live = try await ScenarioRunner(
            .init(target: .reference(faults: [.openRelay, .laxProtocol]), policy: lenient, credentials: Self.credentials)
        ).run(scenarios)
        for result in live.cases where naming.contains(result.scenario.id) {
            guard case .skipped(.ruleOff(let rule)) = result.verdict else {
                Issue.record("live: \(result.scenario.id) is \(result.verdict), not skipped for a rule off")
                continue
            }
            #expect(off.contains(rule))
        }
        #expect(live.cases.allSatisfy { $0.verdict.failures.allSatisfy { !off.contains($0.rule ?? .heloRequired) } }, "\(summary(live))")

        // run --capture: the same.
        let sessions = try CaptureReader.read(path).sessions.map(\.recorded)
        let captured = await CaptureMatch(policy: lenient, credentials: Self.credentials).run(scenarios, sessions: sessions, file: path)
        for result in captured.cases where naming.contains(result.scenario.id) {
            #expect(result.verdict.label == "SKIP", "run --capture: \(result.scenario.id) is \(result.verdict)")
        }

        // check: no session fails for them; the same sessions fail under the policy that enforces them.
        let lenientFindings = sessions.flatMap { Audit.judge($0, policy: lenient, file: path).verdict.failures }
        #expect(lenientFindings.allSatisfy { !off.contains($0.rule ?? .heloRequired) }, "\(lenientFindings)")
        let strictFindings = sessions.flatMap { Audit.judge($0, policy: Self.policy, file: path).verdict.failures }
        #expect(strictFindings.contains { $0.rule == .relayDenied } && strictFindings.contains { $0.rule == .vrfyDisabled })

        // replay --policy against the same faulty server: no finding for them either.
        let identity = try TLSIdentity.selfSigned(hostname: "mx.example.net")
        try await withReferenceServer(
            policy: Self.policy, faults: [.openRelay, .laxProtocol], tls: .init(mode: .starttls, identity: identity)
        ) {
            server in
            let replayer = try Replayer(.init(target: TargetAddress(host: "127.0.0.1", port: server.port), policy: lenient))
            for session in sessions.prefix(60) {
                let result = await replayer.replay(session, capture: path)
                #expect(result.verdict.failures.allSatisfy { !off.contains($0.rule ?? .heloRequired) }, "replay: \(result.verdict)")
            }
        }
    }
}
