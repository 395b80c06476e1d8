/// One complete reply: all lines of a (possibly multi-line) reply with one code.
public struct SMTPReply: Sendable, Hashable, Codable, CustomStringConvertible {
    public var code: ReplyCode
    /// The enhanced status code at the start of the first line's text, if any.
    public var enhancedCode: EnhancedStatusCode?
    /// The text of each line after the code and separator, as sent (enhanced
    /// codes included).
    public var lines: [String]
    /// What was wrong with the reply as it came off the wire. Empty for a
    /// well-formed reply and for replies built locally.
    public var findings: [ReplyFinding]

    public init(code: ReplyCode, lines: [String], enhancedCode: EnhancedStatusCode? = nil, findings: [ReplyFinding] = []) {
        self.code = code
        self.lines = lines.isEmpty ? [""] : lines
        self.enhancedCode = enhancedCode
        self.findings = findings
    }

    /// A reply with an enhanced code written at the start of every line, as
    /// Postfix writes them: `SMTPReply(.ok, "2.1.0", "Ok")` is `250 2.1.0 Ok`.
    public init(_ code: ReplyCode, _ enhanced: EnhancedStatusCode?, _ text: String...) {
        let prefix = enhanced.map { "\($0) " } ?? ""
        self.init(code: code, lines: text.map { prefix + $0 }, enhancedCode: enhanced)
    }

    /// The text of each line with a leading enhanced code removed.
    public var textLines: [String] {
        self.lines.map { line in
            guard let space = line.firstIndex(of: " "), EnhancedStatusCode(line[..<space]) != nil else {
                return EnhancedStatusCode(line) != nil ? "" : line
            }
            return String(line[line.index(after: space)...])
        }
    }

    /// The text lines joined with newlines, enhanced codes removed.
    public var text: String { self.textLines.joined(separator: "\n") }

    /// The reply as it goes on the wire, CRLF after every line.
    public var wireFormat: String { self.joinedLines(ending: "\r\n", between: "") }

    /// The reply on one line: its lines joined with ` / `.
    public var singleLine: String { self.displayLines.filter { !$0.isEmpty }.joined(separator: " / ") }

    /// One line per reply line, `250-PIPELINING` style, without CRLF.
    public var description: String { self.joinedLines(ending: "", between: "\n") }

    /// `description`'s lines: one per reply line, and more where a line's
    /// text holds a line break (a reply read from a capture can).
    public var displayLines: [String] {
        guard self.textsBreakLines else { return self.lines.indices.map(self.rendered) }
        return self.description.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// Whether some line's text holds a CR or LF: only then do `description`'s
    /// lines differ from the reply's (a CR LF is one character, so a text
    /// ending in CR is not split from the next line).
    private var textsBreakLines: Bool {
        self.lines.contains { line in line.utf8.contains { $0 == 0x0D || $0 == 0x0A } }
    }

    /// Each line as sent: the code, `-` before the text of every line but
    /// the last, a space before the last's (none when it is empty).
    private func joinedLines(ending: String, between: String) -> String {
        var out = ""
        for index in self.lines.indices {
            if index > 0 { out += between }
            out += self.rendered(index)
            out += ending
        }
        return out
    }

    private func rendered(_ index: Int) -> String {
        let line = self.lines[index]
        let last = index == self.lines.count - 1
        return "\(self.code)\(line.isEmpty && last ? "" : last ? " " : "-")\(line)"
    }
}

extension SMTPReply {
    /// The parameters of an extension an EHLO reply offers (`AUTH PLAIN
    /// LOGIN` gives `["PLAIN", "LOGIN"]`; `AUTH=PLAIN` counts too), `nil`
    /// when it is not offered.
    public func parameters(of keyword: String) -> [String]? {
        var found: [String]?
        let wanted = Array(keyword.utf8)
        guard !wanted.isEmpty else { return nil }
        for line in self.lines.dropFirst() where Self.startsWithKeyword(line, wanted) {
            let tokens = line.split(whereSeparator: { $0 == " " || $0 == "=" }).map { $0.uppercased() }
            found = (found ?? []) + tokens.dropFirst()
        }
        return found
    }

    /// Whether the line's first token (up to a space or `=`) is `keyword`,
    /// in any case: most lines are not, and are passed over without splitting.
    private static func startsWithKeyword(_ line: String, _ keyword: [UInt8]) -> Bool {
        var octets = line.utf8.drop { $0 == 0x20 || $0 == 0x3D }.makeIterator()
        for wanted in keyword {
            guard let octet = octets.next(), ASCII.lowercased(octet) == ASCII.lowercased(wanted) else { return false }
        }
        guard let next = octets.next() else { return true }
        return next == 0x20 || next == 0x3D
    }

    /// Whether an EHLO reply offers an extension.
    public func offers(_ keyword: String) -> Bool { self.parameters(of: keyword) != nil }
}

/// What a reply got wrong (RFC 5321 4.2, 4.5.3.1; RFC 3463).
public enum ReplyFinding: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Lines of one multi-line reply carry different codes.
    case inconsistentCode(line: Int, code: ReplyCode)
    /// The fourth octet is neither SP nor `-` (nor the end of the line).
    case badSeparator(line: Int, octet: UInt8)
    /// A reply line longer than 512 octets including CRLF.
    case lineTooLong(line: Int, octets: Int)
    /// A bare CR or LF inside a reply line.
    case bareLineBreak(line: Int)
    /// A code RFC 5321 does not allow (first digit not 2-5, second not 0-5).
    case codeOutOfRange(ReplyCode)
    /// The enhanced code's class differs from the reply code's first digit.
    case enhancedClassMismatch(EnhancedStatusCode)
    /// Octets outside printable US-ASCII (and not HT) in the text.
    case nonASCII(line: Int)

    public var description: String {
        switch self {
        case .inconsistentCode(let line, let code): "line \(line) of a multi-line reply has code \(code)"
        case .badSeparator(let line, let octet): "line \(line): separator after the code is 0x\(String(octet, radix: 16)), not SP or '-'"
        case .lineTooLong(let line, let octets): "line \(line) is \(octets) octets long (RFC 5321 limit: 512 with CRLF)"
        case .bareLineBreak(let line): "line \(line) holds a bare CR or LF"
        case .codeOutOfRange(let code): "reply code \(code) is outside RFC 5321's range"
        case .enhancedClassMismatch(let enhanced): "enhanced code \(enhanced) does not match the reply class"
        case .nonASCII(let line): "line \(line) holds octets outside printable US-ASCII"
        }
    }
}

/// What came from the server in place of one reply.
public enum ServerResponse: Sendable, Hashable, Codable, CustomStringConvertible {
    case reply(SMTPReply)
    /// Lines that cannot be read as a reply at all (no three-digit code).
    case malformed(MalformedReply)

    public var reply: SMTPReply? {
        if case .reply(let reply) = self { return reply }
        return nil
    }

    /// On one line, for verdicts and summaries.
    public var singleLine: String {
        switch self {
        case .reply(let reply): reply.singleLine
        case .malformed(let malformed): malformed.description
        }
    }

    public var description: String {
        switch self {
        case .reply(let reply): reply.description
        case .malformed(let malformed): malformed.description
        }
    }
}

public struct MalformedReply: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The offending lines, CRLF removed, as sent.
    public var lines: [[UInt8]]
    public var reason: String
    /// The reply was cut at the parser's bound (``ReplyParser/maximumLines``,
    /// ``ReplyParser/maximumOctets``): a server that never ends a reply.
    public var overLimit: Bool

    public init(lines: [[UInt8]], reason: String, overLimit: Bool = false) {
        self.lines = lines
        self.reason = reason
        self.overLimit = overLimit
    }

    public var description: String {
        "malformed reply (\(self.reason)): " + self.lines.map { Printable.escape($0) }.joined(separator: " | ")
    }
}

/// ASCII letters without regard to case, octet by octet (SMTP's keywords,
/// verbs and domains compare so, RFC 5321 2.4).
public enum ASCII {
    /// The octet with `A`-`Z` folded to `a`-`z`; every other octet as it is.
    public static func lowercased(_ octet: UInt8) -> UInt8 { (0x41...0x5A).contains(octet) ? octet + 0x20 : octet }
}

/// Renders raw octets readably: printable ASCII as is, the rest as `\r`, `\n`, `\xNN`.
public enum Printable {
    public static func escape(_ bytes: some Sequence<UInt8>) -> String {
        // Most text needs no escape: taken as it is, in one piece.
        let plain: String?? = bytes.withContiguousStorageIfAvailable { buffer in
            buffer.allSatisfy { $0 >= 0x20 && $0 <= 0x7E && $0 != 0x5C } ? String(decoding: buffer, as: UTF8.self) : nil
        }
        if let plain = plain ?? nil { return plain }
        var out = ""
        for byte in bytes {
            switch byte {
            case 0x0D: out += "\\r"
            case 0x0A: out += "\\n"
            case 0x09: out += "\\t"
            case 0x5C: out += "\\\\"
            case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}
