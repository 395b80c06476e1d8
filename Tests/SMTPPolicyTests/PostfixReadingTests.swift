import Foundation
import SMTPPolicy
import SMTPProtocol
import Testing

/// The policy knobs that let a site say it reads names and addresses as
/// Postfix does, seen against what Postfix 3.7 answered on loopback
/// (`make conformance-postfix`).
@Suite struct PostfixReadingTests {
    static func policy(_ text: String) throws -> Policy {
        try Policy.parse(text, file: "p.yaml", environment: ["SMTPCHECK_PASSWORD": "pw"])
    }

    @Test(
        arguments: [
            ("client.example.org.", nil, RuleID.heloInvalid),
            ("client_1.example.org", nil, .heloInvalid),
            ("_a.example.org", nil, .heloInvalid),
            ("client.example.123", nil, .heloInvalid),
            ("system.", .heloNonFQDN, .heloInvalid),
            ("a..b.org", .heloInvalid, .heloInvalid),
            ("-a.b.org", .heloInvalid, .heloInvalid),
            ("a.b.org..", .heloInvalid, .heloInvalid),
            ("1.2.3.4.5", .heloInvalid, .heloInvalid),
            ("123", .heloInvalid, .heloNonFQDN),
            ("system", .heloNonFQDN, .heloNonFQDN),
        ] as [(String, RuleID?, RuleID?)])
    func heloNamesAsPostfixReadsThem(name: String, postfix: RuleID?, strict: RuleID?) throws {
        let lenient = PolicyOracle(policy: try Self.policy("helo_syntax: postfix\n"))
        #expect(lenient.heloRule(for: name) == postfix, "\(name)")
        #expect(PolicyOracle(policy: try Self.policy("helo_syntax: strict\n")).heloRule(for: name) == strict, "\(name)")
    }

    @Test(arguments: [
        ("RCPT TO:<example.org!relaytest>", "554 5.7.1 <example.org!relaytest>: Relay access denied"),
        ("RCPT TO:<\"relaytest@example.org\"@example.net>", "554 5.7.1 <relaytest@example.org@example.net>: Relay access denied"),
        ("RCPT TO:<@example.net:relaytest@example.org>", "554 5.7.1 <relaytest@example.org>: Relay access denied"),
        ("RCPT TO:<relaytest@example.org@example.net>", "554 5.7.1 <relaytest@example.org@example.net>: Relay access denied"),
        ("RCPT TO:<\"relaytest%example.org\">", "554 5.7.1 <relaytest%example.org>: Relay access denied"),
        ("RCPT TO:<postmaster>", "250 2.1.5 Ok"),
        ("RCPT TO:<bob@example.net>", "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in local recipient table"),
        ("RCPT TO:<@example.net>", "501 5.1.3 Bad recipient address syntax"),
        ("RCPT TO:<\"open>", "501 5.1.3 Bad recipient address syntax"),
    ])
    func recipientsAsPostfixReadsThem(line: String, reply: String) throws {
        var driver = Driver(try Self.policy("address_syntax: postfix\n"))
        #expect(driver.last("EHLO c.example", "MAIL FROM:<a@c.example>", line)?.reply.description == reply)
    }

    @Test func strictAddressesRefuseWhatRFC5321DoesNotWrite() {
        var driver = Driver()
        #expect(
            driver.last("EHLO c.example", "MAIL FROM:<a@c.example>", "RCPT TO:<example.org!relaytest>")?.rule == .badRecipientAddress)
        // RFC 5321 4.5.1: <Postmaster> with no domain is always taken.
        var policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"])
        policy.localUsers = ["alice"]
        var strict = Driver(policy)
        #expect(strict.last("EHLO c.example", "MAIL FROM:<a@c.example>", "RCPT TO:<Postmaster>")?.reply.code == .ok)
    }

    /// RFC 5321 4.1.4: a refused EHLO leaves the session where it was.
    @Test func aRefusedHeloKeepsTheEarlierGreeting() {
        var driver = Driver()
        #expect(driver.last("EHLO c.example.org", "HELO system")?.rule == .heloNonFQDN)
        #expect(driver.last("MAIL FROM:<a@c.example>", "RCPT TO:<postmaster@example.net>")?.reply.code == .ok)
        var fresh = Driver()
        #expect(fresh.last("HELO system", "MAIL FROM:<a@c.example>")?.rule == .heloRequired)
    }

    /// Postfix's reject_unauth_pipelining: a client told of PIPELINING once
    /// in the session is not refused for pipelining after a later HELO.
    @Test func pipeliningOfferedOnceCountsForTheSession() {
        func pipelined(after greeting: [String]) -> RuleID? {
            var session = PolicySession(
                policy: .defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"]), clientAddress: "192.0.2.1")
            var framer = LineFramer()
            framer.append(
                Array(
                    (greeting + ["MAIL FROM:<a@c.example>", "RCPT TO:<postmaster@example.net>", "DATA"]).map { $0 + "\r\n" }.joined().utf8))
            var lines: [LineFramer.Line] = []
            while let line = framer.next() { lines.append(line) }
            var last: PolicySession.Reply?
            for (index, line) in lines.enumerated() {
                let followed = index >= greeting.count && index < lines.count - 1
                last = session.receive(line, followed: followed).replies.last
            }
            return last?.rule
        }
        #expect(pipelined(after: ["HELO c.example.org"]) == .unauthPipelining)
        #expect(pipelined(after: ["EHLO c.example.org", "HELO c.example.org"]) == nil)
    }

    /// BDAT chunks and the message they end are acknowledged with sizes, as Postfix does.
    @Test func bdatRepliesCountBytes() {
        var driver = Driver()
        _ = driver.send("EHLO c.example.org", "MAIL FROM:<a@c.example>", "RCPT TO:<postmaster@example.net>", "BDAT 5")
        #expect(driver.session.receiveChunk(Array("hello".utf8)).replies.last?.reply.description == "250 2.0.0 Ok: 5 bytes")
        _ = driver.send("BDAT 3 LAST")
        let last = driver.session.receiveChunk(Array("abc".utf8)).replies.last?.reply.description ?? ""
        #expect(last.hasPrefix("250 2.0.0 Ok: 8 bytes queued as "), "\(last)")
    }

    @Test func aPolicyExtendsAnotherRelativeToItsFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("extends-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "profile: postfix\nhelo_syntax: postfix\nlimits: {command_line_length: 2048}\n".write(
            toFile: folder + "/base.yaml", atomically: true, encoding: .utf8)
        try "extends: base.yaml\nhelo_timing: no-later-than-rcpt\n".write(toFile: folder + "/child.yaml", atomically: true, encoding: .utf8)
        let child = try Policy.load(folder + "/child.yaml", environment: [:])
        #expect(child.profile == .postfix)
        #expect(child.heloSyntax == .postfix)
        #expect(child.limits.commandLineLength == 2048)
        #expect(child.heloTiming == .noLaterThanRCPT)
        #expect(child.source == folder + "/child.yaml")

        try "extends: loop.yaml\n".write(toFile: folder + "/loop.yaml", atomically: true, encoding: .utf8)
        #expect(throws: InputFileError.self) { try Policy.load(folder + "/loop.yaml", environment: [:]) }
        try "extends: base.yaml\nprofile: portable\n".write(toFile: folder + "/both.yaml", atomically: true, encoding: .utf8)
        let error = #expect(throws: InputFileError.self) { try Policy.load(folder + "/both.yaml", environment: [:]) }
        #expect(error?.description.contains("takes its profile from it") == true)
        try "extends: missing.yaml\n".write(toFile: folder + "/dangling.yaml", atomically: true, encoding: .utf8)
        let missing = #expect(throws: InputFileError.self) { try Policy.load(folder + "/dangling.yaml", environment: [:]) }
        #expect(missing?.file == folder + "/missing.yaml")
    }
}
