/// Writes captures: classic pcap and pcapng, of synthetic TCP connections.
/// For the project's own fixtures and for recording runs (`run --record`).
public enum PcapWriter {
    public struct Packet: Sendable {
        public var timestamp: Double
        public var data: [UInt8]
        public var originalLength: Int

        public init(timestamp: Double, data: [UInt8], originalLength: Int? = nil) {
            self.timestamp = timestamp
            self.data = data
            self.originalLength = originalLength ?? data.count
        }
    }

    /// A classic pcap file (little-endian, microseconds).
    public static func pcap(_ packets: [Packet], linkType: UInt32, snapLength: UInt32 = 262_144) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE(UInt32(0xA1B2_C3D4))
        out.appendLE(UInt16(2))
        out.appendLE(UInt16(4))
        out.appendLE(UInt32(0))
        out.appendLE(UInt32(0))
        out.appendLE(snapLength)
        out.appendLE(linkType)
        for packet in packets {
            let captured = min(packet.data.count, Int(snapLength))
            out.appendLE(UInt32(packet.timestamp))
            out.appendLE(UInt32((packet.timestamp - Double(UInt32(packet.timestamp))) * 1_000_000))
            out.appendLE(UInt32(captured))
            out.appendLE(UInt32(max(packet.originalLength, captured)))
            out += packet.data.prefix(captured)
        }
        return out
    }

    /// A pcapng file: a section header, one interface, enhanced packet blocks.
    public static func pcapng(_ packets: [Packet], linkType: UInt16, snapLength: UInt32 = 262_144) -> [UInt8] {
        func block(_ type: UInt32, _ body: [UInt8]) -> [UInt8] {
            var padded = body
            while padded.count % 4 != 0 { padded.append(0) }
            var out: [UInt8] = []
            out.appendLE(type)
            out.appendLE(UInt32(padded.count + 12))
            out += padded
            out.appendLE(UInt32(padded.count + 12))
            return out
        }
        var section: [UInt8] = []
        section.appendLE(UInt32(0x1A2B_3C4D))
        section.appendLE(UInt16(1))
        section.appendLE(UInt16(0))
        section.appendLE(UInt64.max)
        var interface: [UInt8] = []
        interface.appendLE(linkType)
        interface.appendLE(UInt16(0))
        interface.appendLE(snapLength)
        var out = block(0x0A0D_0D0A, section) + block(1, interface)
        for packet in packets {
            let micros = UInt64(packet.timestamp * 1_000_000)
            var body: [UInt8] = []
            body.appendLE(UInt32(0))
            body.appendLE(UInt32(micros >> 32))
            body.appendLE(UInt32(micros & 0xFFFF_FFFF))
            let captured = min(packet.data.count, Int(snapLength))
            body.appendLE(UInt32(captured))
            body.appendLE(UInt32(max(packet.originalLength, captured)))
            body += packet.data.prefix(captured)
            out += block(6, body)
        }
        return out
    }
}

/// The link layer a synthetic capture is written with.
public enum SyntheticLink: Sendable, Hashable {
    case ethernet
    /// Ethernet with 802.1Q tags (several: QinQ).
    case vlan([UInt16])
    case raw
    case linuxCooked
    case linuxCooked2
    case bsdLoopback

    public var linkType: UInt32 {
        switch self {
        case .ethernet, .vlan: 1
        case .raw: 101
        case .linuxCooked: 113
        case .linuxCooked2: 276
        case .bsdLoopback: 0
        }
    }

    func frame(_ ip: [UInt8], ipv6: Bool) -> [UInt8] {
        let etherType: UInt16 = ipv6 ? 0x86DD : 0x0800
        switch self {
        case .ethernet:
            return [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1] + etherType.bigEndianBytes + ip
        case .vlan(let tags):
            var out: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]
            for (index, tag) in tags.enumerated() {
                out += (index == 0 && tags.count > 1 ? UInt16(0x88A8) : UInt16(0x8100)).bigEndianBytes
                out += tag.bigEndianBytes
            }
            return out + etherType.bigEndianBytes + ip
        case .raw:
            return ip
        case .linuxCooked:
            return [0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0] + etherType.bigEndianBytes + ip
        case .linuxCooked2:
            return etherType.bigEndianBytes + [0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 6, 2, 0, 0, 0, 0, 1, 0] + ip
        case .bsdLoopback:
            return (ipv6 ? [30, 0, 0, 0] : [2, 0, 0, 0]) + ip
        }
    }
}

/// One synthetic TCP connection: segments with real sequence numbers, for
/// writing captures of exactly the traffic a test wants.
public struct SyntheticConnection: Sendable {
    public let client: Endpoint
    public let server: Endpoint
    public let link: SyntheticLink
    public private(set) var packets: [PcapWriter.Packet] = []
    public var clientSequence: UInt32
    public var serverSequence: UInt32
    private var ipIdentification: UInt16 = 1

    public init(client: Endpoint, server: Endpoint, link: SyntheticLink = .ethernet, clientISN: UInt32 = 1000, serverISN: UInt32 = 5000) {
        self.client = client
        self.server = server
        self.link = link
        self.clientSequence = clientISN
        self.serverSequence = serverISN
    }

    public mutating func handshake(at time: Double) {
        self.emit(fromClient: true, sequence: self.clientSequence, flags: [.syn], payload: [], at: time)
        self.emit(fromClient: false, sequence: self.serverSequence, flags: [.syn, .ack], payload: [], at: time)
        self.clientSequence &+= 1
        self.serverSequence &+= 1
        self.emit(fromClient: true, sequence: self.clientSequence, flags: [.ack], payload: [], at: time)
    }

    /// Sends `bytes` in one segment and advances the sequence.
    public mutating func send(_ bytes: [UInt8], fromClient: Bool, at time: Double) {
        let sequence = fromClient ? self.clientSequence : self.serverSequence
        self.emit(fromClient: fromClient, sequence: sequence, flags: [.ack, .psh], payload: bytes, at: time)
        if fromClient { self.clientSequence &+= UInt32(bytes.count) } else { self.serverSequence &+= UInt32(bytes.count) }
    }

    public mutating func send(_ text: String, fromClient: Bool, at time: Double) {
        self.send(Array(text.utf8), fromClient: fromClient, at: time)
    }

    /// A bare acknowledgement of everything the other side has sent.
    public mutating func acknowledge(fromClient: Bool, at time: Double) {
        self.emit(
            fromClient: fromClient, sequence: fromClient ? self.clientSequence : self.serverSequence, flags: [.ack], payload: [], at: time)
    }

    /// A segment at an explicit sequence number, without advancing (for
    /// reordering, retransmission and overlap).
    public mutating func segment(_ bytes: [UInt8], fromClient: Bool, sequence: UInt32, at time: Double, cutTo captured: Int? = nil) {
        self.emit(fromClient: fromClient, sequence: sequence, flags: [.ack, .psh], payload: bytes, at: time, captured: captured)
    }

    /// A whole plain session, for fixtures and benchmarks: greeting, EHLO, a
    /// pipelined MAIL/RCPT/DATA, `body` (dot-stuffed and terminated), QUIT.
    public static func exampleSession(
        client: Endpoint, server: Endpoint, link: SyntheticLink = .ethernet, start: Double, helo: String = "client.example.org",
        body: String = "Subject: x\r\n\r\n..dot\r\n"
    ) -> SyntheticConnection {
        var c = SyntheticConnection(client: client, server: server, link: link)
        c.handshake(at: start)
        c.send("220 mx.example.net ESMTP\r\n", fromClient: false, at: start + 0.01)
        c.send("EHLO \(helo)\r\n", fromClient: true, at: start + 0.02)
        c.send("250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n", fromClient: false, at: start + 0.03)
        c.send("MAIL FROM:<a@client.example.org>\r\nRCPT TO:<postmaster@example.net>\r\nDATA\r\n", fromClient: true, at: start + 0.04)
        c.send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n", fromClient: false, at: start + 0.05)
        c.replay(Array((body + ".\r\n").utf8), fromClient: true, at: start + 0.06)
        c.send("250 2.0.0 Ok: queued as ABC\r\n", fromClient: false, at: start + 0.07)
        c.send("QUIT\r\n", fromClient: true, at: start + 0.08)
        c.send("221 2.0.0 Bye\r\n", fromClient: false, at: start + 0.09)
        c.close(at: start + 0.1)
        return c
    }

    /// Writes recorded octets as segments of at most `mss` octets.
    public mutating func replay(_ bytes: [UInt8], fromClient: Bool, at time: Double, mss: Int = 1460) {
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + mss, bytes.count)
            self.send(Array(bytes[offset..<end]), fromClient: fromClient, at: time)
            offset = end
        }
    }

    public mutating func close(at time: Double, resetByServer: Bool = false) {
        if resetByServer {
            self.emit(fromClient: false, sequence: self.serverSequence, flags: [.rst], payload: [], at: time)
            return
        }
        self.emit(fromClient: true, sequence: self.clientSequence, flags: [.fin, .ack], payload: [], at: time)
        self.emit(fromClient: false, sequence: self.serverSequence, flags: [.fin, .ack], payload: [], at: time)
        self.clientSequence &+= 1
        self.serverSequence &+= 1
        self.emit(fromClient: true, sequence: self.clientSequence, flags: [.ack], payload: [], at: time)
    }

    /// The IP packet for a segment, split into IP fragments of at most
    /// `fragmentSize` payload octets when asked.
    public static func ipPackets(source: Endpoint, destination: Endpoint, tcp: [UInt8], identification: UInt16, fragmentSize: Int? = nil)
        -> [[UInt8]]
    {
        if source.address.count == 16 {
            guard let size = fragmentSize, tcp.count > size else {
                return [[0x60, 0, 0, 0] + UInt16(tcp.count).bigEndianBytes + [6, 64] + source.address + destination.address + tcp]
            }
            var out: [[UInt8]] = []
            var offset = 0
            while offset < tcp.count {
                let piece = Array(tcp[offset..<min(offset + size, tcp.count)])
                let more: UInt16 = offset + piece.count < tcp.count ? 1 : 0
                let header: [UInt8] = [6, 0] + (UInt16(offset) | more).bigEndianBytes + [0, 0] + identification.bigEndianBytes
                out.append(
                    [0x60, 0, 0, 0] + UInt16(piece.count + 8).bigEndianBytes + [44, 64] + source.address + destination.address + header
                        + piece)
                offset += piece.count
            }
            return out
        }
        func header(_ length: Int, flagsOffset: UInt16) -> [UInt8] {
            var header: [UInt8] =
                [0x45, 0] + UInt16(20 + length).bigEndianBytes + identification.bigEndianBytes + flagsOffset.bigEndianBytes + [64, 6, 0, 0]
            header += source.address + destination.address
            var sum: UInt32 = 0
            for index in stride(from: 0, to: 20, by: 2) { sum += UInt32(header[index]) << 8 | UInt32(header[index + 1]) }
            while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
            let checksum = ~UInt16(sum)
            header[10] = UInt8(checksum >> 8)
            header[11] = UInt8(checksum & 0xFF)
            return header
        }
        guard let size = fragmentSize, tcp.count > size else { return [header(tcp.count, flagsOffset: 0x4000) + tcp] }
        let step = size / 8 * 8
        var out: [[UInt8]] = []
        var offset = 0
        while offset < tcp.count {
            let piece = Array(tcp[offset..<min(offset + step, tcp.count)])
            let more: UInt16 = offset + piece.count < tcp.count ? 0x2000 : 0
            out.append(header(piece.count, flagsOffset: more | UInt16(offset / 8)) + piece)
            offset += piece.count
        }
        return out
    }

    /// The TCP segment: header with a timestamp option, then the payload.
    static func tcp(source: Endpoint, destination: Endpoint, sequence: UInt32, acknowledgement: UInt32, flags: TCPFlags, payload: [UInt8])
        -> [UInt8]
    {
        var out = source.port.bigEndianBytes + destination.port.bigEndianBytes + sequence.bigEndianBytes + acknowledgement.bigEndianBytes
        out += [0x80, flags.rawValue, 0xFF, 0xFF, 0, 0, 0, 0]
        out += [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]  // NOP NOP timestamps: options are skipped, not parsed
        return out + payload
    }

    public var fragmentSize: Int?

    private mutating func emit(fromClient: Bool, sequence: UInt32, flags: TCPFlags, payload: [UInt8], at time: Double, captured: Int? = nil)
    {
        let source = fromClient ? self.client : self.server
        let destination = fromClient ? self.server : self.client
        let acknowledgement = flags.contains(.syn) && !flags.contains(.ack) ? 0 : (fromClient ? self.serverSequence : self.clientSequence)
        let segment = Self.tcp(
            source: source, destination: destination, sequence: sequence, acknowledgement: acknowledgement, flags: flags, payload: payload)
        self.ipIdentification &+= 1
        for ip in Self.ipPackets(
            source: source, destination: destination, tcp: segment, identification: self.ipIdentification, fragmentSize: self.fragmentSize)
        {
            let frame = self.link.frame(ip, ipv6: source.address.count == 16)
            let keep = captured.map { frame.count - payload.count + $0 } ?? frame.count
            self.packets.append(PcapWriter.Packet(timestamp: time, data: Array(frame.prefix(keep)), originalLength: frame.count))
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { self.append(contentsOf: $0) }
    }
}

extension FixedWidthInteger {
    var bigEndianBytes: [UInt8] { withUnsafeBytes(of: self.bigEndian) { Array($0) } }
}
