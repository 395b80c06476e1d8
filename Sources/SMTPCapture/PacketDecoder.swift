import SMTPProtocol

/// One end of a TCP connection.
public struct Endpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    // The address's octets packed big-endian into two words (an IPv4
    // address in the top four octets of `high`): an endpoint is compared,
    // hashed and copied for every packet, without a heap allocation.
    private var high: UInt64
    private var low: UInt64
    /// 4 for IPv4, 16 for IPv6 (0: none).
    private var length: UInt8
    public var port: UInt16

    public init(address: [UInt8], port: UInt16) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        let octets = address.prefix(16)
        for (index, octet) in octets.enumerated() {
            if index < 8 { high |= UInt64(octet) << (56 - 8 * UInt64(index)) } else { low |= UInt64(octet) << (56 - 8 * UInt64(index - 8)) }
        }
        self.init(high: high, low: low, length: UInt8(octets.count), port: port)
    }

    init(high: UInt64, low: UInt64, length: UInt8, port: UInt16) {
        self.high = high
        self.low = low
        self.length = length
        self.port = port
    }

    /// The address and port folded into one word, to spread connections over workers.
    var mixed: UInt64 { (self.high ^ (self.low &* 0xFF51_AFD7_ED55_8CCD) ^ UInt64(self.port) << 7) &+ UInt64(self.length) }

    /// Every field, in as few words as hold them: an IPv4 address fills
    /// only the top half of `high`, so its port and length share the word.
    /// Each flow lookup hashes two endpoints, and eight words of SipHash
    /// for them were a tenth of a flow worker's time.
    public func hash(into hasher: inout Hasher) {
        let tail = UInt64(self.port) << 8 | UInt64(self.length)
        if self.length == 4 && self.high & 0xFFFF_FFFF == 0 && self.low == 0 {
            hasher.combine(self.high | tail)
        } else {
            hasher.combine(self.high)
            hasher.combine(self.low)
            hasher.combine(tail)
        }
    }

    /// The same address with another port.
    func with(port: UInt16) -> Endpoint {
        var copy = self
        copy.port = port
        return copy
    }

    /// 4 octets for IPv4, 16 for IPv6.
    public var address: [UInt8] {
        (0..<Int(self.length)).map { index in
            index < 8
                ? UInt8(truncatingIfNeeded: self.high >> (56 - 8 * UInt64(index)))
                : UInt8(truncatingIfNeeded: self.low >> (56 - 8 * UInt64(index - 8)))
        }
    }

    public var addressText: String {
        if self.length == 4 {
            // Straight from the packed word: every session names its two
            // ends, and octet arrays for that were thousands of allocations.
            let word = self.high >> 32
            return "\(word >> 24).\(word >> 16 & 0xFF).\(word >> 8 & 0xFF).\(word & 0xFF)"
        }
        let address = self.address
        var groups: [String] = []
        for index in stride(from: 0, to: address.count - 1, by: 2) {
            groups.append(String(UInt16(address[index]) << 8 | UInt16(address[index + 1]), radix: 16))
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

    public var description: String { self.length == 4 ? "\(self.addressText):\(self.port)" : "[\(self.addressText)]:\(self.port)" }

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

    /// The addresses' octets in order (a shorter one first where it is a
    /// prefix of the other), then the port.
    public static func < (lhs: Endpoint, rhs: Endpoint) -> Bool {
        if lhs.length == rhs.length || lhs.length == 0 || rhs.length == 0 {
            return (lhs.high, lhs.low, lhs.length, lhs.port) < (rhs.high, rhs.low, rhs.length, rhs.port)
        }
        // IPv4 against IPv6: the first four octets decide, then the shorter.
        let (a, b) = (lhs.high >> 32, rhs.high >> 32)
        if a != b { return a < b }
        return lhs.length < rhs.length
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

    /// Whether a segment's payload is left where it lies, in the packet's
    /// octets (``lentPayload``), instead of copied into the segment: for a
    /// reader whose packets stay in place until the payload is copied on
    /// another thread. A payload put back together from IP fragments is
    /// always copied.
    var lendsPayload = false
    /// Where the last segment's payload lies when it was lent, in the
    /// packet's octets (the segment's own `payload` is then empty); `nil`
    /// when it was copied. An address, not a pointer: the decoder is
    /// `Sendable`, and the octets are only valid while the packet's are.
    private(set) var lentPayload: (address: Int, count: Int)?

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
        packet.data.withUnsafeBufferPointer { self.decode($0, linkType: packet.linkType, timestamp: packet.timestamp) }
    }

    /// Decodes the octets of one packet where they lie: the headers are read
    /// in place (every offset checked against the packet's length) and only
    /// the TCP payload is copied out.
    public mutating func decode(_ bytes: UnsafeBufferPointer<UInt8>, linkType: Int32, timestamp: Double) -> Result {
        self.lentPayload = nil
        guard let (etherType, offset) = Self.network(linkType: linkType, bytes) else {
            return Self.supportedLinkTypes[linkType] == nil
                ? .malformed("link-layer type \(linkType) is not supported") : .malformed("short link-layer header")
        }
        let network = UnsafeBufferPointer(rebasing: bytes[min(offset, bytes.count)...])
        switch etherType {
        case 0x0800: return self.ipv4(network, timestamp: timestamp)
        case 0x86DD: return self.ipv6(network, timestamp: timestamp)
        default: return .notTCP
        }
    }

    /// The EtherType of the network packet and where it starts.
    static func network(linkType: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> (UInt16, Int)? {
        func u16(_ index: Int) -> UInt16? {
            guard index >= 0, index + 1 < bytes.count else { return nil }
            return UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
        }
        func byVersion(_ offset: Int) -> (UInt16, Int)? {
            guard offset < bytes.count else { return nil }
            switch bytes[offset] >> 4 {
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
            let little = UInt32(bytes[0]) | UInt32(bytes[1]) << 8
            let big = UInt32(bytes[3]) | UInt32(bytes[2]) << 8
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

    private mutating func ipv4(_ b: UnsafeBufferPointer<UInt8>, timestamp: Double) -> Result {
        guard b.count >= 20, b[0] >> 4 == 4 else { return .malformed("short or bad IPv4 header") }
        let headerLength = Int(b[0] & 0x0F) * 4
        let totalLength = Int(UInt16(b[2]) << 8 | UInt16(b[3]))
        guard headerLength >= 20, totalLength >= headerLength, b.count >= headerLength else { return .malformed("bad IPv4 lengths") }
        let protocolNumber = b[9]
        let source = Endpoint(high: UInt64(Self.u32(b, 12)) << 32, low: 0, length: 4, port: 0)
        let destination = Endpoint(high: UInt64(Self.u32(b, 16)) << 32, low: 0, length: 4, port: 0)
        let flagsOffset = UInt16(b[6]) << 8 | UInt16(b[7])
        let moreFragments = flagsOffset & 0x2000 != 0
        let fragmentOffset = Int(flagsOffset & 0x1FFF) * 8
        // Ethernet pads short frames: trust the IP length, not the frame.
        let payload = UnsafeBufferPointer(rebasing: b[headerLength..<min(totalLength, b.count)])
        let claimed = totalLength - headerLength
        if moreFragments || fragmentOffset > 0 {
            let key = FragmentKey(
                source: Array(b[12..<16]), destination: Array(b[16..<20]), identification: UInt32(UInt16(b[4]) << 8 | UInt16(b[5])),
                protocolNumber: protocolNumber)
            return self.fragment(key, offset: fragmentOffset, payload: Array(payload), last: !moreFragments, timestamp: timestamp)
        }
        guard protocolNumber == 6 else { return .notTCP }
        return self.segment(payload, claimedLength: claimed, source: source, destination: destination, timestamp: timestamp)
    }

    private mutating func ipv6(_ b: UnsafeBufferPointer<UInt8>, timestamp: Double) -> Result {
        guard b.count >= 40, b[0] >> 4 == 6 else { return .malformed("short or bad IPv6 header") }
        let payloadLength = Int(UInt16(b[4]) << 8 | UInt16(b[5]))
        let source = Endpoint(
            high: UInt64(Self.u32(b, 8)) << 32 | UInt64(Self.u32(b, 12)), low: UInt64(Self.u32(b, 16)) << 32 | UInt64(Self.u32(b, 20)),
            length: 16, port: 0)
        let destination = Endpoint(
            high: UInt64(Self.u32(b, 24)) << 32 | UInt64(Self.u32(b, 28)), low: UInt64(Self.u32(b, 32)) << 32 | UInt64(Self.u32(b, 36)),
            length: 16, port: 0)
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
                fragment = (Int(field & 0xFFF8), field & 1 != 0, Self.u32(b, offset + 4))
                next = b[offset]
                offset += 8
            default:
                guard offset <= end else { return .malformed("IPv6 extension headers overrun the packet") }
                let payload = UnsafeBufferPointer(rebasing: b[offset..<end])
                let claimed = 40 + payloadLength - offset
                if let fragment {
                    let key = FragmentKey(
                        source: Array(b[8..<24]), destination: Array(b[24..<40]), identification: fragment.id, protocolNumber: next)
                    return self.fragment(key, offset: fragment.offset, payload: Array(payload), last: !fragment.more, timestamp: timestamp)
                }
                guard next == 6 else { return .notTCP }
                return self.segment(payload, claimedLength: claimed, source: source, destination: destination, timestamp: timestamp)
            }
        }
    }

    /// Four octets at `index`, big-endian; the caller has checked the length.
    private static func u32(_ b: UnsafeBufferPointer<UInt8>, _ index: Int) -> UInt32 {
        UInt32(b[index]) << 24 | UInt32(b[index + 1]) << 16 | UInt32(b[index + 2]) << 8 | UInt32(b[index + 3])
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
        // The octets put together here do not outlive this call: copied, never lent.
        return Array(assembled.prefix(total)).withUnsafeBufferPointer { tcp in
            Self.tcp(
                tcp, claimedLength: total, source: Endpoint(address: key.source, port: 0),
                destination: Endpoint(address: key.destination, port: 0), timestamp: timestamp, lending: false
            ).result
        }
    }

    /// The TCP segment in `b`, its payload lent where ``lendsPayload`` says so.
    private mutating func segment(
        _ b: UnsafeBufferPointer<UInt8>, claimedLength: Int, source: Endpoint, destination: Endpoint, timestamp: Double
    ) -> Result {
        let (result, lent) = Self.tcp(
            b, claimedLength: claimedLength, source: source, destination: destination, timestamp: timestamp, lending: self.lendsPayload)
        self.lentPayload = lent.map { (Int(bitPattern: $0.baseAddress), $0.count) }
        return result
    }

    /// The TCP segment in `b`, and where its payload lies when `lending`
    /// leaves it there; the endpoints' addresses come from the IP header,
    /// their ports from here.
    private static func tcp(
        _ b: UnsafeBufferPointer<UInt8>, claimedLength: Int, source: Endpoint, destination: Endpoint, timestamp: Double, lending: Bool
    ) -> (result: Result, lent: UnsafeBufferPointer<UInt8>?) {
        guard b.count >= 20 else { return (.malformed("short TCP header"), nil) }
        let dataOffset = Int(b[12] >> 4) * 4
        guard dataOffset >= 20, b.count >= dataOffset else { return (.malformed("bad TCP data offset"), nil) }
        let payload = b.count > dataOffset ? UnsafeBufferPointer(rebasing: b[dataOffset...]) : nil
        let segment = TCPSegment(
            source: source.with(port: UInt16(b[0]) << 8 | UInt16(b[1])),
            destination: destination.with(port: UInt16(b[2]) << 8 | UInt16(b[3])),
            sequence: Self.u32(b, 4), acknowledgement: Self.u32(b, 8), flags: TCPFlags(rawValue: b[13] & 0x1F),
            payload: lending ? [] : payload.map { Array($0) } ?? [],
            payloadLength: max(claimedLength - dataOffset, b.count - dataOffset),
            timestamp: timestamp)
        return (.segment(segment), lending ? payload : nil)
    }
}
