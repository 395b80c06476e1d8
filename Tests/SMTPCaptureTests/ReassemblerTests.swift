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
}
