/// One unit the client sent: a command line, a message body, a BDAT chunk,
/// a SASL response or raw octets. It keeps the octets that may be shown and
/// the command parsed from them; the octets of bodies, chunks and secrets
/// are only counted.
public struct ClientUnit: Sendable, Hashable, Codable {
    public enum Payload: Sendable, Hashable, Codable {
        /// A command line.
        case command
        /// A message body after 354, terminator included.
        case messageBody
        /// A BDAT command line and the chunk of `size` octets after it.
        case bdatChunk(size: Int)
        /// A SASL response (or AUTH with an initial response): redacted.
        case saslResponse(mechanism: String?)
        /// Octets sent exactly as they are.
        case raw
    }

    /// How the client ended the line.
    public enum LineEnd: Sendable, Hashable, Codable {
        case crlf
        /// A bare LF (read so in captures only).
        case lf
        /// No line end (raw octets, a body).
        case none
    }

    public var payload: Payload
    /// The octets that may be shown, without the line end: the command line;
    /// for AUTH with an initial response `AUTH MECHANISM`; `*` for a
    /// cancelled SASL exchange; nothing for a body or a secret; the raw octets.
    public var line: [UInt8]
    /// The command read from `line`, for commands, BDAT and AUTH.
    public var command: SMTPCommand?
    /// Every octet on the wire, line end (and chunk) included.
    public var octets: Int
    public var lineEnd: LineEnd
    /// The octets behind a redaction, kept in memory only where a capture is
    /// replayed with `--auth-from-capture` or matched against a scenario.
    /// No report ever reads them.
    public var withheld: [UInt8]?

    /// What a report or a shard's record holds: never ``withheld``.
    private enum CodingKeys: String, CodingKey {
        case payload, line, command, octets, lineEnd
    }

    public init(payload: Payload, line: [UInt8], command: SMTPCommand?, octets: Int, lineEnd: LineEnd, withheld: [UInt8]? = nil) {
        self.payload = payload
        self.line = line
        self.command = command
        self.octets = octets
        self.lineEnd = lineEnd
        self.withheld = withheld
    }

    /// A command line (without its line end).
    public static func command(_ line: [UInt8], lineEnd: LineEnd = .crlf) -> ClientUnit {
        .command(line, parsed: SMTPCommand(line: line), lineEnd: lineEnd)
    }

    /// A command line whose command the caller has already read from it
    /// (`parsed` is `SMTPCommand(line: line)`): a capture reads each line's
    /// verb before it knows what the line is, and need not read it twice.
    package static func command(_ line: [UInt8], parsed: SMTPCommand, lineEnd: LineEnd) -> ClientUnit {
        ClientUnit(payload: .command, line: line, command: parsed, octets: line.count + lineEnd.octets, lineEnd: lineEnd)
    }

    /// `BDAT size [LAST]` already read, as ``command(_:parsed:lineEnd:)``.
    package static func bdat(_ line: [UInt8], parsed: SMTPCommand, chunk: Int, lineEnd: LineEnd) -> ClientUnit {
        ClientUnit(
            payload: .bdatChunk(size: chunk), line: line, command: parsed, octets: line.count + lineEnd.octets + chunk, lineEnd: lineEnd)
    }

    /// A message body of `octets`, dot-stuffing and terminator included.
    public static func messageBody(octets: Int) -> ClientUnit {
        ClientUnit(payload: .messageBody, line: [], command: nil, octets: octets, lineEnd: .none)
    }

    /// `BDAT size [LAST]` and its chunk.
    public static func bdat(_ line: [UInt8], chunk: Int, lineEnd: LineEnd = .crlf) -> ClientUnit {
        .bdat(line, parsed: SMTPCommand(line: line), chunk: chunk, lineEnd: lineEnd)
    }

    /// A SASL response line of `octets` (line end included), redacted; `*` (a cancel) is shown.
    public static func saslResponse(_ bytes: [UInt8], mechanism: String?, lineEnd: LineEnd = .crlf, keep: Bool = false) -> ClientUnit {
        if bytes == [UInt8(ascii: "*")] {
            return ClientUnit(
                payload: .saslResponse(mechanism: mechanism), line: bytes, command: nil, octets: bytes.count + lineEnd.octets,
                lineEnd: lineEnd)
        }
        return ClientUnit(
            payload: .saslResponse(mechanism: mechanism), line: [], command: nil, octets: bytes.count + lineEnd.octets, lineEnd: lineEnd,
            withheld: keep ? bytes : nil)
    }

    /// `AUTH MECHANISM initial-response`, the response redacted.
    public static func auth(mechanism: String, verb: String = "AUTH", _ bytes: [UInt8], lineEnd: LineEnd = .crlf, keep: Bool = false)
        -> ClientUnit
    {
        let visible = Array("\(verb) \(mechanism)".utf8)
        return ClientUnit(
            payload: .saslResponse(mechanism: mechanism.uppercased()), line: visible, command: SMTPCommand(line: visible),
            octets: bytes.count + lineEnd.octets, lineEnd: lineEnd, withheld: keep ? bytes : nil)
    }

    /// Octets exactly as sent.
    public static func raw(_ bytes: [UInt8]) -> ClientUnit {
        ClientUnit(payload: .raw, line: bytes, command: nil, octets: bytes.count, lineEnd: .none)
    }

    /// The command the unit begins with: its own, or for raw octets the
    /// first line they hold.
    public var leadingCommand: SMTPCommand? {
        guard case .raw = self.payload else { return self.command }
        guard let end = self.line.firstIndex(of: 0x0D) ?? self.line.firstIndex(of: 0x0A) else { return SMTPCommand(line: self.line) }
        return SMTPCommand(line: self.line[..<end])
    }

    /// Whether octets are hidden (a SASL response or an initial response).
    public var isRedacted: Bool {
        if case .saslResponse = self.payload { return self.octets > self.line.count + self.lineEnd.octets }
        return false
    }

    /// Octets the redaction hides.
    public var redactedOctets: Int {
        guard self.isRedacted else { return 0 }
        let shown = self.command == nil ? 0 : self.line.count + 1
        return max(self.octets - shown - self.lineEnd.octets, 0)
    }

    /// What the client would send again: the line and its end, or the raw
    /// octets. Bodies, chunks and redacted units have no such octets.
    public var replayableOctets: [UInt8]? {
        switch self.payload {
        case .command: return self.line + self.lineEnd.bytes
        case .raw: return self.line
        case .saslResponse: return self.isRedacted ? self.withheld.map { $0 + self.lineEnd.bytes } : self.line + self.lineEnd.bytes
        case .messageBody, .bdatChunk: return nil
        }
    }
}

extension ClientUnit.LineEnd {
    public var octets: Int { self.bytes.count }

    public var bytes: [UInt8] {
        switch self {
        case .crlf: [0x0D, 0x0A]
        case .lf: [0x0A]
        case .none: []
        }
    }
}
