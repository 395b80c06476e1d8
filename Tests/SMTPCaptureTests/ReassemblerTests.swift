import SMTPCapture
import Testing

@Suite struct ReassemblerTests {
    /// Feeds (sequence, bytes) pairs; returns the delivered text with gaps as `<gap N>`.
    func run(_ segments: [(UInt32, String)], syn: UInt32? = 99, flush: Bool = true, maximumPending: Int = 1 << 20) -> (
        String, TCPStreamReassembler
    ) {
        var stream = TCPStreamReassembler(maximumPending: maximumPending)
        var out = ""
        func take(_ events: [TCPStreamReassembler.Event]) {
            for event in events {
                switch event {
                case .data(let bytes, _, _): out += String(decoding: bytes, as: UTF8.self)
                case .gap(let octets, _): out += "<gap \(octets)>"
                }
            }
        }
        if let syn { take(stream.receive(sequence: syn, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)) }
        for (sequence, text) in segments {
            take(stream.receive(sequence: sequence, flags: [.ack], payload: Array(text.utf8), payloadLength: text.utf8.count, timestamp: 1))
        }
        if flush { take(stream.flush(timestamp: 2)) }
        return (out, stream)
    }

    @Test func inOrder() {
        #expect(self.run([(100, "HELO "), (105, "a\r\n")]).0 == "HELO a\r\n")
    }

    @Test func outOfOrderIsPutBack() {
        #expect(self.run([(105, "a\r\n"), (100, "HELO ")]).0 == "HELO a\r\n")
        #expect(self.run([(108, "X"), (105, "a\r\n"), (100, "HELO ")]).0 == "HELO a\r\nX")
    }

    @Test func retransmissionIsDroppedQuietly() {
        let (text, stream) = self.run([(100, "HELO "), (100, "HELO "), (105, "a\r\n"), (102, "LO a")])
        #expect(text == "HELO a\r\n")
        #expect(stream.findings.isEmpty)
        #expect(stream.retransmittedOctets == 9)
    }

    @Test func conflictingOverlapKeepsTheFirstCopy() {
        let (text, stream) = self.run([(100, "HELO a\r\n"), (100, "EHLO")])
        #expect(text == "HELO a\r\n")
        #expect(stream.findings == [.conflictingOverlap(offset: 0, octets: 4)])
        // The same among segments still held out of order.
        let (held, heldStream) = self.run([(105, "abc"), (106, "XYZ"), (100, "HELO ")])
        #expect(held == "HELO abcZ")
        #expect(heldStream.findings == [.conflictingOverlap(offset: 6, octets: 2)])
    }

    @Test func gapsAreReportedAndTheStreamGoesOn() {
        #expect(self.run([(100, "HELO "), (110, "MAIL\r\n")]).0 == "HELO <gap 5>MAIL\r\n")
        #expect(self.run([(100, "HELO "), (110, "MAIL\r\n")], flush: false).0 == "HELO ")
        // Too much held behind a hole: give the hole up without waiting for the end.
        #expect(
            self.run([(100, "A"), (200, String(repeating: "x", count: 40))], flush: false, maximumPending: 16).0.hasPrefix("A<gap 99>x"))
    }

    @Test func withoutSYNTheFirstSegmentStartsTheStream() {
        #expect(self.run([(5000, "250 ok\r\n"), (5008, "more")], syn: nil).0 == "250 ok\r\nmore")
    }

    @Test func sequenceNumbersWrapAround() {
        let start = UInt32.max - 2
        #expect(self.run([(start, "abcdef"), (start &+ 6, "gh")], syn: start &- 1).0 == "abcdefgh")
        #expect(self.run([(start &+ 6, "gh"), (start, "abcdef")], syn: start &- 1).0 == "abcdefgh")
    }

    @Test func snapLengthCutsBecomeGaps() {
        var stream = TCPStreamReassembler()
        _ = stream.receive(sequence: 0, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)
        let events = stream.receive(sequence: 1, flags: [.ack], payload: Array("DATA".utf8), payloadLength: 10, timestamp: 1)
        #expect(events == [.data(Array("DATA".utf8), timestamp: 1), .gap(octets: 6, timestamp: 1)])
        #expect(
            stream.receive(sequence: 11, flags: [.ack], payload: Array("ok".utf8), payloadLength: 2, timestamp: 2) == [
                .data(Array("ok".utf8), timestamp: 2)
            ])
    }

    @Test func finMarksTheEnd() {
        var stream = TCPStreamReassembler()
        _ = stream.receive(sequence: 0, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)
        _ = stream.receive(sequence: 1, flags: [.ack, .fin], payload: Array("QUIT\r\n".utf8), payloadLength: 6, timestamp: 1)
        #expect(stream.isFinished)
    }

    /// Octet `offset` of a long stream that never repeats within a segment.
    static func octet(_ offset: Int) -> UInt8 { UInt8(offset % 251) }

    static func octets(_ range: Range<Int>) -> [UInt8] { range.map(octet) }

    @Test func theHistoryRingComparesRetransmissionsAfterItWraps() {
        var stream = TCPStreamReassembler()
        _ = stream.receive(sequence: 999, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)
        // 9,000 octets: more than the 8,192 the history keeps, so it has wrapped.
        for start in stride(from: 0, to: 9000, by: 3000) {
            let bytes = Self.octets(start..<(start + 3000))
            _ = stream.receive(sequence: 1000 + UInt32(start), flags: [.ack], payload: bytes, payloadLength: 3000, timestamp: 1)
        }
        #expect(stream.offset == 9000)
        // The same octets again: counted, no finding.
        let same = Self.octets(8000..<8500)
        #expect(stream.receive(sequence: 9000, flags: [.ack], payload: same, payloadLength: 500, timestamp: 2).isEmpty)
        #expect(stream.findings.isEmpty)
        #expect(stream.retransmittedOctets == 500)
        // One octet changed across the ring's seam (the oldest kept is 808).
        var changed = Self.octets(700..<900)
        changed[150] ^= 0xFF
        _ = stream.receive(sequence: 1700, flags: [.ack], payload: changed, payloadLength: 200, timestamp: 3)
        #expect(stream.findings == [.conflictingOverlap(offset: 808, octets: 92)])
        // Older than anything kept: counted, nothing to compare with.
        _ = stream.receive(sequence: 1000, flags: [.ack], payload: [0xFF, 0xFF], payloadLength: 2, timestamp: 4)
        #expect(stream.findings.count == 1)
        #expect(stream.retransmittedOctets == 702)
    }

    @Test func takeInOrderTakesOnlyTheNextOctetsWithNothingHeld() {
        var stream = TCPStreamReassembler()
        let hello = Array("HELO a\r\n".utf8)
        func take(_ sequence: UInt32, _ bytes: [UInt8], flags: TCPFlags = [.ack], length: Int? = nil) -> Bool {
            bytes.withUnsafeBytes {
                stream.takeInOrder(sequence: sequence, flags: flags, payload: $0, payloadLength: length ?? bytes.count)
            }
        }
        // Before the stream has begun, and the SYN itself: the full path.
        #expect(!take(100, hello))
        #expect(stream.offset == 0)
        _ = stream.receive(sequence: 99, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)
        #expect(!take(99, [], flags: [.syn]))
        #expect(take(100, Array(hello.prefix(4))))
        #expect(stream.offset == 4)
        // Out of order, cut by the snap length, empty: nothing changes.
        #expect(!take(106, Array(hello.suffix(2))))
        #expect(!take(104, Array(hello[4..<6]), length: 5))
        #expect(!take(104, []))
        #expect(stream.offset == 4 && !stream.hasPending)
        // Something held: the full path, which puts it back in order.
        _ = stream.receive(sequence: 106, flags: [.ack], payload: Array(hello.suffix(2)), payloadLength: 2, timestamp: 1)
        #expect(!take(104, Array(hello[4..<6])))
        // What was taken is in the history: a changed retransmission of it is found.
        _ = stream.receive(sequence: 100, flags: [.ack], payload: Array("EHLO".utf8), payloadLength: 4, timestamp: 2)
        #expect(stream.findings == [.conflictingOverlap(offset: 0, octets: 4)])
        // A FIN on the taken octets marks the end.
        var closing = TCPStreamReassembler()
        _ = closing.receive(sequence: 0, flags: [.syn], payload: [], payloadLength: 0, timestamp: 0)
        #expect(hello.withUnsafeBytes { closing.takeInOrder(sequence: 1, flags: [.ack, .fin], payload: $0, payloadLength: hello.count) })
        #expect(closing.isFinished)
    }
}
