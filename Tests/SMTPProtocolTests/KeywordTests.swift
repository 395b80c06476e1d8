import Testing

@testable import SMTPProtocol

/// `MAIL FROM:` and `RCPT TO:` keywords are matched octet by octet where the
/// text is ASCII; the answer must be the character-wise one everywhere.
@Suite struct KeywordTests {
    @Test(arguments: [
        "FROM:<a@b>", "from:<a@b>", "FrOm: <a@b>", "FROM:", "FROM", "FRO", "", "FROMX:<a>", " FROM:<a>", "FROM;<a>",
        "FROM:\u{301}<a>", "FROM:é", "ﬀROM:<a>", "ſ:<a>", "FRÖM:<a>", "FROM:\r\n", "TO:<a>", "to:<a>", "tO:", "ТО:<a>",
    ])
    func matchesAsUppercasingWould(argument: String) {
        for keyword in ["FROM:", "TO:"] {
            #expect(EnvelopeArgument.hasKeyword(argument, keyword) == argument.uppercased().hasPrefix(keyword), "\(argument) \(keyword)")
        }
    }

    @Test func aLowerCaseKeywordParses() throws {
        let (path, parameters) = try EnvelopeArgument.parseMail("from:<a@example.org> SIZE=10").get()
        #expect(path?.description == "<a@example.org>")
        #expect(parameters.count == 1)
        #expect(throws: EnvelopeArgument.ParseError.missingKeyword("TO:")) { try EnvelopeArgument.parseRcpt("T0:<a@example.org>").get() }
    }

    /// Verbs are matched in a packed word where the text is ASCII; the
    /// answer must be the upper-cased lookup's everywhere.
    @Test(arguments: [
        "HELO", "helo", "eHlO", "STARTTLS", "starttls", "STARTTLSX", "XCLIENT", "xclient", "QUIT", "QUI", "QUITT", "\u{0}HELO",
        "HELO\u{0}", "", "ſTARTTLS", "ﬀ", "HELP", "help", "BDAT", "Mail", "RCPT", "DATA", "Ｈelo", "HEL\u{301}O", "AUTH", "VRFY",
        "EXPN", "RSET", "NOOP", "EHLO",
    ])
    func verbsAreReadAsUppercasingWould(text: String) {
        let command = SMTPCommand(line: Array(text.utf8))
        #expect(command.verb == SMTPCommand.Verb(rawValue: text.uppercased()), "\(text)")
    }
}
