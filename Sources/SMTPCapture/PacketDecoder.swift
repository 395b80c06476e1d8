import SMTPProtocol

/// One end of a TCP connection.
public struct Endpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 4 octets for IPv4, 16 for IPv6.
    public var address: [UInt8]
    public var port: UInt16

    public init(address: [UInt8], port: UInt16) {
        self.address = address
        self.port = port
    }

    public var addressText: String {
        if self.address.count == 4 { return self.address.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for index in stride(from: 0, to: self.address.count - 1, by: 2) {
            groups.append(String(UInt16(self.address[index]) << 8 | UInt16(self.address[index + 1]), radix: 16))
        }
        // The longest run of zero groups becomes "::" (RFC 5952).
        var best = (start: -1, length: 0)
        var index = 0
        while index < groups.count {
            if groups[index] == "0" {
                var end = index
                while end < groups.count && groups[end] == "0" { end += 1 }
                if end - index > best.length && end - index > 1 { best = (index, end - index) }
                index = end
            } else {
                index += 1
            }
        }
        guard best.start >= 0 else { return groups.joined(separator: ":") }
        let head = groups[..<best.start].joined(separator: ":")
        let tail = groups[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    public var description: String { self.address.count == 4 ? "\(self.addressText):\(self.port)" : "[\(self.addressText)]:\(self.port)" }

    /// `192.0.2.1:25` or `[2001:db8::1]:25`.
    public init?(_ text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(after: close)...].dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        } else {
            return nil
        }
        guard let number = UInt16(port) else { return nil }
        if let v4 = IPAddressText.ipv4(host) {
            self.init(address: v4, port: number)
        } else if let v6 = IPAddressText.ipv6(host) {
            self.init(address: v6.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }, port: number)
        } else {
            return nil
        }
    }

    public static func < (lhs: Endpoint, rhs: Endpoint) -> Bool {
        lhs.address.lexicographicallyPrecedes(rhs.address) || (lhs.address == rhs.address && lhs.port < rhs.port)
    }
}

public struct TCPFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
}

/// A TCP segment out of a packet.
public struct TCPSegment: Sendable {
    public var source: Endpoint
    public var destination: Endpoint
    public var sequence: UInt32
    public var acknowledgement: UInt32
    public var flags: TCPFlags
    /// The captured payload.
    public var payload: [UInt8]
    /// The payload's length on the wire; more than `payload.count` when the
    /// snap length cut the packet.
    public var payloadLength: Int
    public var timestamp: Double
}

/// Decodes packets down to TCP: link layer, IPv4 and IPv6 (with their
/// fragments put back together), TCP with its options skipped.
public struct PacketDecoder: Sendable {
    public enum Result: Sendable {
        case segment(TCPSegment)
        /// An IP fragment kept until the rest arrives.
        case fragmentHeld
        /// Not TCP over IP (ARP, UDP, ...).
        case notTCP
        case malformed(String)
    }

    private struct FragmentKey: Hashable, Sendable {
        var source: [UInt8]
        var destination: [UInt8]
        var identification: UInt32
        var protocolNumber: UInt8
    }

    private struct FragmentBuffer: Sendable {
        var pieces: [Int: [UInt8]] = [:]
        var totalLength: Int?
        var firstSeen: Double
        var header: (source: [UInt8], destination: [UInt8], protocolNumber: UInt8)
    }

    private var fragments: [FragmentKey: FragmentBuffer] = [:]
    /// Fragments older than this (capture time) are dropped.
    public var fragmentTimeout: Double = 60

    public init() {}

    /// Link-layer types this decoder reads.
    public static let supportedLinkTypes: [Int32: String] = [
        0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP", 108: "OpenBSD loopback", 113: "Linux cooked (SLL)",
        228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked (SLL2)",
    ]

    public mutating func decode(_ packet: CapturedPacket) -> Result {
        let bytes = packet.data[...]
        guard let (etherType, offset) = Self.network(linkType: packet.linkType, bytes) else {
            return Self.supportedLinkTypes[packet.linkType] == nil
                ? .malformed("link-layer type \(packet.linkType) is not supported") : .malformed("short link-layer header")
        }
        let network = bytes.dropFirst(offset)
        switch etherType {
        case 0x0800: return self.ipv4(network, timestamp: packet.timestamp)
        case 0x86DD: return self.ipv6(network, timestamp: packet.timestamp)
        default: return .notTCP
        }
    }

    /// The EtherType of the network packet and where it starts.
    static func network(linkType: Int32, _ bytes: ArraySlice<UInt8>) -> (UInt16, Int)? {
        func u16(_ index: Int) -> UInt16? {
            guard index + 1 < bytes.count else { return nil }
            return UInt16(bytes[bytes.startIndex + index]) << 8 | UInt16(bytes[bytes.startIndex + index + 1])
        }
        func byVersion(_ offset: Int) -> (UInt16, Int)? {
            guard offset < bytes.count else { return nil }
            switch bytes[bytes.startIndex + offset] >> 4 {
            case 4: return (0x0800, offset)
            case 6: return (0x86DD, offset)
            default: return (0, offset)
            }
        }
        switch linkType {
        case 1:
            guard var type = u16(12) else { return nil }
            var offset = 14
            // 802.1Q, 802.1ad (QinQ) and the old QinQ tag: 4 octets each.
            while type == 0x8100 || type == 0x88A8 || type == 0x9100 {
                guard let inner = u16(offset + 2) else { return nil }
                type = inner
                offset += 4
            }
            return (type, offset)
        case 12, 14, 101, 228, 229:
            return byVersion(0)
        case 0, 108:
            guard bytes.count >= 4 else { return nil }
            // The family is in the capturing host's byte order (NULL) or network order (LOOP).
            let little = UInt32(bytes[bytes.startIndex]) | UInt32(bytes[bytes.startIndex + 1]) << 8
            let big = UInt32(bytes[bytes.startIndex + 3]) | UInt32(bytes[bytes.startIndex + 2]) << 8
            for family in [little, big] {
                if family == 2 { return (0x0800, 4) }
                if [24, 28, 30].contains(family) { return (0x86DD, 4) }
            }
            return (0, 4)
        case 113:
            guard let type = u16(14) else { return nil }
            return (type, 16)
        case 276:
            guard let type = u16(0), bytes.count >= 20 else { return nil }
            return (type, 20)
        default:
            return nil
        }
    }

    private mutating func ipv4(_ bytes: ArraySlice<UInt8>, timestamp: Double) -> Result {
        let b = Array(bytes)
        guard b.count >= 20, b[0] >> 4 == 4 else { return .malformed("short or bad IPv4 header") }
        let headerLength = Int(b[0] & 0x0F) * 4
        let totalLength = Int(UInt16(b[2]) << 8 | UInt16(b[3]))
        guard headerLength >= 20, totalLength >= headerLength, b.count >= headerLength else { return .malformed("bad IPv4 lengths") }
        let protocolNumber = b[9]
        let source = Array(b[12..<16])
        let destination = Array(b[16..<20])
        let flagsOffset = UInt16(b[6]) << 8 | UInt16(b[7])
        let moreFragments = flagsOffset & 0x2000 != 0
        let fragmentOffset = Int(flagsOffset & 0x1FFF) * 8
        // Ethernet pads short frames: trust the IP length, not the frame.
        let payload = Array(b[headerLength..<min(totalLength, b.count)])
        let claimed = totalLength - headerLength
        if moreFragments || fragmentOffset > 0 {
            let key = FragmentKey(
                source: source, destination: destination, identification: UInt32(UInt16(b[4]) << 8 | UInt16(b[5])),
                protocolNumber: protocolNumber)
            return self.fragment(key, offset: fragmentOffset, payload: payload, last: !moreFragments, timestamp: timestamp)
        }
        guard protocolNumber == 6 else { return .notTCP }
        return Self.tcp(payload, claimedLength: claimed, source: source, destination: destination, timestamp: timestamp)
    }

    private mutating func ipv6(_ bytes: ArraySlice<UInt8>, timestamp: Double) -> Result {
        let b = Array(bytes)
        guard b.count >= 40, b[0] >> 4 == 6 else { return .malformed("short or bad IPv6 header") }
        let payloadLength = Int(UInt16(b[4]) << 8 | UInt16(b[5]))
        let source = Array(b[8..<24])
        let destination = Array(b[24..<40])
        var next = b[6]
        var offset = 40
        let end = min(40 + payloadLength, b.count)
        var fragment: (offset: Int, more: Bool, id: UInt32)?
        while true {
            switch next {
            case 0, 43, 60:
                guard offset + 2 <= end else { return .malformed("short IPv6 extension header") }
                next = b[offset]
                offset += (Int(b[offset + 1]) + 1) * 8
            case 44:
                guard offset + 8 <= end else { return .malformed("short IPv6 fragment header") }
                let field = UInt16(b[offset + 2]) << 8 | UInt16(b[offset + 3])
                let id = UInt32(b[offset + 4]) << 24 | UInt32(b[offset + 5]) << 16 | UInt32(b[offset + 6]) << 8 | UInt32(b[offset + 7])
                fragment = (Int(field & 0xFFF8), field & 1 != 0, id)
                next = b[offset]
                offset += 8
            default:
                guard offset <= end else { return .malformed("IPv6 extension headers overrun the packet") }
                let payload = Array(b[offset..<end])
                let claimed = 40 + payloadLength - offset
                if let fragment {
                    let key = FragmentKey(source: source, destination: destination, identification: fragment.id, protocolNumber: next)
                    return self.fragment(key, offset: fragment.offset, payload: payload, last: !fragment.more, timestamp: timestamp)
                }
                guard next == 6 else { return .notTCP }
                return Self.tcp(payload, claimedLength: claimed, source: source, destination: destination, timestamp: timestamp)
            }
        }
    }

    private mutating func fragment(_ key: FragmentKey, offset: Int, payload: [UInt8], last: Bool, timestamp: Double) -> Result {
        self.fragments = self.fragments.filter { timestamp - $0.value.firstSeen < self.fragmentTimeout }
        var buffer =
            self.fragments[key]
            ?? FragmentBuffer(firstSeen: timestamp, header: (key.source, key.destination, key.protocolNumber))
        if buffer.pieces[offset] == nil { buffer.pieces[offset] = payload }
        if last { buffer.totalLength = offset + payload.count }
        guard let total = buffer.totalLength else {
            self.fragments[key] = buffer
            return .fragmentHeld
        }
        var assembled: [UInt8] = []
        assembled.reserveCapacity(total)
        for start in buffer.pieces.keys.sorted() {
            guard start <= assembled.count, let piece = buffer.pieces[start] else {
                self.fragments[key] = buffer
                return .fragmentHeld
            }
            let overlap = assembled.count - start
            if overlap < piece.count { assembled += piece.dropFirst(overlap) }
        }
        guard assembled.count >= total else {
            self.fragments[key] = buffer
            return .fragmentHeld
        }
        self.fragments[key] = nil
        guard key.protocolNumber == 6 else { return .notTCP }
        return Self.tcp(
            Array(assembled.prefix(total)), claimedLength: total, source: key.source, destination: key.destination, timestamp: timestamp)
    }

    static func tcp(_ b: [UInt8], claimedLength: Int, source: [UInt8], destination: [UInt8], timestamp: Double) -> Result {
        guard b.count >= 20 else { return .malformed("short TCP header") }
        let dataOffset = Int(b[12] >> 4) * 4
        guard dataOffset >= 20, b.count >= dataOffset else { return .malformed("bad TCP data offset") }
        func u32(_ i: Int) -> UInt32 { UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3]) }
        return .segment(
            TCPSegment(
                source: Endpoint(address: source, port: UInt16(b[0]) << 8 | UInt16(b[1])),
                destination: Endpoint(address: destination, port: UInt16(b[2]) << 8 | UInt16(b[3])), sequence: u32(4),
                acknowledgement: u32(8),
                flags: TCPFlags(rawValue: b[13] & 0x1F), payload: Array(b[dataOffset...]),
                payloadLength: max(claimedLength - dataOffset, b.count - dataOffset),
                timestamp: timestamp))
    }
}
