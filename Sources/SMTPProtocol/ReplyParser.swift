/// Assembles lines into replies by the multi-line rule of RFC 5321 4.2.1:
/// `250-` lines continue, a `250 ` (or bare `250`) line ends the reply.
///
/// It never throws: a reply that breaks the grammar is still returned, with
/// its ``ReplyFinding``s, and lines with no code at all come back as
/// ``ServerResponse/malformed(_:)``.
public struct ReplyParser: Sendable {
    /// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
    public static let maximumReplyLineLength = 512

    /// Most lines one reply may have. RFC 5321 4.2.1 sets no number; the
    /// longest real replies (EHLO, HELP) run to a few dozen lines.
    public static let maximumLines = 1000
    /// Most octets one reply may have, CRLFs included.
    public static let maximumOctets = 64 * 1024

    /// The lines of a multi-line reply read so far.
    public private(set) var pending: [LineFramer.Line] = []
    private var pendingOctets = 0

    public init() {}

    /// Whether part of a multi-line reply has been read.
    public var isInsideReply: Bool { !self.pending.isEmpty }

    /// Feeds one line; returns a response when the line completes one.
    public mutating func feed(_ line: LineFramer.Line) -> ServerResponse? {
        let bytes = line.bytes
        guard bytes.count >= 3, let code = ReplyCode(digits: bytes.prefix(3)) else {
            let lines = self.pending.map(\.bytes) + [bytes]
            self.pending.removeAll()
            self.pendingOctets = 0
            return .malformed(MalformedReply(lines: lines, reason: "no three-digit reply code"))
        }
        let isLast = bytes.count == 3 || bytes[3] != UInt8(ascii: "-")
        // A reply of one line, the most common, is assembled without
        // gathering it into the array of lines first.
        if isLast && self.pending.isEmpty { return .reply(Self.assemble(CollectionOfOne(line), firstCode: code)) }
        self.pending.append(line)
        self.pendingOctets += line.length
        // A reply without end is cut where it passes a bound: what came so far
        // is returned, marked, and the next line starts afresh. Memory stays
        // bounded whatever a server (or a capture) sends.
        if !isLast, let limit = self.passedLimit {
            let lines = self.pending.map(\.bytes)
            self.pending.removeAll()
            self.pendingOctets = 0
            return .malformed(MalformedReply(lines: lines, reason: limit, overLimit: true))
        }
        guard isLast else { return nil }
        let lines = self.pending
        self.pending.removeAll()
        self.pendingOctets = 0
        return .reply(Self.assemble(lines, firstCode: lines.first.flatMap { ReplyCode(digits: $0.bytes.prefix(3)) } ?? code))
    }

    /// Why the reply in progress must be cut, if it must.
    private var passedLimit: String? {
        if self.pending.count >= Self.maximumLines { return "reply over \(Self.maximumLines) lines" }
        if self.pendingOctets > Self.maximumOctets { return "reply over \(Self.maximumOctets) octets" }
        return nil
    }

    private static func assemble(_ lines: some Collection<LineFramer.Line>, firstCode: ReplyCode) -> SMTPReply {
        var findings: [ReplyFinding] = []
        var texts: [String] = []
        texts.reserveCapacity(lines.count)
        if !firstCode.isWellFormed { findings.append(.codeOutOfRange(firstCode)) }
        for (offset, line) in lines.enumerated() {
            let number = offset + 1
            let bytes = line.bytes
            if let code = ReplyCode(digits: bytes.prefix(3)), code != firstCode {
                findings.append(.inconsistentCode(line: number, code: code))
            }
            if bytes.count > 3 {
                let separator = bytes[3]
                let isLast = offset == lines.count - 1
                if separator != UInt8(ascii: " ") && separator != UInt8(ascii: "-") {
                    findings.append(.badSeparator(line: number, octet: separator))
                    texts.append(String(decoding: bytes[3...], as: UTF8.self))
                } else {
                    if isLast && separator == UInt8(ascii: "-") {
                        findings.append(.badSeparator(line: number, octet: separator))
                    }
                    texts.append(String(decoding: bytes[4...], as: UTF8.self))
                }
            } else {
                texts.append("")
            }
            if line.length > Self.maximumReplyLineLength || line.findings.contains(.truncated) {
                findings.append(.lineTooLong(line: number, octets: line.length))
            }
            if !line.findings.isDisjoint(with: [.bareCR, .bareLF]) {
                findings.append(.bareLineBreak(line: number))
            }
            if bytes.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 > 0x7E }) && line.findings.isDisjoint(with: [.bareCR, .bareLF]) {
                findings.append(.nonASCII(line: number))
            }
        }
        var enhanced: EnhancedStatusCode?
        if let first = texts.first {
            let token = first.prefix { $0 != " " }
            enhanced = EnhancedStatusCode(token)
        }
        if let enhanced, enhanced.codeClass != firstCode.value / 100 {
            findings.append(.enhancedClassMismatch(enhanced))
        }
        return SMTPReply(code: firstCode, lines: texts, enhancedCode: enhanced, findings: findings)
    }
}
