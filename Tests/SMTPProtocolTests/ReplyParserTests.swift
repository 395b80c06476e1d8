import SMTPProtocol
import Testing

@Suite struct ReplyParserTests {
    func parse(_ wire: String, chunk: Int = 1) -> [ServerResponse] {
        var framer = LineFramer(maximumLength: 8192)
        var parser = ReplyParser()
        var out: [ServerResponse] = []
        let bytes = Array(wire.utf8)
        var index = 0
        while index < bytes.count {
            framer.append(bytes[index..<min(index + chunk, bytes.count)])
            index += chunk
            while let line = framer.next() {
                if let response = parser.feed(line) { out.append(response) }
            }
        }
        return out
    }

    @Test(arguments: [1, 5, 4096])
    func multiLineReplyIsOneReply(chunk: Int) throws {
        let responses = self.parse("250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n220 next\r\n", chunk: chunk)
        #expect(responses.count == 2)
        let reply = try #require(responses.first?.reply)
        #expect(reply.code == .ok)
        #expect(reply.lines == ["mx.example.net", "PIPELINING", "8BITMIME"])
        #expect(reply.findings.isEmpty)
        #expect(reply.enhancedCode == nil)
        #expect(responses.last?.reply?.code == .serviceReady)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var wire: String
        var code: Int
        var enhanced: String?
        var text: String
        var findings: [ReplyFinding]
        var testDescription: String { self.wire.split(separator: "\r\n", omittingEmptySubsequences: false).joined(separator: "|") }
    }

    static let cases: [Case] = [
        Case(wire: "250 2.1.0 Ok\r\n", code: 250, enhanced: "2.1.0", text: "Ok", findings: []),
        Case(wire: "250\r\n", code: 250, enhanced: nil, text: "", findings: []),
        Case(
            wire: "554 5.7.1 <x@example.org>: Relay access denied\r\n", code: 554, enhanced: "5.7.1",
            text: "<x@example.org>: Relay access denied", findings: []),
        Case(wire: "501 Syntax: HELO hostname\r\n", code: 501, enhanced: nil, text: "Syntax: HELO hostname", findings: []),
        Case(wire: "550-5.1.1 first\r\n550 5.1.1 second\r\n", code: 550, enhanced: "5.1.1", text: "first\nsecond", findings: []),
        Case(
            wire: "250-first\r\n251 second\r\n", code: 250, enhanced: nil, text: "first\nsecond",
            findings: [.inconsistentCode(line: 2, code: ReplyCode(251))]),
        Case(wire: "250xOk\r\n", code: 250, enhanced: nil, text: "xOk", findings: [.badSeparator(line: 1, octet: UInt8(ascii: "x"))]),
        Case(
            wire: "250 4.1.0 Ok\r\n", code: 250, enhanced: "4.1.0", text: "Ok",
            findings: [.enhancedClassMismatch(EnhancedStatusCode(4, 1, 0))]),
        Case(wire: "199 odd\r\n", code: 199, enhanced: nil, text: "odd", findings: [.codeOutOfRange(ReplyCode(199))]),
        Case(wire: "250 ok\nstill\r\n", code: 250, enhanced: nil, text: "ok\nstill", findings: [.bareLineBreak(line: 1)]),
        Case(wire: "250 caf\u{E9}\r\n", code: 250, enhanced: nil, text: "caf\u{E9}", findings: [.nonASCII(line: 1)]),
    ]

    @Test(arguments: cases)
    func replyTable(_ testCase: Case) throws {
        let responses = self.parse(testCase.wire)
        #expect(responses.count == 1)
        let reply = try #require(responses.first?.reply)
        #expect(reply.code.value == testCase.code)
        #expect(reply.enhancedCode?.description == testCase.enhanced)
        #expect(reply.text == testCase.text)
        #expect(reply.findings == testCase.findings)
    }

    @Test func overlongReplyLineIsAFinding() throws {
        let text = String(repeating: "a", count: 600)
        let reply = try #require(self.parse("250 \(text)\r\n").first?.reply)
        #expect(reply.findings == [.lineTooLong(line: 1, octets: 606)])
    }

    @Test func lineWithoutCodeIsMalformedNotACrash() {
        let responses = self.parse("hello there\r\n25\r\n250-part\r\nbroken\r\n")
        #expect(responses.count == 3)
        guard case .malformed(let first) = responses[0], case .malformed(let second) = responses[1],
            case .malformed(let third) = responses[2]
        else {
            Issue.record("expected three malformed responses, got \(responses)")
            return
        }
        #expect(first.lines == [Array("hello there".utf8)])
        #expect(second.lines == [Array("25".utf8)])
        #expect(third.lines == [Array("250-part".utf8), Array("broken".utf8)])
    }

    @Test func wireFormatRoundTrips() {
        let reply = SMTPReply(code: .ok, lines: ["mx.example.net", "PIPELINING", "SIZE 1000"])
        #expect(reply.wireFormat == "250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
        #expect(self.parse(reply.wireFormat).first?.reply?.lines == reply.lines)
        let refused = SMTPReply(ReplyCode(554), EnhancedStatusCode(5, 7, 1), "<a@b.example>: Relay access denied")
        #expect(refused.wireFormat == "554 5.7.1 <a@b.example>: Relay access denied\r\n")
    }

    @Test(arguments: [
        ("2.1.0", true), ("5.7.1", true), ("4.4.2", true), ("5.999.999", true), ("3.1.0", false), ("5.1", false), ("5.1.1000", false),
        ("55.1.1", false), ("5..1", false), ("x.1.1", false), ("5.1.1.", false), (".5.1.1", false), ("5.1.", false), ("", false),
        ("5.1.1 ", false), ("5.01.001", true), ("5.1.1.1", false), ("\u{665}.1.1", false), ("5.1.1\u{301}", false), ("+5.1.1", false),
    ])
    func enhancedCodes(text: String, valid: Bool) {
        #expect((EnhancedStatusCode(text) != nil) == valid)
    }

    /// The lines a reply shows, and its one-line form, are those of its
    /// description, even where a text holds a line break.
    @Test(arguments: [
        ["mx.example.net"], ["a", "b", "c"], ["", ""], [""], ["x\r", "y"], ["x\ny", "z"], ["a\r\nb"], ["\n"], ["tail\r"], ["\r", ""],
    ])
    func displayLinesAreTheDescriptionsLines(texts: [String]) {
        let reply = SMTPReply(code: ReplyCode(250), lines: texts)
        #expect(reply.displayLines == reply.description.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        #expect(reply.singleLine == reply.description.split(separator: "\n").joined(separator: " / "))
    }

    @Test func enhancedCodesKeepTheirNumbers() {
        #expect(EnhancedStatusCode("5.12.345") == EnhancedStatusCode(5, 12, 345))
        #expect(EnhancedStatusCode("2.0.0") == EnhancedStatusCode(2, 0, 0))
        #expect(EnhancedStatusCode("4.07.9") == EnhancedStatusCode(4, 7, 9))
    }

    @Test func replyClassMatching() {
        switch ReplyCode(554) {
        case .permanentNegative: break
        default: Issue.record("554 is a permanent negative reply")
        }
        #expect(ReplyCode(354).isPositive)
        #expect(!ReplyCode(421).isPositive)
        #expect(ReplyCode(digits: Array("2x0".utf8)) == nil)
    }

    /// A reply without end is cut at the bound, marked, and memory stays flat:
    /// the parser holds at most one bound's worth whatever comes.
    @Test func endlessMultiLineReplyIsCutAtTheBound() throws {
        var parser = ReplyParser()
        var cut: [MalformedReply] = []
        for _ in 0..<(ReplyParser.maximumLines * 3 + 10) {
            if case .malformed(let malformed) = parser.feed(LineFramer.Line(bytes: Array("250-more".utf8))) { cut.append(malformed) }
            #expect(parser.pending.count < ReplyParser.maximumLines)
        }
        #expect(cut.count == 3)
        #expect(cut.allSatisfy { $0.overLimit && $0.lines.count == ReplyParser.maximumLines })
        #expect(cut.first?.reason == "reply over 1000 lines")
    }

    @Test func overlongMultiLineReplyIsCutByOctets() throws {
        var parser = ReplyParser()
        let line = LineFramer.Line(bytes: Array(("250-" + String(repeating: "x", count: 500)).utf8))
        var cut: MalformedReply?
        for _ in 0..<200 where cut == nil {
            if case .malformed(let malformed) = parser.feed(line) { cut = malformed }
        }
        let malformed = try #require(cut)
        #expect(malformed.overLimit)
        #expect(malformed.reason == "reply over 65536 octets")
        #expect(malformed.lines.count == ReplyParser.maximumOctets / 506 + 1)
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        self.split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }

    /// An EHLO keyword's parameters, found in any case, `=` or space
    /// separated; a longer keyword that starts the same is another one.
    @Test func ehloParametersAreFoundByTheirKeywordAlone() {
        let reply = SMTPReply(
            code: .ok, lines: ["mx.example.net", "AUTH PLAIN LOGIN", "auth=cram-md5", "SIZEX 5", "size 1000", "  PIPELINING", "8BITMIME"])
        #expect(reply.parameters(of: "AUTH") == ["PLAIN", "LOGIN", "CRAM-MD5"])
        #expect(reply.parameters(of: "size") == ["1000"])
        #expect(reply.parameters(of: "PIPELINING") == [])
        #expect(reply.offers("8bitmime"))
        #expect(reply.parameters(of: "STARTTLS") == nil)
        #expect(reply.parameters(of: "SIZ") == nil)
        #expect(reply.parameters(of: "") == nil)
        // The first line is the server's name, not a keyword.
        #expect(reply.parameters(of: "mx.example.net") == nil)
    }
}
