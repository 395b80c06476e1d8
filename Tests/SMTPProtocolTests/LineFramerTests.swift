import SMTPProtocol
import Testing

@Suite struct LineFramerTests {
    func frame(_ input: [UInt8], chunk: Int, maximumLength: Int = 4096) -> ([LineFramer.Line], [UInt8]) {
        var framer = LineFramer(maximumLength: maximumLength)
        let lines = self.frame(input, chunk: chunk, with: &framer)
        return (lines, framer.unconsumed)
    }

    /// `input` fed to `framer` `chunk` octets at a time; the lines it gave.
    func frame(_ input: [UInt8], chunk: Int, with framer: inout LineFramer) -> [LineFramer.Line] {
        var lines: [LineFramer.Line] = []
        var index = 0
        while index < input.count {
            framer.append(input[index..<min(index + chunk, input.count)])
            index += chunk
            while let line = framer.next() { lines.append(line) }
        }
        return lines
    }

    static let chunkSizes = [1, 2, 3, 7, 1000]

    @Test(arguments: chunkSizes)
    func splitsOnlyOnCRLF(chunk: Int) {
        let (lines, rest) = self.frame(Array("EHLO a\r\nMAIL FROM:<>\r\npartial".utf8), chunk: chunk)
        #expect(lines.map { String(decoding: $0.bytes, as: UTF8.self) } == ["EHLO a", "MAIL FROM:<>"])
        #expect(lines.allSatisfy { $0.findings.isEmpty })
        #expect(lines.map(\.length) == [8, 14])
        #expect(rest == Array("partial".utf8))
    }

    @Test(arguments: chunkSizes)
    func bareLineFeedIsKeptAndReported(chunk: Int) {
        let (lines, _) = self.frame(Array("250 ok\nMAIL\r\n".utf8), chunk: chunk)
        #expect(lines.count == 1)
        #expect(lines[0].bytes == Array("250 ok\nMAIL".utf8))
        #expect(lines[0].findings == .bareLF)
    }

    @Test(arguments: chunkSizes)
    func bareCarriageReturnIsKeptAndReported(chunk: Int) {
        let (lines, _) = self.frame(Array("a\rb\r\r\n".utf8), chunk: chunk)
        #expect(lines.count == 1)
        #expect(lines[0].bytes == Array("a\rb\r".utf8))
        #expect(lines[0].findings == .bareCR)
    }

    @Test func smugglingSequencesNeverEndALine() {
        // SMTP smuggling: "\n.\n" and "\n.\r\n" must not look like "\r\n.\r\n".
        let (lines, _) = self.frame(Array("text\n.\nMAIL FROM:<x>\n.\r\n".utf8), chunk: 1)
        #expect(lines.count == 1)
        #expect(lines[0].findings.contains(.bareLF))
        #expect(lines[0].bytes != [UInt8(ascii: ".")])
    }

    @Test(arguments: chunkSizes)
    func overlongLineIsCutCountedAndFlagged(chunk: Int) {
        let long = Array(repeating: UInt8(ascii: "x"), count: 600)
        let (lines, _) = self.frame(long + [0x0D, 0x0A] + Array("NOOP\r\n".utf8), chunk: chunk, maximumLength: 100)
        #expect(lines.count == 2)
        #expect(lines[0].bytes.count == 98)
        #expect(lines[0].length == 602)
        #expect(lines[0].findings == .truncated)
        #expect(lines[1].bytes == Array("NOOP".utf8))
    }

    /// The longest line kept whole and one octet more, whether the line
    /// arrives at once (found in the buffer) or an octet at a time.
    @Test(arguments: chunkSizes)
    func aLineAtTheMaximumIsKeptWhole(chunk: Int) {
        let fits = Array(repeating: UInt8(ascii: "x"), count: 98)
        let (lines, _) = self.frame(fits + [0x0D, 0x0A] + fits + [0x79, 0x0D, 0x0A], chunk: chunk, maximumLength: 100)
        #expect(lines.map(\.bytes.count) == [98, 98])
        #expect(lines.map(\.length) == [100, 101])
        #expect(lines.map(\.findings) == [[], .truncated])
    }

    @Test(arguments: chunkSizes)
    func bareLineFeedsEndLinesWhereAskedAndAreCounted(chunk: Int) {
        var framer = LineFramer(maximumLength: 100, bareLFEndsLine: true)
        let lines = self.frame(Array("EHLO a\nMAIL FROM:<>\r\nRCPT\rTO\n".utf8), chunk: chunk, with: &framer)
        #expect(lines.map { String(decoding: $0.bytes, as: UTF8.self) } == ["EHLO a", "MAIL FROM:<>", "RCPT\rTO"])
        #expect(lines.map(\.length) == [7, 14, 8])
        #expect(lines.map(\.findings) == [[], [], .bareCR])
        #expect(framer.bareLineEnds == 2)
    }

    @Test func nulIsReported() {
        let (lines, _) = self.frame([0x41, 0x00, 0x42, 0x0D, 0x0A], chunk: 1)
        #expect(lines[0].findings == .nul)
        #expect(lines[0].bytes == [0x41, 0x00, 0x42])
    }

    @Test func discardDropsEverythingBuffered() {
        var framer = LineFramer()
        framer.append(Array("STARTTLS\r\nEHLO injected\r\npart".utf8))
        #expect(framer.next()?.bytes == Array("STARTTLS".utf8))
        #expect(framer.unconsumed == Array("EHLO injected\r\npart".utf8))
        framer.discardBuffered()
        #expect(framer.next() == nil)
        #expect(!framer.hasUnconsumedBytes)
        framer.append(Array("EHLO x\r\n".utf8))
        #expect(framer.next()?.bytes == Array("EHLO x".utf8))
    }

    @Test func emptyLine() {
        let (lines, _) = self.frame(Array("\r\n".utf8), chunk: 1)
        #expect(lines == [LineFramer.Line(bytes: [], length: 2)])
    }
}
