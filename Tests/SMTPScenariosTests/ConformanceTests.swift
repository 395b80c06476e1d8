import SMTPPolicy
import SMTPProtocol
import SMTPScenarios
import Testing

/// A recorded session written by hand: each line the client sent and the
/// reply it got, as `check` would read them from a capture.
struct Recorded {
    var transcript = Transcript(client: "192.0.2.10:40000", server: "198.51.100.25:25")
    private var clock = 0.0

    init(greeting: String = "220 mx.example.net ESMTP") {
        self.transcript.exchanges.append(.init(role: .greeting, response: Self.response(greeting), repliedAt: self.tick()))
    }

    static func response(_ text: String) -> ServerResponse {
        var parser = ReplyParser()
        var last: ServerResponse?
        for line in text.split(separator: "\n") { last = parser.feed(LineFramer.Line(bytes: Array(line.utf8))) ?? last }
        return last ?? .malformed(MalformedReply(lines: [], reason: "empty"))
    }

    mutating func tick() -> Double {
        self.clock += 1
        return self.clock
    }

    /// A session of commands, each with its reply.
    init(_ turns: [(String, String)]) {
        self.init()
        for (line, reply) in turns { self.send(line, reply) }
    }

    /// A command and its reply (lines of a multi-line reply separated by `\n`).
    mutating func send(_ line: String, _ reply: String?, group: Int? = nil) {
        let sent = self.tick()
        self.transcript.exchanges.append(
            .init(
                role: .answer, sent: .command(Array(line.utf8)), response: reply.map(Self.response), sentAt: sent,
                repliedAt: reply == nil ? nil : self.tick(), pipelineGroup: group))
    }

    mutating func body(_ octets: Int, _ reply: String) {
        let sent = self.tick()
        self.transcript.exchanges.append(
            .init(role: .answer, sent: .messageBody(octets: octets), response: Self.response(reply), sentAt: sent, repliedAt: self.tick()))
    }

    mutating func unsolicited(_ reply: String) {
        self.transcript.exchanges.append(.init(role: .unsolicited, response: Self.response(reply), repliedAt: self.tick()))
    }

    /// The same, with the first command sent before the greeting came.
    mutating func talkedFirst() {
        if let index = self.transcript.exchanges.firstIndex(where: { $0.sent != nil }) { self.transcript.exchanges[index].sentAt = 0.5 }
    }
}

@Suite struct ConformanceTests {
    static func policy(_ change: (inout Policy) -> Void = { _ in }) -> Policy {
        var policy = Policy.defaultSite()
        change(&policy)
        return policy
    }

    static func walk(_ recorded: Recorded, _ policy: Policy = policy()) -> [Judgement] {
        Conformance(policy: policy, client: "192.0.2.10").walk(recorded.transcript)
    }

    static func broken(_ judgements: [Judgement]) -> [Judgement] { judgements.filter(\.isBroken) }

    @Test func aSessionThatKeepsThePolicyBreaksNothing() {
        var r = Recorded()
        r.send("EHLO client.example.org", "250-mx.example.net\n250 PIPELINING")
        r.send("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok")
        r.send("RCPT TO:<someone@example.org>", "554 5.7.1 <someone@example.org>: Relay access denied")
        r.send("RCPT TO:<alice@example.net>", "250 2.1.5 Ok")
        r.send("DATA", "354 End data with <CR><LF>.<CR><LF>")
        r.body(100, "250 2.0.0 Ok: queued as X")
        r.send("QUIT", "221 2.0.0 Bye")
        let judgements = Self.walk(r)
        #expect(Self.broken(judgements).isEmpty, "\(judgements)")
        #expect(
            judgements.contains {
                $0.demand
                    == .refusal(.relayDenied, PolicyOracle(policy: Self.policy()).refusal(.relayDenied, ["rcpt": "someone@example.org"]))
            })
    }

    @Test func anAcceptedRelayBreaksTheRule() {
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"), ("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok"),
            ("RCPT TO:<someone@example.org>", "250 2.1.5 Ok"),
        ])
        let broken = Self.broken(Self.walk(r))
        #expect(broken.map(\.rule) == [.relayDenied])
        #expect(broken.first?.outcome == .broken(nil))
    }

    /// Allowance: a HELO-name rule the policy lets wait until RCPT, refused
    /// at the HELO itself; the earlier EHLO then still stands (RFC 5321 4.1.4).
    @Test func aDeferredHeloRefusalMayComeEarlyAndTheEarlierGreetingStands() {
        let delayed = Self.policy { $0.heloTiming = .noLaterThanRCPT }
        let r = Recorded([
            ("EHLO client.example.org", "250 mx.example.net"),
            ("HELO system", "504 5.5.2 <system>: Helo command rejected: need fully-qualified hostname"),
            ("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok"), ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok"),
        ])
        let judgements = Self.walk(r, delayed)
        #expect(Self.broken(judgements).isEmpty, "\(judgements)")
        #expect(judgements.contains { $0.outcome == .allowed(.refusedEarlier(.heloNonFQDN)) })
    }

    /// Deferred and accepted at HELO, the refusal is due at RCPT: accepting the recipient breaks it.
    @Test func aDeferredHeloRefusalIsDueAtRCPT() {
        let delayed = Self.policy { $0.heloTiming = .noLaterThanRCPT }
        let r = Recorded([
            ("HELO system", "250 mx.example.net"), ("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok"),
            ("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok"),
        ])
        #expect(Self.broken(Self.walk(r, delayed)).map(\.rule) == [.heloNonFQDN])
    }

    /// Allowance: the 421 of the error limit may answer the next command
    /// (RFC 5321 3.8), or come in place of the last error's reply; a server
    /// that carries on breaks it.
    @Test(arguments: [
        (
            "500 5.5.2 Error: command not recognized", "421 4.7.0 mx.example.net Error: too many errors" as String?,
            Judgement.Outcome.allowed(.closingAtNextCommand)
        ),
        ("421 4.7.0 mx.example.net Error: too many errors", nil, .allowed(.closingInPlace)),
        ("500 5.5.2 Error: command not recognized", "250 2.0.0 Ok", .broken(.code(got: ReplyCode(250), expected: ReplyCode(421)))),
    ])
    func theErrorLimitsClosingReply(last: String, next: String?, outcome: Judgement.Outcome) {
        let policy = Self.policy { $0.limits.errorLimit = 2 }
        var r = Recorded()
        r.send("EHLO client.example.org", "250 mx.example.net")
        r.send("XYZZY", "500 5.5.2 Error: command not recognized")
        r.send("XYZZY", last)
        if let next { r.send("NOOP", next) }
        let judgements = Self.walk(r, policy)
        #expect(judgements.contains { $0.outcome == outcome }, "\(judgements)")
    }

    /// Allowance: a client that talked before the greeting, judged where the
    /// policy has no greeting pause: refused or not at DATA, both keep it.
    @Test(arguments: [
        "354 End data with <CR><LF>.<CR><LF>", "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining",
    ])
    func earlyTalkWithoutAPauseIsUpToTiming(dataReply: String) {
        var r = Recorded()
        r.send("EHLO client.example.org", "250-mx.example.net\n250 PIPELINING")
        r.send("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok")
        r.send("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok")
        r.send("DATA", dataReply)
        r.talkedFirst()
        #expect(Self.broken(Self.walk(r)).isEmpty)
        // With a greeting pause the server must have seen it.
        let paused = Self.policy { $0.limits.greetPauseMilliseconds = 1000 }
        #expect(Self.broken(Self.walk(r, paused)).isEmpty == dataReply.hasPrefix("503"))
    }

    /// A rule the policy switches off is waived: whatever the server answers there keeps the policy.
    @Test(arguments: ["502 5.5.1 VRFY command is disabled", "252 2.0.0 Cannot VRFY user", "250 2.1.5 <postmaster@example.net>"])
    func aRuleSwitchedOffIsNotJudged(vrfyReply: String) {
        var r = Recorded()
        r.send("EHLO client.example.org", "250 mx.example.net")
        r.send("VRFY postmaster", vrfyReply)
        let off = Self.policy { $0.rules[.vrfyDisabled] = nil }
        #expect(Self.broken(Self.walk(r, off)).isEmpty)
        #expect(Self.walk(r, off).contains { $0.demand == .free(.waived(.vrfyDisabled)) })
        #expect(Self.broken(Self.walk(r)).isEmpty == vrfyReply.hasPrefix("502"))
    }

    /// The walk follows the real server: a MAIL it refused leaves no
    /// transaction, so the next RCPT is judged as a RCPT without MAIL.
    @Test func theWalkFollowsWhatTheServerAnswered() {
        var r = Recorded()
        r.send("EHLO client.example.org", "250 mx.example.net")
        r.send("MAIL FROM:<a@client.example.org>", "530 5.7.0 Must issue a STARTTLS command first")
        r.send("RCPT TO:<someone@example.org>", "503 5.5.1 Error: need MAIL command")
        let judgements = Self.walk(r)
        #expect(judgements[1].isBroken)
        #expect(judgements[2].rule == .needMail && !judgements[2].isBroken)
    }

    /// What the client was told of PIPELINING comes from the real EHLO reply.
    @Test func pipeliningIsJudgedByWhatTheServerOffered() {
        func walk(offering ehlo: String) -> [Judgement] {
            var r = Recorded()
            r.send("EHLO client.example.org", ehlo)
            r.send("MAIL FROM:<a@client.example.org>", "250 2.1.0 Ok", group: 1)
            r.send("RCPT TO:<postmaster@example.net>", "250 2.1.5 Ok", group: 1)
            r.send("DATA", "354 go", group: 1)
            return Self.walk(r)
        }
        #expect(Self.broken(walk(offering: "250-mx.example.net\n250 PIPELINING")).isEmpty)
        #expect(Self.broken(walk(offering: "250 mx.example.net")).map(\.rule) == [.unauthPipelining])
    }

    /// A hole in a capture ends the walk: what follows cannot be paired.
    @Test func aHoleEndsTheWalk() {
        var r = Recorded()
        r.send("EHLO client.example.org", "250 mx.example.net")
        r.send("RCPT TO:<someone@example.org>", "250 2.1.5 Ok")
        r.transcript.exchanges[2].notes = [.missingData(.client, octets: 40)]
        #expect(Self.walk(r).count == 1)
    }
}
