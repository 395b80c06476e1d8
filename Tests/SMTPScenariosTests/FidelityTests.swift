import SMTPPolicy
import SMTPProtocol
import SMTPScenarios
import SMTPTestSupport
import Testing

/// What real servers answer, judged as a case: each answer the RFCs allow
/// passes under `portable`, and nothing passes that was not tested.
@Suite struct FidelityTests {
    static let credentials = Credentials(user: "alice", password: "fidelity-pw")

    static func policy(_ profile: Profile = .portable, _ change: (inout Policy) -> Void = { _ in }) -> Policy {
        var policy = Policy.defaultSite(profile: profile, environment: ["SMTPCHECK_PASSWORD": credentials.password])
        change(&policy)
        return policy
    }

    static func scenario(_ id: String) throws -> Scenario {
        try #require(try battery().first { $0.id == id })
    }

    /// The case judged on a recorded session; the client is external unless it is trusted.
    static func verdict(_ id: String, _ recorded: Recorded, policy: Policy, client: String = "192.0.2.10") async throws -> Verdict {
        let scenario = try Self.scenario(id)
        let prelude: Executor.Prelude = scenario.derivedExpectations && scenario.identity == .authenticated ? .authenticate : .none
        let expected = await Simulation.run(
            scenario, policy: policy, credentials: Self.credentials, client: client, tls: .starttls, server: "198.51.100.25:25",
            prelude: prelude)
        var actual = recorded.transcript
        // Number the exchanges by the steps, as the live run does: the prelude's carry none.
        var step = -1
        let preludeUnits = prelude == .none ? 0 : 2
        for index in actual.exchanges.indices where actual.exchanges[index].role == .answer {
            let ordinal = actual.exchanges[..<index].filter { $0.role == .answer }.count
            step = ordinal < preludeUnits ? -1 : ordinal - preludeUnits
            actual.exchanges[index].step = step >= 0 && step < scenario.steps.count ? step : nil
        }
        let judge = Judge(scenario: scenario, policy: policy, expected: expected, conformance: Conformance(policy: policy, client: client))
        return judge.verdict(actual: actual)
    }

    /// 1. After EHLO and AUTH, the case's `HELO system` is refused at the
    /// command; the earlier greeting stands (RFC 5321 4.1.4) and the RCPT
    /// that follows is rightly accepted.
    @Test func aRefusedHeloLeavesTheEarlierGreetingStanding() async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250-mx.example.net\n250 AUTH PLAIN"), ("AUTH PLAIN xxxx", "235 2.7.0 ok"),
            ("HELO system", "504 5.5.2 <system>: Helo command rejected: need fully-qualified hostname"),
            ("MAIL FROM:<sender@client.example.org>", "250 2.1.0 Ok"), ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok"),
        ])
        let verdict = try await Self.verdict("helo.bare-hostname@authenticated", r, policy: Self.policy())
        #expect(verdict == .passed, "\(verdict)")
    }

    /// 2. At the error limit, a refusal followed by a close keeps the portable policy; the documented one wants its 421.
    @Test func theErrorLimitMayBeARefusalAndAClose() async throws {
        let limit = 3
        var r = Recorded([("EHLO client.example.org", "250 mx.example.net")])
        for _ in 0..<limit { r.send("XYZZY", "500 5.5.1 unrecognized command") }
        r.send("NOOP", nil)
        r.transcript.end = .closedByServer(at: 10)
        let portable = try await Self.verdict(
            "cmd.error-limit", r,
            policy: Self.policy {
                $0.limits.errorLimit = limit; $0.statedLimits.insert(.errorLimit)
            })
        #expect(portable == .passed, "\(portable)")
        let documented = try await Self.verdict("cmd.error-limit", r, policy: Self.policy(.documented) { $0.limits.errorLimit = limit })
        #expect(documented.isFailure, "\(documented)")
    }

    /// 3. VRFY answered 252 discloses nothing (RFC 5321 3.5.3, 7.3); a 250 confirming the user is the finding.
    @Test(arguments: [
        ("252 2.1.5 Send some mail, I'll try my best", true), ("550 5.1.1 no", true), ("250 2.1.5 <postmaster@example.net>", false),
    ])
    func vrfyThatConfirmsNothingPasses(reply: String, passes: Bool) async throws {
        let r = Recorded([("EHLO client.example.org", "250 mx.example.net"), ("VRFY postmaster", reply)])
        let verdict = try await Self.verdict("discipline.vrfy-enumeration", r, policy: Self.policy())
        #expect((verdict == .passed) == passes, "\(verdict)")
    }

    /// 4. SIZE is judged against the SIZE the server advertised (RFC 1870): a
    /// 452 where it gives no number, a refusal where the declared size is over it.
    @Test(arguments: [
        ("250-mx.example.net\n250 SIZE", "452 4.3.1 Insufficient system storage", true),
        ("250-mx.example.net\n250 SIZE 52428800", "552 5.3.4 Message size exceeds fixed limit", true),
        ("250-mx.example.net\n250 SIZE 52428800", "250 2.1.0 Ok", false),
    ])
    func sizeIsJudgedAgainstTheAdvertisedSize(ehlo: String, reply: String, passes: Bool) async throws {
        let r = Recorded([("EHLO client.example.org", ehlo), ("MAIL FROM:<sender@client.example.org> SIZE=99999999999", reply)])
        let verdict = try await Self.verdict("discipline.size-exceeded", r, policy: Self.policy())
        #expect((verdict == .passed) == passes, "\(verdict)")
    }

    /// 5. A routed address at the local domain from a client that may relay: accepting or refusing it with a 5xx both keep the policy.
    @Test(arguments: ["250 2.1.5 Ok", "550 5.1.1 <relaytest%example.org@example.net>: User unknown"])
    func aRoutedLocalAddressFromATrustedClient(reply: String) async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<antispam@example.net>", "250 2.1.0 Ok"),
            ("RCPT TO:<relaytest%example.org@example.net>", reply),
        ])
        let verdict = try await Self.verdict("relay.trick.percent-local@trusted", r, policy: Self.policy(), client: "127.0.0.2")
        #expect(verdict == .passed, "\(verdict)")
    }

    /// A server may refuse a repeated EHLO (RFC 5321 4.1.4: "if ... acceptable
    /// to the SMTP server"); the reset the case looks for then never happened,
    /// and the case is skipped, not failed for the RCPT the transaction keeps.
    @Test func aRefusedRepeatedEHLOLeavesNoResetToJudge() async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<sender@client.example.org>", "250 2.0.0 Ok"),
            ("EHLO client.example.org", "503 5.5.1 Invalid command: Already identified"),
            ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Destination address valid: Recipient ok"),
        ])
        #expect(try await Self.verdict("helo.ehlo-resets-transaction", r, policy: Self.policy()) == .skipped(.greetingRefused(step: 2)))
        let resets = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<sender@client.example.org>", "250 2.0.0 Ok"),
            ("EHLO client.example.org", "250 mx.example.net"), ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok"),
        ])
        #expect(try await Self.verdict("helo.ehlo-resets-transaction", resets, policy: Self.policy()).isFailure)
    }

    /// A server that says 220 to a step's STARTTLS and then fails the
    /// handshake could not give what it offered (RFC 3207 4.1): a failure of
    /// the case, not an error of the run.
    @Test func aHandshakeFailureAfter220IsTheServers() async throws {
        var r = Recorded([("EHLO client.example.org", "250-mx.example.net\n250 STARTTLS"), ("STARTTLS", "220 2.0.0 Ready to start TLS")])
        r.transcript.end = .failed(.tlsHandshake("the server sent the fatal TLS alert internal_error"), at: 3)
        let verdict = try await Self.verdict("tls.starttls-twice", r, policy: Self.policy())
        guard case .failed(let failures) = verdict else {
            Issue.record("expected a failure, got \(verdict)")
            return
        }
        #expect(failures.contains { $0.got == .handshakeFailed("the server sent the fatal TLS alert internal_error") })
        // A refused STARTTLS is no handshake failure.
        var refused = Recorded([
            ("EHLO client.example.org", "250-mx.example.net\n250 STARTTLS"), ("STARTTLS", "454 4.7.0 TLS not available"),
        ])
        refused.transcript.end = .closedByClient(at: 3)
        let refusedVerdict = try await Self.verdict("tls.starttls-twice", refused, policy: Self.policy())
        #expect(!refusedVerdict.failures.contains { if case .handshakeFailed = $0.got { true } else { false } })
    }

    /// Issue 16, 4. Under `address_syntax: strict` a `%` at the local domain
    /// is a local part (RFC 5321 2.3.11), not a route: the unknown-user
    /// refusal is the policy's own answer, even under the exact profile.
    @Test func aPercentAtTheLocalDomainIsALocalPartUnderStrict() async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<antispam@example.net>", "250 2.1.0 Ok"),
            (
                "RCPT TO:<relaytest%example.org@example.net>",
                "550 5.1.1 <relaytest%example.org@example.net>: Recipient address rejected: User unknown in local recipient table"
            ),
        ])
        let strict = Self.policy(.documented)
        #expect(try await Self.verdict("relay.trick.percent-local@trusted", r, policy: strict, client: "127.0.0.2") == .passed)
        let postfix = Self.policy(.documented) { $0.addressSyntax = .postfix }
        #expect(try await Self.verdict("relay.trick.percent-local@trusted", r, policy: postfix, client: "127.0.0.2").isFailure)
    }

    /// Issue 16, 5. On a site that requires AUTH, the 530 may come at RCPT
    /// instead of MAIL (RFC 4954 6); a server that takes both is the finding.
    @Test(arguments: [("530 5.7.0 Authentication required", true), ("250 2.1.5 Ok", false)])
    func theAuthRequirementMayBeEnforcedAtRCPT(rcptReply: String, passes: Bool) async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<sender@client.example.org>", "250 2.1.0 Ok"),
            ("RCPT TO:<postmaster@example.net>", rcptReply),
        ])
        let policy = Self.policy(.documented) {
            $0.authRequired = true
            $0.rules[.authRequired] = RuleCatalogue.documented[.authRequired]
        }
        let verdict = try await Self.verdict("auth.required", r, policy: policy)
        #expect((verdict == .passed) == passes, "\(verdict)")
    }

    /// Issue 16, 7. STARTTLS forgets the EHLO for the whole transaction (RFC
    /// 3207 4.2): a server that takes MAIL, RCPT and DATA after it without a
    /// new EHLO fails at each, and the message is the evidence.
    @Test func aServerThatKeepsThePreTLSStateFailsAtEachStep() async throws {
        var r = Recorded([
            ("EHLO client.example.org", "250-mx.example.net\n250 STARTTLS"), ("STARTTLS", "220 2.0.0 Ready to start TLS"),
            ("MAIL FROM:<sender@client.example.org>", "250 2.1.0 Ok"), ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok"),
            ("DATA", "354 End data with <CR><LF>.<CR><LF>"),
        ])
        r.body(90, "250 2.0.0 Ok: queued as 1234")
        let verdict = try await Self.verdict("tls.starttls-forgets-transaction", r, policy: Self.policy())
        #expect(verdict.failures.compactMap(\.step) == [2, 3, 4], "\(verdict)")
    }

    /// 9. A limit the portable policy does not state is not judged.
    @Test func anUnstatedLimitIsSkipped() async throws {
        let r = Recorded([("EHLO client.example.org", "250 mx.example.net")])
        let verdict = try await Self.verdict("discipline.too-many-recipients", r, policy: Self.policy())
        #expect(verdict == .skipped(.limitNotStated(.maxRecipients)))
        let stated = Self.policy { $0.statedLimits.insert(.maxRecipients) }
        #expect(try await Self.verdict("discipline.too-many-recipients", r, policy: stated) != .skipped(.limitNotStated(.maxRecipients)))
    }

    /// 12. On a TLS-required site in plain text, a case whose rule the 530 pre-empts is skipped, saying so.
    @Test func aRulePreemptedByTheTLSRequirementIsSkipped() async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"),
            ("MAIL FROM:<sender@client.example.org>", "530 5.7.0 Must issue a STARTTLS command first"),
        ])
        let verdict = try await Self.verdict(
            "relay.external", r,
            policy: Self.policy {
                $0.tlsRequired = true; $0.rules[.authTLSRequired] = RuleCatalogue.documented[.authTLSRequired]
            })
        guard case .skipped(.ruleNotApplied(.relayDenied, let first)) = verdict else {
            Issue.record("\(verdict)")
            return
        }
        #expect(first?.rule == .authTLSRequired)
    }

    /// A pass rests on the behaviour the case is about: a server that refused
    /// MAIL (the portable policy accepts it) has not shown it refuses relaying.
    @Test func aRefusalForAnotherReasonIsNoPass() async throws {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"),
            ("MAIL FROM:<sender@client.example.org>", "530 5.7.0 Must issue a STARTTLS command first"),
            ("RCPT TO:<someone@example.org>", "503 5.5.1 Error: need MAIL command"),
        ])
        let verdict = try await Self.verdict("relay.external", r, policy: Self.policy())
        #expect(verdict.isFailure, "\(verdict)")
        #expect(verdict.failures.first?.step == 1)
    }
}
