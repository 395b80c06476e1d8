import Foundation
import SMTPPolicy
import SMTPProtocol
import Testing

/// Drives a ``PolicySession`` with lines and collects what it answers.
struct Driver {
    var session: PolicySession
    var closed = false

    init(
        _ policy: Policy = .defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"]), client: String = "192.0.2.10",
        authenticator: Authenticator? = nil
    ) {
        self.session = PolicySession(.init(policy: policy, clientAddress: client, authenticator: authenticator))
    }

    /// Sends lines; returns every reply with its rule.
    mutating func send(_ lines: String...) -> [PolicySession.Reply] {
        var out: [PolicySession.Reply] = []
        var framer = LineFramer()
        framer.append(Array(lines.map { $0 + "\r\n" }.joined().utf8))
        while let line = framer.next(), !self.closed {
            let response = self.session.receive(line)
            out += response.replies
            if response.close { self.closed = true }
        }
        return out
    }

    mutating func last(_ lines: String...) -> PolicySession.Reply? {
        var out: [PolicySession.Reply] = []
        for line in lines { out += self.send(line) }
        return out.last
    }
}

@Suite struct PolicySessionTests {
    static func policy(_ timing: RuleTiming) -> Policy {
        var policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"])
        policy.heloTiming = timing
        return policy
    }

    @Test(arguments: [
        ("bad..name", RuleID.heloInvalid, "501 5.5.2 <bad..name>: Helo command rejected: Invalid name"),
        ("host.123", .heloInvalid, "501 5.5.2 <host.123>: Helo command rejected: Invalid name"),
        ("[999.1.1.1]", .heloInvalidLiteral, "501 5.5.2 <[999.1.1.1]>: Helo command rejected: invalid ip address"),
        ("system", .heloNonFQDN, "504 5.5.2 <system>: Helo command rejected: need fully-qualified hostname"),
        ("localhost", .heloDenied, "554 5.7.1 <localhost>: Helo command rejected: Access denied"),
    ])
    func heloRulesAtCommand(name: String, rule: RuleID, wire: String) {
        var driver = Driver(Self.policy(.atCommand))
        let helo = driver.send("HELO \(name)")
        #expect(helo.map(\.rule) == [rule])
        #expect(helo.first?.reply.description == wire)
        // The HELO was refused: MAIL now needs one (docs/policy.md, Timing).
        #expect(driver.send("MAIL FROM:<a@client.example.org>").first?.rule == .heloRequired)
    }

    @Test(arguments: [
        ("bad..name", RuleID.heloInvalid), ("[999.1.1.1]", .heloInvalidLiteral), ("system", .heloNonFQDN), ("localhost", .heloDenied),
    ])
    func heloRulesDelayedUntilRCPT(name: String, rule: RuleID) {
        var driver = Driver(Self.policy(.noLaterThanRCPT))
        let helo = driver.send("EHLO \(name)")
        #expect(helo.first?.reply.code == .ok)
        #expect(helo.first?.deferredRule == rule)
        #expect(driver.send("MAIL FROM:<a@client.example.org>").first?.reply.code == .ok)
        let rcpt = driver.send("RCPT TO:<postmaster@example.net>")
        #expect(rcpt.first?.rule == rule)
        #expect(rcpt.first?.reply.text.contains("<\(name)>: Helo command rejected") == true)
        #expect(driver.send("DATA").first?.rule == .noRecipients)
    }

    /// The rules that do not depend on timing, identical in both.
    @Test(arguments: RuleTiming.allCases)
    func sequenceAndCommandRules(timing: RuleTiming) {
        let policy = Self.policy(timing)
        var d = Driver(policy)
        #expect(d.last("MAIL FROM:<a@client.example.org>")?.reply.description == "503 5.5.1 Error: send HELO/EHLO first")
        #expect(d.last("HELO")?.reply.description == "501 Syntax: HELO hostname")
        #expect(d.last("EHLO")?.reply.description == "501 Syntax: EHLO hostname")
        #expect(d.last("EHLO client.example.org", "RCPT TO:<postmaster@example.net>")?.rule == .needMail)
        #expect(d.last("DATA")?.reply.description == "503 5.5.1 Error: need RCPT command")
        #expect(d.last("MAIL FROM:<a@client.example.org>", "MAIL FROM:<b@client.example.org>")?.rule == .nestedMail)
        #expect(d.last("DATA")?.reply.description == "554 5.5.1 Error: no valid recipients")
        #expect(d.last("XYZZY")?.reply.description == "500 5.5.2 Error: command not recognized")
        #expect(d.last("RSET", "MAIL FROM:<bad@@x>")?.reply.description == "501 5.1.7 Bad sender address syntax")
        #expect(
            d.last("MAIL FROM:<a@client.example.org>", "RCPT TO:<nobody@example.net>")?.reply.description
                == "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table")
        #expect(d.last("RCPT TO:<x@example.org>")?.reply.description == "554 5.7.1 <x@example.org>: Relay access denied")
        #expect(d.last("RCPT TO:<alice@example.net>")?.reply.description == "250 2.1.5 Ok")
        #expect(d.last("DATA")?.reply.description == "354 End data with <CR><LF>.<CR><LF>")
        let queued = d.send("Subject: x", "", "..dot", ".")
        #expect(queued.count == 1)
        #expect(queued.first?.reply.text.hasPrefix("Ok: queued as ") == true)
        #expect(d.last("QUIT")?.reply.description == "221 2.0.0 Bye")
        #expect(d.closed)
    }

    /// The session keeps no message: each body line goes out unstuffed in
    /// its response, and the accepting response names the envelope.
    @Test func messageOctetsGoOutWithTheResponses() {
        var session = PolicySession(policy: .defaultSite(), clientAddress: "192.0.2.1")
        var framer = LineFramer()
        framer.append(Array("EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\nhi\r\n..x\r\n.\r\n".utf8))
        var data: [UInt8] = []
        var message: AcceptedMessage?
        while let line = framer.next() {
            let response = session.receive(line)
            data += response.data
            message = response.accepted ?? message
        }
        #expect(data == Array("hi\r\n.x\r\n".utf8))
        #expect(message?.recipients == ["alice@example.net"])
        #expect(message?.sender == "a@c.example")
        #expect(message?.octets == 8)
    }

    /// Queue ids come from the configuration's seed: the same session answers the same.
    @Test func queueIDsAreDeterministic() {
        func queued(seed: UInt64) -> String? {
            var session = PolicySession(.init(policy: .defaultSite(), clientAddress: "192.0.2.1", queueIDs: QueueIDs(seed: seed)))
            var framer = LineFramer()
            framer.append(Array("EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\nhi\r\n.\r\n".utf8))
            var last: String?
            while let line = framer.next() { last = session.receive(line).accepted?.queueID ?? last }
            return last
        }
        #expect(queued(seed: 7) == queued(seed: 7))
        #expect(queued(seed: 7) != queued(seed: 8))
        #expect(queued(seed: 7)?.count == 12)
    }

    @Test func trustedClientMayRelay() {
        var driver = Driver(client: "127.0.0.2")
        #expect(driver.last("EHLO c.example", "MAIL FROM:<a@c.example>", "RCPT TO:<x@example.org>")?.reply.code == .ok)
    }

    @Test(arguments: [
        ["AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "pw"))"],
        ["AUTH PLAIN", SASL.plainResponse(user: "alice", password: "pw")],
        ["AUTH LOGIN", SASL.base64("alice".utf8), SASL.base64("pw".utf8)],
        ["AUTH LOGIN \(SASL.base64("alice".utf8))", SASL.base64("pw".utf8)],
    ])
    func authMechanismsThenRelay(lines: [String]) {
        var driver = Driver()
        _ = driver.send("EHLO c.example")
        var last: PolicySession.Reply?
        for line in lines { last = driver.send(line).last }
        #expect(last?.reply.description == "235 2.7.0 Authentication successful")
        #expect(driver.last("MAIL FROM:<alice@example.net>", "RCPT TO:<x@example.org>")?.reply.code == .ok)
    }

    @Test func authFailuresAndEdges() {
        var d = Driver()
        #expect(d.last("AUTH PLAIN x")?.rule == .heloRequired)
        _ = d.send("EHLO c.example")
        #expect(
            d.last("AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "wrong"))")?.reply.description
                == "535 5.7.8 Error: authentication failed: authentication failure")
        #expect(d.last("MAIL FROM:<alice@example.net>", "RCPT TO:<x@example.org>")?.rule == .relayDenied)
        _ = d.send("RSET")
        #expect(d.last("AUTH PLAIN", "*")?.rule == .authCancelled)
        #expect(d.last("AUTH PLAIN ***notbase64")?.rule == .authBadEncoding)
        #expect(d.last("AUTH CRAM-XYZ")?.rule == .authMechanism)
        #expect(d.last("AUTH LOGIN", "%%%")?.rule == .authBadEncoding)
        #expect(d.last("AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "pw"))")?.reply.code == .authenticationSucceeded)
        #expect(d.last("AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "pw"))")?.rule == .authAlready)
    }

    @Test func errorLimitSays421AndCloses() {
        var policy = Policy.defaultSite()
        policy.limits.errorLimit = 3
        var driver = Driver(policy)
        #expect(driver.send("XYZZY").count == 1)
        #expect(driver.send("XYZZY").count == 1)
        let third = driver.send("XYZZY")
        #expect(third.map(\.rule) == [.unknownCommand, .tooManyErrors])
        #expect(third.last?.reply.description == "421 4.7.0 mx.example.net Error: too many errors")
        #expect(driver.closed)
    }

    @Test func lineLimitsAndBareLineBreaks() {
        var driver = Driver()
        #expect(driver.last("NOOP " + String(repeating: "x", count: 600))?.rule == .lineTooLong)
        #expect(driver.send("HELO a\nMAIL FROM:<x@y.example>").first?.rule == .bareLineBreak)
    }

    @Test func sizeLimits() {
        var policy = Policy.defaultSite()
        policy.limits.messageSize = 10
        var driver = Driver(policy)
        #expect(driver.last("EHLO c.example", "MAIL FROM:<a@c.example> SIZE=11")?.rule == .mailTooBig)
        #expect(driver.last("MAIL FROM:<a@c.example> SIZE=5", "RCPT TO:<alice@example.net>", "DATA")?.reply.code == .startMailInput)
        #expect(driver.last("0123456789abcdef", ".")?.rule == .messageTooBig)
        #expect(driver.last("MAIL FROM:<a@c.example> FOO=1")?.rule == .mailBadParameter)
    }

    /// A rule the policy switches off is waived: the session accepts where
    /// it would have refused, and says which rule it did not apply.
    @Test func aRuleSwitchedOffIsWaived() {
        var policy = Policy.defaultSite()
        policy.rules[.relayDenied] = nil
        policy.rules[.heloNonFQDN] = nil
        policy.rules[.vrfyDisabled] = nil
        var driver = Driver(policy)
        let helo = driver.send("HELO system").first
        #expect(helo?.reply.code == .ok && helo?.waived == .heloNonFQDN)
        let rcpt = driver.last("MAIL FROM:<a@c.example>", "RCPT TO:<x@example.org>")
        #expect(rcpt?.reply.code == .ok && rcpt?.waived == .relayDenied)
        let vrfy = driver.last("VRFY postmaster")
        #expect(vrfy?.reply.code == .cannotVerify && vrfy?.waived == .vrfyDisabled)
    }

    /// Credentials are checked by the configuration's authenticator.
    @Test func anotherAuthenticatorDecidesCredentials() {
        var anyone = Driver(authenticator: Authenticator { _ in true })
        #expect(
            anyone.last("EHLO c.example", "AUTH PLAIN \(SASL.plainResponse(user: "mallory", password: "nope"))")?.reply.code
                == .authenticationSucceeded)
        var policy = Driver()
        #expect(
            policy.last("EHLO c.example", "AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "nope"))")?.reply.code
                == .authenticationFailed)
    }

    @Test func newEhloResetsTheTransaction() {
        var driver = Driver()
        _ = driver.send("EHLO c.example", "MAIL FROM:<a@c.example>")
        #expect(driver.last("EHLO c.example", "RCPT TO:<alice@example.net>")?.rule == .needMail)
    }

    @Test func idleTimeout() {
        let session = PolicySession(policy: .defaultSite(), clientAddress: nil)
        let response = session.idleTimeout()
        #expect(response.close)
        #expect(response.replies.first?.reply.description == "421 4.4.2 mx.example.net Error: timeout exceeded")
    }
}

@Suite struct PolicySessionTLSAndCRAMTests {
    @Test func cramMD5WithTheRightAndWrongPassword() throws {
        for (password, expected) in [("pw", ReplyCode.authenticationSucceeded), ("nope", ReplyCode.authenticationFailed)] {
            var driver = Driver()
            _ = driver.send("EHLO c.example")
            let challengeReply = try #require(driver.send("AUTH CRAM-MD5").first?.reply)
            #expect(challengeReply.code == .authContinue)
            let challenge = try #require(SASL.decodeBase64(challengeReply.lines[0]))
            #expect(String(decoding: challenge, as: UTF8.self).hasSuffix("@mx.example.net>"))
            let answer = driver.send(SASL.cramMD5Response(user: "alice", password: password, challenge: challenge))
            #expect(answer.first?.reply.code == expected)
        }
    }

    @Test func starttlsRules() {
        var plain = PolicySession(policy: .defaultSite(), clientAddress: "192.0.2.1", tls: .none)
        var framer = LineFramer()
        framer.append(Array("EHLO c.example\r\nSTARTTLS\r\n".utf8))
        let ehlo = framer.next().map { plain.receive($0) }
        #expect(ehlo?.replies.first?.reply.lines.contains("STARTTLS") == false)
        #expect(framer.next().map { plain.receive($0) }?.replies.first?.rule == .tlsNotAvailable)

        var offered = PolicySession(policy: .defaultSite(), clientAddress: "192.0.2.1", tls: .starttls)
        framer.append(Array("EHLO c.example\r\nSTARTTLS now\r\nSTARTTLS\r\n".utf8))
        #expect(framer.next().map { offered.receive($0) }?.replies.first?.reply.lines.contains("STARTTLS") == true)
        #expect(framer.next().map { offered.receive($0) }?.replies.first?.rule == .commandSyntax)
        let upgrade = framer.next().map { offered.receive($0) }
        #expect(upgrade?.startTLS == true)
        #expect(upgrade?.replies.first?.reply.description == "220 2.0.0 Ready to start TLS")
        offered.tlsEstablished()
        #expect(offered.facts.tlsActive)

        var implicit = PolicySession(policy: .defaultSite(), clientAddress: "192.0.2.1", tls: .implicit)
        framer.append(Array("STARTTLS\r\n".utf8))
        #expect(framer.next().map { implicit.receive($0) }?.replies.first?.rule == .tlsAlreadyActive)
    }
}

@Suite struct XCLIENTTests {
    @Test func onlyAuthorisedHostsMayUseXCLIENT() {
        var stranger = Driver(client: "127.0.0.1")
        #expect(stranger.send("EHLO c.example").first?.reply.lines.contains { $0.hasPrefix("XCLIENT") } == false)
        #expect(stranger.last("XCLIENT ADDR=127.0.0.2")?.reply.description == "550 5.7.0 Error: insufficient authorization")
    }

    @Test func xclientNamesTheClientThePolicyJudges() {
        var proxy = Driver(client: "127.0.0.3")
        #expect(proxy.send("EHLO c.example").first?.reply.lines.contains("XCLIENT NAME ADDR PROTO HELO LOGIN") == true)
        #expect(proxy.last("XCLIENT ADDR=127.0.0.2 NAME=[UNAVAILABLE]")?.reply.code == .serviceReady)
        #expect(proxy.last("EHLO c.example", "MAIL FROM:<a@c.example>", "RCPT TO:<x@example.org>")?.reply.code == .ok)
        #expect(proxy.last("RSET", "XCLIENT ADDR=192.0.2.25")?.reply.code == .serviceReady)
        #expect(proxy.last("EHLO c.example", "MAIL FROM:<a@c.example>", "RCPT TO:<x@example.org>")?.rule == .relayDenied)
        #expect(proxy.last("RSET", "XCLIENT ADDR=not-an-address")?.rule == .commandSyntax)
    }
}

/// The policy keys real sites need, and a TLS-required site as Postfix runs it.
@Suite struct SiteModelTests {
    static func replies(_ policy: Policy, client: String = "192.0.2.10", _ lines: [String]) -> [SMTPReply] {
        var session = PolicySession(.init(policy: policy, clientAddress: client, tls: .starttls))
        var out: [SMTPReply] = []
        var framer = LineFramer()
        framer.append(Array(lines.map { $0 + "\r\n" }.joined().utf8))
        while let line = framer.next() { out += session.receive(line).replies.map(\.reply) }
        return out
    }

    /// Postfix with smtpd_tls_security_level = encrypt (tried on the fixture):
    /// EHLO, HELO, STARTTLS, NOOP, QUIT and XCLIENT are served before TLS,
    /// unknown commands get 500, the rest 530.
    @Test func aTLSRequiredSiteServesOnlyItsPreTLSCommands() throws {
        var policy = try Policy.parse("tls_required: true\n", file: "p.yaml", environment: [:])
        policy.xclientHosts = []
        let replies = Self.replies(
            policy,
            [
                "EHLO c.example", "NOOP", "RSET", "VRFY postmaster", "EXPN postmaster", "XYZZY", "MAIL FROM:<a@b.example>",
                "RCPT TO:<alice@example.net>", "DATA", "AUTH PLAIN x", "XCLIENT ADDR=1.2.3.4", "HELO c.example",
            ])
        #expect(replies.map(\.code.value) == [250, 250, 530, 530, 500, 500, 530, 530, 530, 530, 550, 250])
        #expect(replies[0].lines.contains { $0.hasPrefix("AUTH") } == false)
    }

    /// auth_requires_tls: AUTH only after STARTTLS, MAIL in plain text.
    @Test func authMayRequireTLSWhileMailDoesNot() throws {
        let policy = try Policy.parse("auth_requires_tls: true\n", file: "p.yaml", environment: [:])
        let replies = Self.replies(policy, ["EHLO c.example", "AUTH PLAIN x", "MAIL FROM:<a@b.example>"])
        #expect(!replies[0].lines.contains { $0.hasPrefix("AUTH") })
        #expect(replies.map(\.code.value) == [250, 530, 250])
    }

    /// auth_required (RFC 6409 4.3): MAIL gets RFC 4954 6's 530 until AUTH; after it, mail goes through.
    @Test func authRequiredRefusesMailUntilAUTH() throws {
        let policy = try Policy.parse("auth_required: true\n", file: "p.yaml", environment: ["SMTPCHECK_PASSWORD": "pw"])
        let plain = Data("\u{0}alice\u{0}pw".utf8).base64EncodedString()
        let replies = Self.replies(
            policy, ["EHLO c.example", "MAIL FROM:<a@b.example>", "AUTH PLAIN \(plain)", "MAIL FROM:<alice@example.net>"])
        #expect(replies.map(\.code.value) == [250, 530, 235, 250])
        #expect(replies[1].enhancedCode == EnhancedStatusCode(5, 7, 0))
        #expect(Self.replies(Policy.defaultSite(), ["EHLO c.example", "MAIL FROM:<a@b.example>"]).map(\.code.value) == [250, 250])
    }

    /// helo_checks_exempt: trusted (and authenticated) clients' HELO names are not checked.
    @Test func trustedClientsMayBeExemptFromHeloChecks() throws {
        let exempt = try Policy.parse("helo_checks_exempt: [trusted, authenticated]\n", file: "p.yaml", environment: [:])
        #expect(Self.replies(exempt, client: "127.0.0.2", ["HELO system"]).map(\.code.value) == [250])
        #expect(Self.replies(exempt, client: "192.0.2.10", ["HELO system"]).map(\.code.value) == [504])
        #expect(Self.replies(Policy.defaultSite(), client: "127.0.0.2", ["HELO system"]).map(\.code.value) == [504])
    }

    /// address_syntax postfix reads what Postfix reads, as seen in a real capture.
    @Test func postfixReadingsOfEnvelopesAndForbiddenCommands() throws {
        let policy = try Policy.parse("address_syntax: postfix\nlimits: {command_line_length: 2048}\n", file: "p.yaml", environment: [:])
        let replies = Self.replies(
            policy,
            [
                "EHLO c.example", "MAIL FROM:sender@client.example.org", "RCPT TO:alice@example.net",
                "NOOP " + String(repeating: "x", count: 3000),
            ])
        #expect(replies.map(\.code.value) == [250, 250, 250, 250])
        var session = PolicySession(policy: policy, clientAddress: "192.0.2.10")
        let connect = session.receive(LineFramer.Line(bytes: Array("CONNECT example.org:25 HTTP/1.0".utf8)))
        #expect(connect.close && connect.replies.first?.reply.description == "221 2.7.0 Error: I can break rules, too. Goodbye.")
        // The strict reading refuses all three.
        let strict = Self.replies(Policy.defaultSite(), ["EHLO c.example", "MAIL FROM:sender@client.example.org"])
        #expect(strict.last?.code.value == 501)
    }

    /// RFC 3207 4.2: after STARTTLS the client was told nothing of PIPELINING;
    /// Postfix remembers it for the connection, which a policy can say.
    @Test(arguments: [(Policy.PipeliningMemory.forgotten, RuleID.unauthPipelining as RuleID?), (.remembered, nil)])
    func pipeliningKnowledgeAfterSTARTTLS(memory: Policy.PipeliningMemory, rule: RuleID?) {
        var policy = Policy.defaultSite()
        policy.pipeliningAfterTLS = memory
        var session = PolicySession(.init(policy: policy, clientAddress: "192.0.2.10", tls: .starttls))
        _ = session.receive(LineFramer.Line(bytes: Array("EHLO c.example".utf8)))
        _ = session.receive(LineFramer.Line(bytes: Array("STARTTLS".utf8)))
        session.tlsEstablished()
        _ = session.receive(LineFramer.Line(bytes: Array("HELO c.example".utf8)))
        _ = session.receive(LineFramer.Line(bytes: Array("MAIL FROM:<a@c.example>".utf8)), followed: true)
        _ = session.receive(LineFramer.Line(bytes: Array("RCPT TO:<alice@example.net>".utf8)), followed: true)
        #expect(session.receive(LineFramer.Line(bytes: Array("DATA".utf8))).replies.first?.rule == rule)
    }
}
