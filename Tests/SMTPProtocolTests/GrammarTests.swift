import SMTPProtocol
import Testing

@Suite struct GrammarTests {
    @Test(
        arguments: [
            ("127.0.0.1", [127, 0, 0, 1]), ("0.0.0.0", [0, 0, 0, 0]), ("255.255.255.255", [255, 255, 255, 255]),
            ("01.2.3.4", [1, 2, 3, 4]), ("1.2.3.256", nil), ("0001.2.3.4", nil), ("1.2.3", nil), ("1.2.3.4.", nil),
            (".1.2.3.4", nil), ("1..2.3", nil), ("1.2.3.4.5", nil), ("1.2.3.x", nil), ("", nil), ("1.2.3.-4", nil),
            ("1.2.3.4 ", nil), ("١.2.3.4", nil),
        ] as [(String, [UInt8]?)])
    func ipv4(text: String, octets: [UInt8]?) {
        #expect(IPAddressText.ipv4(text) == octets)
    }

    @Test(arguments: [
        ("mail.example.org", true), ("a.b", true), ("x", true), ("xn--bcher-kva.example", true), ("1.2.3.4", true),
        ("bad..name", false), ("-foo.example", false), ("foo-.example", false), ("foo_bar!", false), ("foo_bar.example", false),
        ("example.com.", false), (".example.com", false), ("", false), ("a b.example", false),
        (String(repeating: "a", count: 63) + ".example", true), (String(repeating: "a", count: 64) + ".example", false),
        (Array(repeating: String(repeating: "a", count: 50), count: 5).joined(separator: "."), true),
        (Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."), false),
        ("a--b.example", true), ("a.-b", false), ("a.b-", false), ("a-.b", false), ("-", false), (".", false), ("é.example", false),
        ("a.b\u{0}", false),
    ])
    func domains(name: String, valid: Bool) {
        #expect(DomainName.isValid(name) == valid)
    }

    @Test(arguments: [
        ("[127.0.0.1]", "ipv4"), ("[192.0.2.255]", "ipv4"), ("[IPv6:::1]", "ipv6"), ("[IPv6:2001:db8::1]", "ipv6"),
        ("[IPv6:2001:db8:0:0:0:0:0:1]", "ipv6"), ("[IPv6:::ffff:192.0.2.1]", "ipv6"), ("[x-tag:content]", "general"),
        ("[999.1.1.1]", "error"), ("[1.2.3]", "error"), ("[1.2.3.4.5]", "error"), ("[IPv6:zz::1]", "error"),
        ("[IPv6:1:2:3:4:5:6:7::8]", "error"), ("[IPv6:1:2:3:4:5:6:7:8:9]", "error"), ("[abc]", "error"), ("127.0.0.1", "error"),
        ("[01.2.3.4]", "ipv4"), ("[0001.2.3.4]", "error"),
    ])
    func addressLiterals(text: String, kind: String) {
        switch AddressLiteral.parse(text) {
        case .success(.ipv4): #expect(kind == "ipv4")
        case .success(.ipv6): #expect(kind == "ipv6")
        case .success(.general): #expect(kind == "general")
        case .failure: #expect(kind == "error")
        }
    }

    @Test func ipv6CompressionMustStandForTwoGroupsUnderRFC5321() {
        #expect(IPAddressText.ipv6("1:2:3:4:5:6:7::", rfc5321: false) != nil)
        #expect(IPAddressText.ipv6("1:2:3:4:5:6:7::", rfc5321: true) == nil)
        #expect(IPAddressText.ipv6("::1") == [0, 0, 0, 0, 0, 0, 0, 1])
    }

    @Test(arguments: [
        ("user@example.org", true), ("first.last@example.org", true), ("\"quoted@local\"@example.org", true),
        ("\"a b\\\"c\"@example.org", true), ("user%other.example@example.net", true), ("host!user@example.net", true),
        ("user@[192.0.2.1]", true), ("user@[IPv6:::1]", true), ("user@@example.org", false), ("user@other@example.org", false),
        ("a..b@example.org", false), (".a@example.org", false), ("@example.org", false), ("user", false), ("user@", false),
        ("user@bad..domain", false), ("\"unterminated@example.org", false), (String(repeating: "a", count: 65) + "@example.org", false),
    ])
    func mailboxes(text: String, valid: Bool) {
        let result = Mailbox.parse(text)
        if case .success = result { #expect(valid) } else { #expect(!valid) }
    }

    @Test func quotedLocalPartIsUndone() throws {
        let mailbox = try Mailbox.parse("\"user@relay.example\"@example.net").get()
        #expect(mailbox.localPartValue == "user@relay.example")
        #expect(mailbox.domain == .name("example.net"))
    }

    @Test func sourceRouteIsParsed() throws {
        let path = try MailPath.parse("<@hop1.example,@hop2.example:user@example.org>").get()
        #expect(path.sourceRoute == ["hop1.example", "hop2.example"])
        #expect(path.mailbox.description == "user@example.org")
        #expect(MailPath.parse("<@hop1.example user@example.org>") == .failure(.badSourceRoute))
    }

    @Test func mailArguments() throws {
        let null = try EnvelopeArgument.parseMail("FROM:<>").get()
        #expect(null.path == nil)
        let sized = try EnvelopeArgument.parseMail("FROM:<a@example.org> SIZE=1000 BODY=8BITMIME").get()
        #expect(sized.path?.mailbox.description == "a@example.org")
        #expect(sized.parameters == [ESMTPParameter(keyword: "SIZE", value: "1000"), ESMTPParameter(keyword: "BODY", value: "8BITMIME")])
        #expect(try EnvelopeArgument.parseMail("from: <a@example.org>").get().path != nil)
        #expect(try EnvelopeArgument.parseMail("FROM:<\"a > b\"@example.org>").get().path?.mailbox.localPartValue == "a > b")
        if case .failure(.missingKeyword) = EnvelopeArgument.parseMail("<a@example.org>") {} else { Issue.record("FROM: is required") }
        if case .failure(.badPath) = EnvelopeArgument.parseMail("FROM:a@example.org") {} else { Issue.record("brackets are required") }
        if case .failure(.badParameter) = EnvelopeArgument.parseMail("FROM:<a@example.org> =x") {} else { Issue.record("bad parameter") }
    }

    @Test func rcptArguments() throws {
        #expect(try EnvelopeArgument.parseRcpt("TO:<Postmaster>").get().path == .postmaster)
        #expect(try EnvelopeArgument.parseRcpt("TO:<user@example.net>").get().path.description == "<user@example.net>")
        if case .failure(.missingKeyword) = EnvelopeArgument.parseRcpt("<user@example.net>") {} else { Issue.record("TO: is required") }
    }
}

@Suite struct CommandTests {
    @Test func commandsRefuseLineBreaksAndNUL() {
        #expect(throws: SMTPCommand.BuildError.self) { try SMTPCommand("RCPT TO:<a@b.example>\r\nDATA") }
        #expect(throws: SMTPCommand.BuildError.self) { try SMTPCommand("HELO a\nb") }
        #expect(throws: SMTPCommand.BuildError.self) { try SMTPCommand("HELO a\u{0}") }
    }

    @Test func verbAndArgument() throws {
        let command = try SMTPCommand("mail FROM:<a@example.org> SIZE=10")
        #expect(command.verb == .mail)
        #expect(command.argument == "FROM:<a@example.org> SIZE=10")
        #expect(command.wireBytes == Array("mail FROM:<a@example.org> SIZE=10\r\n".utf8))
        #expect(SMTPCommand(line: Array("QUIT".utf8)).verb == .quit)
        #expect(SMTPCommand(line: Array("XYZZY x".utf8)).verb == nil)
        #expect(SMTPCommand(line: []).verbText == "")
    }
}

@Suite struct DotStuffingTests {
    @Test func encodeNormalisesLineEndsAndStuffsDots() {
        let wire = DotStuffing.encode(Array("a\n.b\r\n..c\nlast".utf8))
        #expect(String(decoding: wire, as: UTF8.self) == "a\r\n..b\r\n...c\r\nlast\r\n.\r\n")
        #expect(DotStuffing.encode([]) == Array(".\r\n".utf8))
    }

    @Test func decodeLine() {
        #expect(DotStuffing.decodeLine(Array(".".utf8)) == nil)
        #expect(DotStuffing.decodeLine(Array("..b".utf8)) == Array(".b".utf8))
        #expect(DotStuffing.decodeLine(Array("plain".utf8)) == Array("plain".utf8))
    }
}

@Suite struct SASLTests {
    @Test func plainRoundTrip() throws {
        let encoded = SASL.plainResponse(user: "alice", password: "pw")
        #expect(encoded == "AGFsaWNlAHB3")
        let decoded = try #require(SASL.decodeBase64(encoded).flatMap(SASL.parsePlain))
        #expect(decoded.user == "alice")
        #expect(decoded.password == "pw")
    }

    @Test(arguments: ["not base64!", "abc", "YWJj\r\n", "YW=j"])
    func badBase64(text: String) {
        #expect(SASL.decodeBase64(text) == nil)
    }

    /// AUTH with an initial response keeps `AUTH PLAIN` and the response's length only.
    @Test func anInitialResponseIsRedacted() {
        let line = Array("AUTH PLAIN \(SASL.plainResponse(user: "alice", password: "topsecret"))".utf8)
        let unit = ClientUnit.auth(mechanism: "PLAIN", line)
        #expect(unit.line == Array("AUTH PLAIN".utf8))
        #expect(unit.command?.verb == .auth)
        #expect(unit.isRedacted)
        #expect(unit.redactedOctets == 24)
        #expect(unit.octets == line.count + 2)
        #expect(unit.withheld == nil)
        #expect(!String(decoding: unit.line, as: UTF8.self).contains(SASL.plainResponse(user: "alice", password: "topsecret")))
        let cancel = ClientUnit.saslResponse(Array("*".utf8), mechanism: "LOGIN")
        #expect(!cancel.isRedacted && cancel.line == Array("*".utf8))
        let secret = ClientUnit.saslResponse(Array("c2VjcmV0".utf8), mechanism: "LOGIN", keep: true)
        #expect(secret.isRedacted && secret.line.isEmpty && secret.withheld == Array("c2VjcmV0".utf8))
    }
}

@Suite struct SASLMechanismTests {
    /// RFC 2195 section 2's example.
    @Test func cramMD5MatchesRFC2195() {
        let challenge = Array("<1896.697170952@postoffice.reston.mci.net>".utf8)
        #expect(SASL.cramMD5Digest(password: "tanstaaftanstaaf", challenge: challenge) == "b913a602c7eda7a495b4e6e7334d3890")
        #expect(
            SASL.cramMD5Response(user: "tim", password: "tanstaaftanstaaf", challenge: challenge)
                == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw")
    }

    @Test func xoauth2Encoding() throws {
        let encoded = SASL.xoauth2Response(user: "someuser@example.com", token: "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
        let decoded = try #require(SASL.decodeBase64(encoded))
        #expect(decoded == Array("user=someuser@example.com\u{1}auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\u{1}\u{1}".utf8))
    }
}
