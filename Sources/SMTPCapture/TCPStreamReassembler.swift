import SMTPProtocol

/// Puts one direction of a TCP connection back in order. Pure: segments in,
/// in-order octets (and gaps) out.
///
/// Retransmitted octets are dropped; where a retransmission or an overlap
/// carries different octets the first copy wins and the difference is a
/// finding. Octets that never arrive become a gap once the connection ends,
/// once too much data waits behind them, or where the snap length cut a
/// packet, and the stream goes on after it.
public struct TCPStreamReassembler: Sendable {
    public enum Event: Sendable, Hashable {
        /// In-order octets, with the acknowledgement number of the segment
        /// that carried them (how far it had read the other direction).
        case data([UInt8], timestamp: Double, acknowledgement: UInt32? = nil)
        /// Octets that were never captured.
        case gap(octets: Int, timestamp: Double)
    }

    public enum Finding: Sendable, Hashable {
        /// A retransmission or overlap carried different octets at this stream offset.
        case conflictingOverlap(offset: Int64, octets: Int)

        /// The finding as a note on the session, for one side's stream.
        public func note(_ side: Transcript.Note.Side) -> Transcript.Note {
            switch self {
            case .conflictingOverlap(let offset, let octets): .conflictingOverlap(side, offset: offset, octets: octets)
            }
        }
    }

    private enum Piece: Sendable {
        case data([UInt8])
        case missing(Int)

        var count: Int {
            switch self {
            case .data(let bytes): bytes.count
            case .missing(let count): count
            }
        }
    }

    /// Most octets held out of order before the missing ones are given up as a gap.
    public var maximumPending: Int
    public private(set) var findings: [Finding] = []
    public private(set) var retransmittedOctets = 0
    /// Octets delivered so far (gaps included): the next expected stream offset.
    public private(set) var offset: Int64 = 0
    public private(set) var finOffset: Int64?
    public private(set) var sawSYN = false

    private var base: UInt32?
    private var pending: [Int64: (piece: Piece, time: Double, acknowledgement: UInt32?)] = [:]
    private var pendingOctets = 0
    /// The last octets delivered, to compare retransmissions with: those
    /// just before ``offset``, since the last gap, in a ring that grows to
    /// ``historyLimit`` and is then written over oldest first. A copy into
    /// the ring costs no allocation, so in-order octets can be lent to the
    /// session and never copied into an array of their own.
    private var history: [UInt8] = []
    /// Where the oldest octet lies in `history` once it is full (0 until then).
    private var historyHead = 0
    /// Retransmissions re-send recent octets; 8 KiB a direction keeps
    /// memory per connection small when thousands are open.
    private static let historyLimit = 8192

    public init(maximumPending: Int = 1 << 20) {
        self.maximumPending = maximumPending
    }

    /// All octets up to the FIN have been delivered.
    public var isFinished: Bool { self.finOffset.map { self.offset >= $0 } ?? false }

    public var hasPending: Bool { !self.pending.isEmpty }

    /// The stream offset a sequence number of this direction stands for
    /// (the other direction's acknowledgement, say); `nil` before the stream began.
    public func streamOffset(of sequence: UInt32) -> Int64? {
        self.base == nil ? nil : self.relative(sequence)
    }

    private func relative(_ sequence: UInt32) -> Int64 {
        guard let base = self.base else { return 0 }
        let expected = base &+ UInt32(truncatingIfNeeded: self.offset)
        return self.offset + Int64(Int32(bitPattern: sequence &- expected))
    }

    public mutating func receive(
        sequence: UInt32, flags: TCPFlags, payload: [UInt8], payloadLength: Int, timestamp: Double, acknowledgement: UInt32? = nil
    ) -> [Event] {
        var events: [Event] = []
        self.receive(
            sequence: sequence, flags: flags, payload: payload, payloadLength: payloadLength, timestamp: timestamp,
            acknowledgement: acknowledgement, into: &events)
        return events
    }

    /// ``receive(sequence:flags:payload:payloadLength:timestamp:acknowledgement:)``
    /// appending to `events`: a reader that keeps one array for every
    /// segment makes no array per segment (one was a sixth of all a
    /// capture read's allocations).
    public mutating func receive(
        sequence: UInt32, flags: TCPFlags, payload: [UInt8], payloadLength: Int, timestamp: Double, acknowledgement: UInt32?,
        into events: inout [Event]
    ) {
        let acknowledgement = flags.contains(.ack) ? acknowledgement : nil
        if flags.contains(.syn) {
            if self.base == nil || !self.sawSYN && self.offset == 0 && self.pending.isEmpty {
                self.base = sequence &+ 1
                self.sawSYN = true
            }
            return
        }
        if self.base == nil { self.base = sequence }
        let start = self.relative(sequence)
        let claimed = max(payloadLength, payload.count)
        if flags.contains(.fin) { self.finish(at: start + Int64(claimed)) }
        guard claimed > 0 else { return self.drain(into: &events) }
        if start == self.offset && self.pending.isEmpty && claimed == payload.count {
            // The next octets in order, nothing held: the common case, straight through.
            events.append(self.deliver(payload, timestamp: timestamp, acknowledgement: acknowledgement))
            return
        }
        self.insert(at: start, .data(payload), timestamp: timestamp, acknowledgement: acknowledgement)
        if claimed > payload.count {
            self.insert(at: start + Int64(payload.count), .missing(claimed - payload.count), timestamp: timestamp, acknowledgement: nil)
        }
        self.drain(into: &events)
        while self.pendingOctets > self.maximumPending, let first = self.pending.keys.min() {
            events.append(.gap(octets: Int(first - self.offset), timestamp: timestamp))
            self.offset = first
            self.forgetHistory()
            self.drain(into: &events)
        }
    }

    /// The common case, without an event: a segment whose octets come next
    /// in order, with nothing held and nothing cut by the snap length. The
    /// octets are taken (the offset moves past them and the history keeps
    /// them) and it returns true; the caller hands `payload` on itself, so
    /// octets lent from a capture's mapping need no copy of their own. Any
    /// other segment changes nothing and returns false: give it to
    /// ``receive(sequence:flags:payload:payloadLength:timestamp:acknowledgement:into:)``.
    public mutating func takeInOrder(sequence: UInt32, flags: TCPFlags, payload: UnsafeRawBufferPointer, payloadLength: Int) -> Bool {
        guard !flags.contains(.syn), self.base != nil, self.pending.isEmpty, !payload.isEmpty, payloadLength <= payload.count,
            self.relative(sequence) == self.offset
        else { return false }
        if flags.contains(.fin) { self.finish(at: self.offset + Int64(payload.count)) }
        self.offset += Int64(payload.count)
        self.remember(payload)
        return true
    }

    /// A FIN after the octet before `end`: the earliest one counts.
    private mutating func finish(at end: Int64) {
        self.finOffset = self.finOffset.map { min($0, end) } ?? end
    }

    /// Gives up on missing octets: delivers everything held, gaps between.
    public mutating func flush(timestamp: Double) -> [Event] {
        var events: [Event] = []
        while let first = self.pending.keys.min() {
            if first > self.offset {
                events.append(.gap(octets: Int(first - self.offset), timestamp: timestamp))
                self.offset = first
                self.forgetHistory()
            }
            self.drain(into: &events)
        }
        return events
    }

    private mutating func insert(at start: Int64, _ piece: Piece, timestamp: Double, acknowledgement: UInt32?) {
        var start = start
        var piece = piece
        // Octets already delivered: a retransmission; compare what history holds.
        if start < self.offset {
            let old = Int(min(self.offset - start, Int64(piece.count)))
            self.retransmittedOctets += old
            if case .data(let bytes) = piece, !self.history.isEmpty {
                let from = max(start, self.offset - Int64(self.history.count))
                let to = start + Int64(old)
                if from < to && !self.history(matches: bytes, at: start, from: from, to: to) {
                    self.findings.append(.conflictingOverlap(offset: from, octets: Int(to - from)))
                }
            }
            guard old < piece.count else { return }
            piece = Self.drop(old, from: piece)
            start = self.offset
        }
        // Overlaps with held pieces: the first copy wins.
        var pieces: [(Int64, Piece)] = [(start, piece)]
        for (heldStart, held) in self.pending.sorted(by: { $0.key < $1.key }) {
            let heldEnd = heldStart + Int64(held.piece.count)
            var next: [(Int64, Piece)] = []
            for (pieceStart, candidate) in pieces {
                let pieceEnd = pieceStart + Int64(candidate.count)
                guard pieceStart < heldEnd && heldStart < pieceEnd else {
                    next.append((pieceStart, candidate))
                    continue
                }
                let overlapStart = max(pieceStart, heldStart)
                let overlapEnd = min(pieceEnd, heldEnd)
                self.retransmittedOctets += Int(overlapEnd - overlapStart)
                if case .data(let mine) = candidate, case .data(let theirs) = held.piece {
                    let a = mine[Int(overlapStart - pieceStart)..<Int(overlapEnd - pieceStart)]
                    let b = theirs[Int(overlapStart - heldStart)..<Int(overlapEnd - heldStart)]
                    if !a.elementsEqual(b) { self.findings.append(.conflictingOverlap(offset: overlapStart, octets: a.count)) }
                }
                if pieceStart < heldStart { next.append((pieceStart, Self.take(Int(heldStart - pieceStart), from: candidate))) }
                if pieceEnd > heldEnd { next.append((heldEnd, Self.drop(Int(heldEnd - pieceStart), from: candidate))) }
            }
            pieces = next
        }
        for (pieceStart, candidate) in pieces where candidate.count > 0 {
            self.pending[pieceStart] = (candidate, timestamp, acknowledgement)
            self.pendingOctets += candidate.count
        }
    }

    private static func drop(_ count: Int, from piece: Piece) -> Piece {
        switch piece {
        case .data(let bytes): .data(Array(bytes.dropFirst(count)))
        case .missing(let total): .missing(total - count)
        }
    }

    private static func take(_ count: Int, from piece: Piece) -> Piece {
        switch piece {
        case .data(let bytes): .data(Array(bytes.prefix(count)))
        case .missing: .missing(count)
        }
    }

    /// The next octets of the stream, handed on: the offset moves past them
    /// and they are remembered for comparing retransmissions.
    private mutating func deliver(_ bytes: [UInt8], timestamp: Double, acknowledgement: UInt32?) -> Event {
        self.offset += Int64(bytes.count)
        bytes.withUnsafeBytes { self.remember($0) }
        return .data(bytes, timestamp: timestamp, acknowledgement: acknowledgement)
    }

    /// Copies the octets just delivered (the stream's offset is already past
    /// them) into the history ring, over its oldest octets once it is full.
    private mutating func remember(_ bytes: UnsafeRawBufferPointer) {
        let limit = Self.historyLimit
        var rest = bytes.count > limit ? UnsafeRawBufferPointer(rebasing: bytes.suffix(limit)) : bytes
        if rest.count == limit {
            self.history.removeAll(keepingCapacity: true)
            self.historyHead = 0
        }
        if self.history.count < limit {
            // From 1 KiB, not grown through every small size in every stream.
            if self.history.capacity < 1024 { self.history.reserveCapacity(min(limit, max(1024, rest.count))) }
            let room = min(limit - self.history.count, rest.count)
            self.history.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest.prefix(room)))
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(room))
        }
        guard !rest.isEmpty else { return }
        // Full: write over the oldest octets, wrapping at the end.
        self.history.withUnsafeMutableBytes { ring in
            var head = self.historyHead
            while !rest.isEmpty {
                let run = min(limit - head, rest.count)
                UnsafeMutableRawBufferPointer(rebasing: ring[head..<(head + run)]).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: rest.prefix(run)))
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(run))
                head = (head + run) % limit
            }
            self.historyHead = head
        }
    }

    /// After a gap the octets before it are no longer just before ``offset``.
    private mutating func forgetHistory() {
        self.history.removeAll(keepingCapacity: true)
        self.historyHead = 0
    }

    /// Whether `bytes` (beginning at stream offset `start`) holds what was
    /// delivered between `from` and `to` (both within the history).
    private func history(matches bytes: [UInt8], at start: Int64, from: Int64, to: Int64) -> Bool {
        let oldest = self.offset - Int64(self.history.count)
        for position in from..<to {
            let ring = (self.historyHead + Int(position - oldest)) % self.history.count
            if bytes[Int(position - start)] != self.history[ring] { return false }
        }
        return true
    }

    private mutating func drain(into events: inout [Event]) {
        while let entry = self.pending.removeValue(forKey: self.offset) {
            self.pendingOctets -= entry.piece.count
            switch entry.piece {
            case .data(let bytes):
                events.append(self.deliver(bytes, timestamp: entry.time, acknowledgement: entry.acknowledgement))
            case .missing(let count):
                self.offset += Int64(count)
                self.forgetHistory()
                events.append(.gap(octets: count, timestamp: entry.time))
            }
        }
    }
}
