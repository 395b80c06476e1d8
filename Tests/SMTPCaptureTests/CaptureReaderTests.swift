import Foundation
import SMTPCapture
import SMTPProtocol
import SMTPTestSupport
import Testing

@Suite struct CaptureReaderTests {
    static let expectedShape = ["banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]

    struct LinkCase: Sendable, CustomTestStringConvertible {
        var link: SyntheticLink
        var ipv6: Bool
        var pcapng: Bool
        var testDescription: String { "\(self.link) \(self.ipv6 ? "IPv6" : "IPv4")\(self.pcapng ? " pcapng" : "")" }
    }

    static let linkCases: [LinkCase] =
        [SyntheticLink.ethernet, .vlan([100]), .vlan([10, 20]), .raw, .linuxCooked, .linuxCooked2, .bsdLoopback]
        .flatMap { link in [false, true].map { LinkCase(link: link, ipv6: $0, pcapng: false) } }
        + [LinkCase(link: .ethernet, ipv6: false, pcapng: true), LinkCase(link: .linuxCooked2, ipv6: true, pcapng: true)]

    /// A connection that has come to its message body: greeting, MAIL, DATA and 354.
    static func atTheBody() -> SyntheticConnection {
        var connection = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4)
        connection.handshake(at: 1)
        connection.send("220 mx.example.net ESMTP\r\n", fromClient: false, at: 1.01)
        connection.send("MAIL FROM:<a@client.example.org>\r\n", fromClient: true, at: 1.02)
        connection.send("250 2.1.0 Ok\r\n", fromClient: false, at: 1.03)
        connection.send("DATA\r\n", fromClient: true, at: 1.04)
        connection.send("354 go ahead\r\n", fromClient: false, at: 1.05)
        return connection
    }

    /// A body's end is found by its dots (RFC 5321 4.1.1.4: CRLF . CRLF),
    /// however the segments cut it: a stuffed dot, a dot after a bare LF
    /// and a dot that begins a longer line are not the end; the end cut
    /// anywhere still is; so is a dot that is the body's first line.
    @Test(arguments: ["Subject: x\r\n\r\n..dot\r\nbare\n.\r\nnot the end\r\n.x\r\n\r\n", ""])
    func aBodyEndsAtCRLFDotCRLFWhereverTheSegmentsCutIt(body: String) throws {
        let octets = body.utf8.count + 3
        for mss in 1...octets {
            var connection = Self.atTheBody()
            connection.replay(Array((body + ".\r\n").utf8), fromClient: true, at: 1.06, mss: mss)
            connection.send("250 2.0.0 Ok: queued\r\n", fromClient: false, at: 1.07)
            connection.send("QUIT\r\n", fromClient: true, at: 1.08)
            connection.send("221 2.0.0 Bye\r\n", fromClient: false, at: 1.09)
            connection.close(at: 1.1)
            let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
            #expect(Fixtures.shape(session.transcript) == ["banner:220", "MAIL:250", "DATA:354", "body:250", "QUIT:221"], "mss \(mss)")
            #expect(session.transcript.exchanges[3].sent?.octets == octets, "mss \(mss)")
        }
    }

    /// A large body passes through without being buffered, segment by
    /// segment; its end is still found where a segment ends just after the
    /// final dot and the next begins with the CRLF that closes it (QUIT
    /// pipelined behind it), or where the end line comes whole.
    @Test(arguments: [["\r\n.", "\r\nQUIT\r\n"], ["\r\n", ".\r\nQUIT\r\n"], ["", "\r\n.\r\nQUIT\r\n"], ["\r\n.\r", "\nQUIT\r\n"]])
    func aBodysEndIsFoundAcrossTheSegmentsOfALargeBody(ending: [String]) throws {
        let line = "a line of the body, long enough to fill segments\r\n"
        var connection = Self.atTheBody()
        let body = String(repeating: line, count: 200).dropLast(2)
        connection.replay(Array((body + ending[0]).utf8), fromClient: true, at: 1.06, mss: 1460)
        connection.send(ending[1], fromClient: true, at: 1.07)
        connection.send("250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n", fromClient: false, at: 1.08)
        connection.close(at: 1.1)
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
        #expect(Fixtures.shape(session.transcript) == ["banner:220", "MAIL:250", "DATA:354", "body:250", "QUIT:221"])
        #expect(session.transcript.exchanges[3].sent?.octets == body.utf8.count + 5)
    }

    @Test(arguments: linkCases)
    func everyLinkTypeAndIPVersion(_ testCase: LinkCase) throws {
        let connection = Fixtures.conversation(
            client: testCase.ipv6 ? Fixtures.client6 : Fixtures.client4, server: testCase.ipv6 ? Fixtures.server6 : Fixtures.server4,
            link: testCase.link)
        let path = Fixtures.write(connection.packets, link: testCase.link, pcapng: testCase.pcapng)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try CaptureReader.read(path)
        #expect(summary.sessions.count == 1)
        let session = try #require(summary.sessions.first)
        #expect(Fixtures.shape(session.transcript) == Self.expectedShape)
        #expect(session.client == (testCase.ipv6 ? Fixtures.client6 : Fixtures.client4))
        #expect(session.transcript.exchanges[5].sent?.octets == 24)
        #expect(session.transcript.exchanges[2].pipelineGroup != nil)
        #expect(session.transcript.exchanges[2].pipelineGroup == session.transcript.exchanges[4].pipelineGroup)
        #expect(session.transcript.startTime == 1_700_000_000)
        if testCase.ipv6 { #expect(session.server.description == "[2001:db8::25]:587") }
    }

    /// A regular file is mapped into memory and read from there; a FIFO is
    /// left to libpcap, which reads it as it comes (and the FIFO's writer is
    /// not cut off by a look at it first). Both read the same packets.
    @Test(arguments: [false, true])
    func aFileInMemoryAndAFIFOReadAlike(pcapng: Bool) throws {
        let file = Fixtures.write(Fixtures.conversation().packets, link: .ethernet, pcapng: pcapng)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fifo = Fixtures.path("capture.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let bytes = try #require(FileManager.default.contents(atPath: file))
        let writer = Thread {
            // Opening blocks until the reader opens its end.
            guard let handle = FileHandle(forWritingAtPath: fifo) else { return }
            handle.write(bytes)
            try? handle.close()
        }
        writer.start()
        func packets(_ path: String) throws -> [[UInt8]] {
            let reader = try PcapFileReader(path: path)
            var all: [[UInt8]] = []
            while let packet = try reader.next() { all.append(packet.data) }
            return all
        }
        let fromMemory = try packets(file)
        #expect(fromMemory.count == Fixtures.conversation().packets.count)
        #expect(try packets(fifo) == fromMemory)
    }

    /// Classic pcap files built record by record, each read from memory
    /// (records read from the mapping, odd ones left to libpcap) and through
    /// a FIFO (libpcap alone): the same packets, timestamps, lengths and
    /// closing error, record for record.
    struct RecordCase: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var bytes: [UInt8]
    }

    static let recordCases: [RecordCase] = {
        func header(magic: UInt32 = 0xA1B2_C3D4, minor: UInt16 = 4, snap: UInt32 = 262_144, bigEndian: Bool = false) -> [UInt8] {
            func put<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
                withUnsafeBytes(of: bigEndian ? value.bigEndian : value.littleEndian) { Array($0) }
            }
            return put(magic) + put(UInt16(2)) + put(minor) + put(UInt32(0)) + put(UInt32(0)) + put(snap) + put(UInt32(1))
        }
        func record(_ seconds: UInt32, _ fraction: UInt32, captured: Int, original: Int? = nil, bigEndian: Bool = false) -> [UInt8] {
            func put(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: bigEndian ? value.bigEndian : value.littleEndian) { Array($0) } }
            return put(seconds) + put(fraction) + put(UInt32(captured)) + put(UInt32(original ?? captured))
                + (0..<captured).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seconds)) }
        }
        let plain = record(1_700_000_000, 123_456, captured: 60) + record(1_700_000_001, 999_999, captured: 1514, original: 1600)
        return [
            RecordCase(testDescription: "microseconds", bytes: header() + plain),
            RecordCase(
                testDescription: "nanoseconds",
                bytes: header(magic: 0xA1B2_3C4D) + record(5, 999_999_999, captured: 40) + record(6, 1_500, captured: 0)),
            RecordCase(
                testDescription: "a record longer than the snapshot length",
                bytes: header(snap: 64) + record(1, 2, captured: 100) + record(3, 4, captured: 64)),
            RecordCase(
                testDescription: "a record longer than the snapshot length, cut",
                bytes: header(snap: 64) + Array(record(1, 2, captured: 100).prefix(90))),
            RecordCase(
                testDescription: "a record cut in its octets", bytes: header() + plain + Array(record(7, 8, captured: 50).prefix(30))),
            RecordCase(
                testDescription: "a record cut in its header", bytes: header() + plain + Array(record(7, 8, captured: 50).prefix(9))),
            RecordCase(
                testDescription: "an insane length",
                bytes: header() + plain + record(9, 9, captured: 0, original: 0).prefix(8) + [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]),
            RecordCase(
                testDescription: "high-bit seconds and fractions",
                bytes: header() + record(0x8000_0001, 0xFFFF_FFF0, captured: 20) + record(0xFFFF_FFFF, 2_000_000, captured: 20)),
            RecordCase(
                testDescription: "big-endian",
                bytes: header(bigEndian: true) + record(1, 2, captured: 30, bigEndian: true) + record(3, 4, captured: 20, bigEndian: true)),
            RecordCase(
                testDescription: "version 2.3, lengths swapped",
                bytes: header(minor: 3) + record(1, 2, captured: 30, original: 20) + record(3, 4, captured: 20, original: 30)),
            RecordCase(testDescription: "header alone", bytes: header()),
        ]
    }()

    @Test(arguments: recordCases)
    func recordsReadFromMemoryAreLibpcapsRecords(_ testCase: RecordCase) throws {
        struct Read: Equatable {
            var packets: [[String]] = []
            var error: String?
        }
        func read(_ path: String) -> Read {
            var result = Read()
            do {
                let reader = try PcapFileReader(path: path)
                while let packet = try reader.next() {
                    result.packets.append([
                        String(packet.timestamp), String(packet.originalLength), packet.data.map(String.init).joined(separator: " "),
                    ])
                }
            } catch {
                result.error = error.message
            }
            return result
        }
        let file = Fixtures.path("records.pcap")
        #expect(FileManager.default.createFile(atPath: file, contents: Data(testCase.bytes)))
        defer { unlink(file) }
        let fifo = Fixtures.path("records.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let bytes = testCase.bytes
        let writer = Thread {
            guard let handle = FileHandle(forWritingAtPath: fifo) else { return }
            handle.write(Data(bytes))
            try? handle.close()
        }
        writer.start()
        let fromLibpcap = read(fifo)
        let fromMemory = read(file)
        #expect(fromMemory == fromLibpcap)
        #expect(!fromLibpcap.packets.isEmpty || fromLibpcap.error != nil || bytes.count == 24)
    }

    @Test(arguments: [false, true])
    func ipFragmentsAreReassembled(ipv6: Bool) throws {
        var connection = SyntheticConnection(
            client: ipv6 ? Fixtures.client6 : Fixtures.client4, server: ipv6 ? Fixtures.server6 : Fixtures.server4)
        connection.fragmentSize = 16
        connection.handshake(at: 1)
        connection.send("220 mx.example.net ESMTP a rather long greeting line\r\n", fromClient: false, at: 2)
        connection.send("EHLO client.example.org\r\n", fromClient: true, at: 3)
        connection.send("250 mx.example.net\r\n", fromClient: false, at: 4)
        connection.close(at: 5)
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
        #expect(Fixtures.shape(session.transcript) == ["banner:220", "EHLO:250"])
        #expect(session.transcript.exchanges[0].reply?.text == "mx.example.net ESMTP a rather long greeting line")
    }

    /// Every segment one octet long, server segments delivered out of order,
    /// each retransmitted: the same session comes out.
    @Test func segmentationReorderingAndRetransmissionDoNotMatter() throws {
        let whole = Fixtures.conversation()
        var connection = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4, link: .raw)
        connection.handshake(at: 1)
        var time = 2.0
        for packet in Self.payloads(of: whole) {
            let bytes = packet.bytes
            let base = packet.fromClient ? connection.clientSequence : connection.serverSequence
            var offsets = Array(0..<bytes.count)
            if !packet.fromClient { offsets.reverse() }
            for offset in offsets {
                connection.segment([bytes[offset]], fromClient: packet.fromClient, sequence: base &+ UInt32(offset), at: time)
                connection.segment([bytes[offset]], fromClient: packet.fromClient, sequence: base &+ UInt32(offset), at: time)
                time += 0.001
            }
            if packet.fromClient {
                connection.clientSequence &+= UInt32(bytes.count)
            } else {
                connection.serverSequence &+= UInt32(bytes.count)
            }
        }
        connection.close(at: time)
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .raw))
        #expect(Fixtures.shape(session.transcript) == Self.expectedShape)
        #expect(session.findings.isEmpty)
    }

    /// The payloads of a synthetic connection, in order, with their direction.
    static func payloads(of connection: SyntheticConnection) -> [(bytes: [UInt8], fromClient: Bool)] {
        var out: [(bytes: [UInt8], fromClient: Bool)] = []
        var decoder = PacketDecoder()
        for packet in connection.packets {
            guard
                case .segment(let segment) = decoder.decode(
                    CapturedPacket(timestamp: packet.timestamp, data: packet.data, originalLength: packet.data.count, linkType: 1)),
                !segment.payload.isEmpty
            else { continue }
            out.append((segment.payload, segment.source == connection.client))
        }
        return out
    }

    @Test func overlapWithDifferentBytesIsAFinding() throws {
        var connection = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4)
        connection.handshake(at: 1)
        connection.send("220 ok\r\n", fromClient: false, at: 2)
        let sequence = connection.clientSequence
        connection.send("HELO good.example\r\n", fromClient: true, at: 3)
        connection.segment(Array("HELO evil.example\r\n".utf8), fromClient: true, sequence: sequence, at: 3.5)
        connection.send("250 ok\r\n", fromClient: false, at: 4)
        connection.close(at: 5)
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
        #expect(session.transcript.exchanges[1].sent.map(Fixtures.text) == "HELO good.example")
        #expect(session.findings.contains { if case .conflictingOverlap(.client, _, _) = $0 { true } else { false } })
    }

    @Test func aGapIsMarkedAndTheSessionGoesOn() throws {
        let connection = SyntheticConnection.dialogue(
            client: Fixtures.client4, server: Fixtures.server4,
            [
                .server("220 ok\r\n"), .client("EHLO client.example.org\r\n"), .server("250 ok\r\n"),
                .lostClient(String(repeating: "x", count: 30)),  // 30 client octets never captured
                .client("NOOP\r\n"), .server("500 what\r\n250 2.0.0 Ok\r\n"),
            ])
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
        let noop = try #require(session.transcript.exchanges.first { $0.command?.verb == .noop })
        #expect(noop.notes.contains(.missingData(.client, octets: 30)))
    }

    @Test func sessionsWithoutSYNAreFound() throws {
        let whole = Fixtures.conversation(start: 10)
        // Drop the handshake: the capture begins mid-connection.
        let packets = Array(whole.packets.dropFirst(3))
        let session = try #require(try Fixtures.firstSession(packets, link: .ethernet))
        #expect(Fixtures.shape(session.transcript) == Self.expectedShape)
        #expect(session.findings.contains(.noHandshake))
    }

    @Test func smtpOnAnotherPortIsFoundByItsGreetingOrByPort() throws {
        let odd = Endpoint(address: [192, 0, 2, 25], port: 10_025)
        let path = Fixtures.write(Fixtures.conversation(server: odd).packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try CaptureReader.read(path).sessions.count == 1)
        #expect(try CaptureReader.read(path, options: CaptureOptions(extraPorts: [10_025])).sessions.count == 1)
        // A BPF filter that excludes it.
        #expect(try CaptureReader.read(path, options: CaptureOptions(filter: "port 25")).sessions.isEmpty)
    }

    @Test func authIsRedactedBdatAndStartTLSAreHandled() throws {
        var c = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4)
        c.handshake(at: 1)
        c.talk(
            [
                .server("220 ok\r\n"), .client("EHLO c.example\r\n"), .server("250-ok\r\n250 CHUNKING\r\n"),
                .client("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), .server("235 2.7.0 ok\r\n"),
                .client("AUTH LOGIN\r\n"), .server("334 VXNlcm5hbWU6\r\n"), .client("YWxpY2U=\r\n"), .server("503 already\r\n"),
                .client("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nhello"),
                .server("250 ok\r\n250 ok\r\n250 got 5\r\n"), .client("STARTTLS\r\n"), .server("220 go\r\n"),
            ], from: 2)
        c.send([0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5], fromClient: true, at: 15)
        c.send([0x16, 3, 3, 0, 2, 9, 9], fromClient: false, at: 16)
        c.close(at: 17)
        let session = try #require(try Fixtures.firstSession(c.packets, link: .ethernet))
        #expect(
            Fixtures.shape(session.transcript) == [
                "banner:220", "EHLO:250", "AUTH:235", "AUTH:334", "sasl:503", "MAIL:250", "RCPT:250", "BDAT:250", "STARTTLS:220",
            ])
        let units = session.transcript.exchanges.compactMap(\.sent)
        let auth = try #require(units.first { $0.command?.verb == .auth })
        #expect(Fixtures.text(auth) == "AUTH PLAIN" && auth.isRedacted && auth.redactedOctets == 20)
        #expect(!units.map(Fixtures.text).joined().contains("AGFsaWNl"))
        #expect(units.contains { $0.payload == .bdatChunk(size: 5) && Fixtures.text($0) == "BDAT 5 LAST" })
        #expect(session.transcript.tls?.mode == .starttls)
        #expect(session.transcript.notes.contains(.encrypted(implicit: false, client: 10, server: 7)))
    }

    /// Thousands of connections interleaved packet by packet: each is found
    /// whole, and memory follows open connections, not the file.
    @Test func thousandsOfInterleavedFlows() throws {
        let count = 2000
        var connections: [SyntheticConnection] = []
        for index in 0..<count {
            let address: [UInt8] = [10, 0, UInt8(index / 250), UInt8(index % 250 + 1)]
            let client = Endpoint(address: address, port: UInt16(20_000 + index))
            connections.append(Fixtures.conversation(client: client, server: Fixtures.server4, start: 1000 + Double(index) * 0.0001))
        }
        var packets: [PcapWriter.Packet] = []
        let perConnection = connections[0].packets.count
        for round in 0..<perConnection {
            for index in connections.indices { packets.append(connections[index].packets[round]) }
        }
        connections.removeAll()
        let path = Fixtures.write(packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var seen = 0
        let summary = try CaptureReader.read(path) { session in
            if Fixtures.shape(session.transcript) == Self.expectedShape { seen += 1 }
        }
        #expect(summary.sessions.count == count)
        #expect(seen == count)
        #expect(Set(summary.sessions.map(\.client)).count == count)
    }

    @Test func idleFlowsTimeOut() throws {
        var c = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4)
        c.handshake(at: 1)
        c.send("220 ok\r\n", fromClient: false, at: 2)
        var other = Fixtures.conversation(client: Endpoint(address: [10, 9, 9, 9], port: 1), start: 5000)
        var packets = c.packets
        // 2000 packets an hour later keep the reader sweeping.
        for _ in 0..<3 { packets += other.packets }
        other = Fixtures.conversation(client: Endpoint(address: [10, 9, 9, 8], port: 2), start: 5001)
        packets += Array(repeating: other.packets, count: 150).flatMap { $0 }
        let path = Fixtures.write(packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try CaptureReader.read(path, options: CaptureOptions(flowTimeout: 60))
        let idle = try #require(summary.sessions.first { $0.client == Fixtures.client4 })
        guard case .failed(.captureSilent(seconds: 60), _) = idle.transcript.end else {
            Issue.record("the idle session should time out: \(String(describing: idle.transcript.end))")
            return
        }
    }
}
