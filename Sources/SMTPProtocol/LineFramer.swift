/// Splits a byte stream into lines ended by CRLF, and only by CRLF (RFC 5321 2.3.8).
///
/// A bare CR or bare LF does not end a line: it stays in the line's octets
/// and is reported in ``Line/findings``, so that a server which ends lines
/// with LF alone, or a client smuggling `\n.\n`, is seen for what it is.
/// Memory is bounded: octets past ``maximumLength`` are counted but dropped,
/// and the line is reported as too long.
public struct LineFramer: Sendable {
    public struct Line: Sendable, Hashable {
        /// The line's octets without the final CRLF, cut at the framer's maximum.
        public var bytes: [UInt8]
        /// Octets the line really had, CRLF included.
        public var length: Int
        public var findings: Findings

        public init(bytes: [UInt8], length: Int? = nil, findings: Findings = []) {
            self.bytes = bytes
            self.length = length ?? bytes.count + 2
            self.findings = findings
        }
    }

    public struct Findings: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let bareLF = Findings(rawValue: 1 << 0)
        public static let bareCR = Findings(rawValue: 1 << 1)
        public static let truncated = Findings(rawValue: 1 << 2)
        public static let nul = Findings(rawValue: 1 << 3)
    }

    /// Longest line kept, CRLF included; longer lines are cut and marked truncated.
    public let maximumLength: Int

    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var current: [UInt8] = []
    private var currentLength = 0
    private var currentFindings: Findings = []
    private var pendingCR = false
    /// A bare LF ends a line too (reading captures, where the conversation
    /// must be seen as the peers saw it); live framing keeps CRLF only.
    public let bareLFEndsLine: Bool
    /// Lines a bare LF ended (with `bareLFEndsLine`).
    public private(set) var bareLineEnds = 0

    public init(maximumLength: Int = 4096, bareLFEndsLine: Bool = false) {
        precondition(maximumLength >= 3, "a line needs room for CRLF")
        self.maximumLength = maximumLength
        self.bareLFEndsLine = bareLFEndsLine
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        self.compact()
        self.buffer.append(contentsOf: bytes)
    }

    /// The octets of a read as they lie in memory: copied at once.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        self.compact()
        self.buffer.append(contentsOf: bytes)
    }

    /// Drops what was read when it is most of the buffer.
    private mutating func compact() {
        if self.readIndex > 4096 && self.readIndex * 2 > self.buffer.count {
            self.buffer.removeFirst(self.readIndex)
            self.readIndex = 0
        }
    }

    /// Octets received and not yet returned in a line: the partial line so far
    /// and everything after it.
    public var unconsumed: [UInt8] {
        self.current + (self.pendingCR ? [0x0D] : []) + self.buffer[self.readIndex...]
    }

    /// How many octets `unconsumed` holds, without copying them.
    public var unconsumedCount: Int {
        self.currentLength + (self.buffer.count - self.readIndex)
    }

    public var hasUnconsumedBytes: Bool {
        !self.current.isEmpty || self.pendingCR || self.readIndex < self.buffer.count
    }

    /// Drops every buffered octet (after STARTTLS, or when a peer is cut off).
    public mutating func discardBuffered() {
        self.buffer.removeAll(keepingCapacity: true)
        self.readIndex = 0
        self.resetLine()
    }

    /// A whole line is already buffered behind what has been returned: the
    /// client sent it without waiting for a reply.
    public var hasCompleteLine: Bool {
        var index = self.readIndex
        while index + 1 < self.buffer.count {
            if self.buffer[index] == 0x0D && self.buffer[index + 1] == 0x0A { return true }
            index += 1
        }
        return false
    }

    /// Up to `count` octets as they are, for a BDAT chunk (RFC 3030). Only
    /// between lines: a line in progress is not a chunk.
    public mutating func takeRaw(upTo count: Int) -> [UInt8] {
        guard self.current.isEmpty && !self.pendingCR, count > 0 else { return [] }
        // `count` comes from the wire (a BDAT size): never add it to an index.
        let end = count >= self.buffer.count - self.readIndex ? self.buffer.count : self.readIndex + count
        let bytes = Array(self.buffer[self.readIndex..<end])
        self.readIndex = end
        return bytes
    }

    /// The next complete line, or `nil` until more octets arrive.
    public mutating func next() -> Line? {
        if let line = self.nextPlain() { return line }
        while self.readIndex < self.buffer.count {
            let byte = self.buffer[self.readIndex]
            self.readIndex += 1
            self.currentLength += 1
            if self.pendingCR {
                self.pendingCR = false
                if byte == 0x0A {
                    let line = Line(bytes: self.current, length: self.currentLength, findings: self.currentFindings)
                    self.resetLine()
                    return line
                }
                self.currentFindings.insert(.bareCR)
                self.keep(0x0D)
            }
            switch byte {
            case 0x0D:
                self.pendingCR = true
            case 0x0A where self.bareLFEndsLine:
                self.bareLineEnds += 1
                let line = Line(bytes: self.current, length: self.currentLength, findings: self.currentFindings)
                self.resetLine()
                return line
            case 0x0A:
                self.currentFindings.insert(.bareLF)
                self.keep(byte)
            case 0x00:
                self.currentFindings.insert(.nul)
                self.keep(byte)
            default:
                self.keep(byte)
            }
        }
        return nil
    }

    /// The common line, found without going octet by octet into `current`:
    /// wholly buffered, ended by CRLF (or by a bare LF where that ends a
    /// line), no other CR and no NUL in it, and not too long. It is copied
    /// out once. Anything else is left to ``next()``'s loop, which notes it.
    private mutating func nextPlain() -> Line? {
        guard self.current.isEmpty, !self.pendingCR, self.readIndex < self.buffer.count else { return nil }
        let start = self.readIndex
        let found: (lineFeed: Int, end: Int)? = self.buffer.withUnsafeBufferPointer { buffer in
            var index = start
            var carriageReturns = 0
            var lastCarriageReturn = -1
            while index < buffer.count {
                switch buffer[index] {
                case 0x0A:
                    let crlf = lastCarriageReturn == index - 1
                    guard carriageReturns == (crlf ? 1 : 0), crlf || self.bareLFEndsLine else { return nil }
                    return (index, crlf ? index - 1 : index)
                case 0x0D:
                    carriageReturns += 1
                    lastCarriageReturn = index
                case 0x00:
                    return nil
                default:
                    break
                }
                index += 1
            }
            return nil
        }
        guard let found, found.end - start <= self.maximumLength - 2 else { return nil }
        if found.end == found.lineFeed { self.bareLineEnds += 1 }
        self.readIndex = found.lineFeed + 1
        return Line(bytes: Array(self.buffer[start..<found.end]), length: found.lineFeed + 1 - start)
    }

    private mutating func keep(_ byte: UInt8) {
        if self.current.count < self.maximumLength - 2 {
            self.current.append(byte)
        } else {
            self.currentFindings.insert(.truncated)
        }
    }

    private mutating func resetLine() {
        self.current.removeAll(keepingCapacity: true)
        self.currentLength = 0
        self.currentFindings = []
        self.pendingCR = false
    }
}
