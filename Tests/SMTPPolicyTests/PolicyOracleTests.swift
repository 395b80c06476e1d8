import SMTPPolicy
import SMTPProtocol
import Testing

@Suite struct PolicyOracleTests {
    let oracle = PolicyOracle(policy: .defaultSite())

    /// Every HELO example of docs/policy.md, and the edges around them.
    @Test(arguments: [
        ("bad..name", RuleID.heloInvalid), ("-foo.example", .heloInvalid), ("foo_bar!", .heloInvalid), ("example.com.", .heloInvalid),
        ("[999.1.1.1]", .heloInvalidLiteral), ("[1.2.3]", .heloInvalidLiteral), ("[IPv6:zz::1]", .heloInvalidLiteral),
        ("[tag:x]", .heloInvalidLiteral), ("system", .heloNonFQDN), ("192.0.2.1", .heloNonFQDN), ("::1", .heloNonFQDN),
        ("localhost", .heloDenied), ("LOCALHOST", .heloDenied), ("mx.example.net", .heloDenied), ("MX.Example.NET", .heloDenied),
    ])
    func refusedHeloNames(name: String, rule: RuleID) {
        #expect(self.oracle.heloRule(for: name) == rule)
    }

    @Test(arguments: ["client.example.org", "[127.0.0.1]", "[IPv6:::1]", "[IPv6:2001:db8::1]", "a.b"])
    func acceptedHeloNames(name: String) {
        #expect(self.oracle.heloRule(for: name) == nil)
    }

    @Test func disabledRuleFallsThroughToTheNext() {
        var policy = Policy.defaultSite()
        policy.rules[.heloDenied] = nil
        #expect(PolicyOracle(policy: policy).heloRule(for: "localhost") == .heloNonFQDN)
    }

    /// Relay decisions: local mail from anyone; everything else only for a client that may relay.
    @Test(
        arguments: [
            ("<postmaster@example.net>", false, nil), ("<ALICE@Example.NET>", false, nil), ("<Postmaster>", false, nil),
            ("<someone@example.org>", false, RuleID.relayDenied), ("<someone@example.org>", true, nil),
            ("<user%example.org@example.net>", false, .relayDenied), ("<example.org!user@example.net>", false, .relayDenied),
            ("<\"user@example.org\"@example.net>", false, .relayDenied), ("<@example.net:user@example.org>", false, .relayDenied),
            ("<user@[127.0.0.1]>", false, .relayDenied), ("<nobody@example.net>", false, .unknownUser),
            // RFC 5321 2.3.11 (address_syntax strict): for a client that may relay, a `%` is a local part's own.
            ("<user%example.org@example.net>", true, .unknownUser), ("<\"alice\"@example.net>", true, nil),
        ] as [(String, Bool, RuleID?)])
    func recipients(address: String, mayRelay: Bool, rule: RuleID?) throws {
        let path = try EnvelopeArgument.parseRcpt("TO:\(address)").get().path
        let recipient = PolicyOracle.Recipient(path, policy: self.oracle.policy)
        #expect(recipient.flatMap { self.oracle.recipientRule(for: $0, mayRelay: mayRelay) } == rule)
    }

    /// Postfix's reading (address_syntax postfix): routing in a local part is relaying, which a client that may relay may do.
    @Test(arguments: ["relaytest%example.org@example.net", "example.org!relaytest@example.net", "\"relaytest@example.org\"@example.net"])
    func postfixReadsRoutedLocalPartsAsRelaying(address: String) throws {
        var policy = Policy.defaultSite()
        policy.addressSyntax = .postfix
        let oracle = PolicyOracle(policy: policy)
        let recipient = try #require(PolicyOracle.Recipient(postfixReading: address, policy: policy))
        #expect(oracle.recipientRule(for: recipient, mayRelay: true) == nil)
        #expect(oracle.recipientRule(for: recipient, mayRelay: false) == .relayDenied)
    }

    @Test func exactMatchingUnderDocumented() {
        let expected = self.oracle.refusal(.relayDenied, ["rcpt": "x@example.org"])
        #expect(expected.wireFormat == "554 5.7.1 <x@example.org>: Relay access denied\r\n")
        #expect(self.oracle.mismatch(.reply(expected), expected: expected) == nil)
        let postfix = SMTPReply(ReplyCode(454), EnhancedStatusCode(4, 7, 1), "<x@example.org>: Relay access denied")
        #expect(self.oracle.mismatch(.reply(postfix), expected: expected) == .code(got: ReplyCode(454), expected: ReplyCode(554)))
        let otherText = SMTPReply(ReplyCode(554), EnhancedStatusCode(5, 7, 1), "relaying denied")
        #expect(
            self.oracle.mismatch(.reply(otherText), expected: expected)
                == .text(got: "relaying denied", expected: "<x@example.org>: Relay access denied"))
        #expect(self.oracle.mismatch(nil, expected: expected) == .noReply)
    }

    @Test func classMatchingUnderPortable() {
        let portable = PolicyOracle(policy: .defaultSite(profile: .portable))
        let expected = portable.refusal(.relayDenied, ["rcpt": "x@example.org"])
        let exim = SMTPReply(code: ReplyCode(550), lines: ["relay not permitted"])
        #expect(portable.mismatch(.reply(exim), expected: expected) == nil)
        let wrongEnhanced = SMTPReply(ReplyCode(550), EnhancedStatusCode(4, 7, 1), "x")
        #expect(portable.mismatch(.reply(wrongEnhanced), expected: expected) == .enhancedClass(EnhancedStatusCode(4, 7, 1), expected: 5))
        let transient = SMTPReply(ReplyCode(454), EnhancedStatusCode(4, 7, 1), "x")
        #expect(portable.mismatch(.reply(transient), expected: expected) == .replyClass(got: 4, expected: 5))
    }

    @Test func postfixProfileWordsRelayAs454() {
        let postfix = PolicyOracle(policy: .defaultSite(profile: .postfix))
        #expect(postfix.refusal(.relayDenied, ["rcpt": "a@b.example"]).wireFormat == "454 4.7.1 <a@b.example>: Relay access denied\r\n")
    }

    @Test func networks() throws {
        let network = try #require(IPNetwork("127.0.0.2/32"))
        #expect(network.contains(address: "127.0.0.2"))
        #expect(!network.contains(address: "127.0.0.1"))
        #expect(network.contains(address: "::ffff:127.0.0.2"))
        let v6 = try #require(IPNetwork("2001:db8::/32"))
        #expect(v6.contains(address: "2001:db8:1::5"))
        #expect(!v6.contains(address: "2001:db9::1"))
        #expect(IPNetwork("10.0.0.0/33") == nil)
        #expect(IPNetwork("nonsense") == nil)
    }
}
