import Foundation
import SMTPCapture
import SMTPProtocol
import SMTPTestSupport
import Testing

/// A read spread over several flow workers gives what a one-thread read
/// gives: the same sessions, numbered the same, handed out in the same order.
@Suite struct ParallelReadTests {
    /// What a read handed out, in order: number, client, shape and end of each session.
    struct Seen: Equatable {
        var sessions: [String] = []
        var count = 0
        var otherFlows = 0
        var packets = 0
        var segments = 0
    }

    static func read(_ path: String, workers: Int, options: CaptureOptions = CaptureOptions()) throws -> Seen {
        var seen = Seen()
        let summary = try CaptureReader.read(
            path, options: options, workers: workers,
            prepare: { session in
                "\(session.number) \(session.client) \(Fixtures.shape(session.transcript)) \(String(describing: session.transcript.end))"
            }, each: { seen.sessions.append($0) })
        seen.count = summary.sessionCount
        seen.otherFlows = summary.otherFlows
        seen.packets = summary.packets
        seen.segments = summary.tcpSegments
        return seen
    }

    /// 500 interleaved sessions, four-tuples used twice, a connection that
    /// is not SMTP, one that falls silent and times out among thousands of
    /// packets, and one still open at the end of the file.
    static func mixedCapture() -> String {
        var packets: [PcapWriter.Packet] = []
        for index in 0..<400 {
            let client = Endpoint(address: [10, 0, UInt8(index >> 8), UInt8(index & 0xFF)], port: UInt16(2000 + index % 7))
            packets += Fixtures.conversation(client: client, start: 1_000 + Double(index) * 0.03).packets
        }
        // The first hundred four-tuples again, later: new connections, new
        // numbers; their 1,500 packets carry the silence check past 60 s.
        for index in 0..<100 {
            let client = Endpoint(address: [10, 0, 0, UInt8(index)], port: UInt16(2000 + index % 7))
            packets += Fixtures.conversation(client: client, start: 1_100 + Double(index) * 0.03).packets
        }
        var web = SyntheticConnection(
            client: Endpoint(address: [10, 1, 1, 1], port: 5000), server: Endpoint(address: [192, 0, 2, 80], port: 80))
        web.handshake(at: 1_001)
        web.send("HTTP/1.1 200 OK\r\n\r\n", fromClient: false, at: 1_001.1)
        web.close(at: 1_001.2)
        packets += web.packets
        var silent = SyntheticConnection(client: Endpoint(address: [10, 2, 2, 2], port: 6000), server: Fixtures.server4)
        silent.handshake(at: 1_000.5)
        silent.send("220 ok\r\n", fromClient: false, at: 1_000.6)
        packets += silent.packets
        var open = SyntheticConnection(client: Endpoint(address: [10, 3, 3, 3], port: 7000), server: Fixtures.server4)
        open.handshake(at: 1_150)
        open.send("220 ok\r\n", fromClient: false, at: 1_150.1)
        open.send("EHLO x\r\n", fromClient: true, at: 1_150.2)
        packets += open.packets
        return Fixtures.write(packets.sorted { $0.timestamp < $1.timestamp }, link: .ethernet)
    }

    @Test(arguments: [2, 3, 8])
    func aReadOverWorkersGivesWhatOneThreadGives(workers: Int) throws {
        let path = Self.mixedCapture()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let options = CaptureOptions(flowTimeout: 60)
        let one = try Self.read(path, workers: 1, options: options)
        let many = try Self.read(path, workers: workers, options: options)
        #expect(one.count == 502)
        #expect(one.otherFlows == 1)
        #expect(one.sessions.contains { $0.contains("captureSilent") })
        #expect(one.sessions.last?.contains("captureEnded") == true)
        // The four-tuple used twice is two sessions, with two numbers.
        #expect(one.sessions.filter { $0.contains(" 10.0.0.0:2000 ") }.count == 2)
        #expect(many == one)
    }

    @Test(.enabled(if: SharedCaptureTests.available, "../shared/captures is not here: nothing to read"))
    func realCapturesReadTheSameOverWorkers() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: SharedCaptureTests.folder).filter {
            $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng")
        }
        for file in files {
            let path = "\(SharedCaptureTests.folder)/\(file)"
            #expect(try Self.read(path, workers: 4) == Self.read(path, workers: 1), "\(file)")
        }
    }
}
