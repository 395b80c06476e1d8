import SMTPProtocol

/// How a server with the smuggling fault reads BDAT: the chunk's octets as
/// DATA lines, where a bare CR or LF ends a line too, so that a `.` line
/// inside a chunk ends the message and what follows is read as commands.
struct ChunkTranslation {
    var size: Int
    var remaining: Int
    var last: Bool
    /// Octets read that end no line yet.
    var pending: [UInt8] = []
    /// The refusal of the DATA the first chunk stood for, sent once each chunk is in.
    var refusal: [SMTPReply]?

    /// `BDAT size [LAST]`; `nil` when the arguments do not parse (the
    /// session refuses those itself).
    init?(_ command: SMTPCommand) {
        let parts = command.argument.split(separator: " ")
        guard let first = parts.first, first.allSatisfy({ $0 >= "0" && $0 <= "9" }), let size = Int(first), parts.count <= 2,
            parts.count == 1 || parts[1].uppercased() == "LAST"
        else { return nil }
        self.size = size
        self.remaining = size
        self.last = parts.count == 2
    }

    /// Takes chunk octets; returns the lines they complete.
    mutating func take(_ bytes: [UInt8]) -> [[UInt8]] {
        self.remaining -= min(bytes.count, self.remaining)
        guard self.refusal == nil else { return [] }
        self.pending += bytes
        // A CR at the very end may still pair with an LF in the next chunk.
        let holdCR = self.pending.last == 0x0D && !(self.last && self.remaining == 0)
        let ready = holdCR ? Array(self.pending.dropLast()) : self.pending
        var pieces = Self.pieces(ready)
        // The last piece follows the last break: it ends no line yet.
        var rest = pieces.popLast() ?? []
        if holdCR { rest.append(0x0D) }
        self.pending = rest
        return pieces
    }

    /// Octets cut at CRLF, at a bare CR and at a bare LF; the last piece is
    /// what follows the last break.
    static func pieces(_ bytes: [UInt8]) -> [[UInt8]] {
        var pieces: [[UInt8]] = [[]]
        var previousCR = false
        for byte in bytes {
            if byte == 0x0A && previousCR {
                previousCR = false
                continue
            }
            previousCR = byte == 0x0D
            if byte == 0x0D || byte == 0x0A { pieces.append([]) } else { pieces[pieces.count - 1].append(byte) }
        }
        return pieces
    }
}
