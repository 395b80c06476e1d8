/// The HAProxy PROXY protocol header, versions 1 (text) and 2 (binary),
/// which a load balancer puts before a session to name the real client.
public enum ProxyHeader {
    public struct Parsed: Sendable, Hashable {
        public var version: Int
        /// `nil` for `UNKNOWN` (v1) and `LOCAL` (v2): the connection speaks for itself.
        public var source: String?
        public var destination: String?
        public var sourcePort: UInt16?
        public var destinationPort: UInt16?
        /// Octets the header took.
        public var length: Int
    }

    public enum Result: Sendable, Hashable {
        case complete(Parsed)
        case needMore
        case invalid(String)
    }

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    public static func parse(_ bytes: some Collection<UInt8>) -> Result {
        let bytes = Array(bytes)
        if bytes.count < 12 && Array(self.v2Signature.prefix(bytes.count)) == bytes && !bytes.isEmpty { return .needMore }
        if bytes.starts(with: self.v2Signature) { return self.parseV2(bytes) }
        let v1Prefix = Array("PROXY ".utf8)
        if bytes.count < v1Prefix.count { return Array(v1Prefix.prefix(bytes.count)) == bytes ? .needMore : .invalid("no PROXY header") }
        guard bytes.starts(with: v1Prefix) else { return .invalid("no PROXY header") }
        return self.parseV1(bytes)
    }

    static func parseV1(_ bytes: [UInt8]) -> Result {
        guard let end = (0..<max(bytes.count - 1, 0)).first(where: { bytes[$0] == 0x0D && bytes[$0 + 1] == 0x0A }) else {
            return bytes.count >= 107 ? .invalid("a v1 header is at most 107 octets") : .needMore
        }
        guard end + 2 <= 107 else { return .invalid("a v1 header is at most 107 octets") }
        let fields = String(decoding: bytes[..<end], as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        if fields.count >= 2 && fields[1] == "UNKNOWN" {
            return .complete(Parsed(version: 1, source: nil, destination: nil, sourcePort: nil, destinationPort: nil, length: end + 2))
        }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            return .invalid("a v1 header is PROXY TCP4|TCP6 SRC DST SPORT DPORT")
        }
        let valid: (Substring) -> Bool = fields[1] == "TCP4" ? { IPAddressText.ipv4($0) != nil } : { IPAddressText.ipv6($0) != nil }
        guard valid(fields[2]), valid(fields[3]), let sport = UInt16(fields[4]), let dport = UInt16(fields[5]) else {
            return .invalid("bad addresses or ports in the v1 header")
        }
        return .complete(
            Parsed(
                version: 1, source: String(fields[2]), destination: String(fields[3]), sourcePort: sport, destinationPort: dport,
                length: end + 2))
    }

    static func parseV2(_ bytes: [UInt8]) -> Result {
        guard bytes.count >= 16 else { return .needMore }
        guard bytes[12] >> 4 == 2 else { return .invalid("v2 header with version \(bytes[12] >> 4)") }
        let length = Int(UInt16(bytes[14]) << 8 | UInt16(bytes[15]))
        guard bytes.count >= 16 + length else { return .needMore }
        let command = bytes[12] & 0x0F
        if command == 0 {
            return .complete(Parsed(version: 2, source: nil, destination: nil, sourcePort: nil, destinationPort: nil, length: 16 + length))
        }
        guard command == 1 else { return .invalid("v2 header with command \(command)") }
        let body = Array(bytes[16..<(16 + length)])
        func port(_ at: Int) -> UInt16 { UInt16(body[at]) << 8 | UInt16(body[at + 1]) }
        switch bytes[13] {
        case 0x11:
            guard body.count >= 12 else { return .invalid("short v2 IPv4 addresses") }
            return .complete(
                Parsed(
                    version: 2, source: body[0..<4].map(String.init).joined(separator: "."),
                    destination: body[4..<8].map(String.init).joined(separator: "."),
                    sourcePort: port(8), destinationPort: port(10), length: 16 + length))
        case 0x21:
            guard body.count >= 36 else { return .invalid("short v2 IPv6 addresses") }
            func text(_ range: Range<Int>) -> String {
                stride(from: range.lowerBound, to: range.upperBound, by: 2).map {
                    String(UInt16(body[$0]) << 8 | UInt16(body[$0 + 1]), radix: 16)
                }.joined(separator: ":")
            }
            return .complete(
                Parsed(
                    version: 2, source: text(0..<16), destination: text(16..<32), sourcePort: port(32), destinationPort: port(34),
                    length: 16 + length))
        default:
            return .complete(Parsed(version: 2, source: nil, destination: nil, sourcePort: nil, destinationPort: nil, length: 16 + length))
        }
    }

    /// `PROXY TCP4 src dst sport dport\r\n` (TCP6 for IPv6 addresses).
    public static func v1(source: String, destination: String, sourcePort: UInt16, destinationPort: UInt16) -> [UInt8] {
        let family = source.contains(":") ? "TCP6" : "TCP4"
        return Array("PROXY \(family) \(source) \(destination) \(sourcePort) \(destinationPort)\r\n".utf8)
    }

    /// The binary v2 header for TCP over IPv4 or IPv6.
    public static func v2(source: String, destination: String, sourcePort: UInt16, destinationPort: UInt16) -> [UInt8] {
        func octets(_ text: String) -> [UInt8] {
            if let v4 = IPAddressText.ipv4(text) { return v4 }
            return (IPAddressText.ipv6(text) ?? Array(repeating: 0, count: 8)).flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        }
        let addresses = octets(source) + octets(destination)
        let body =
            addresses + [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xFF)]
        let family: UInt8 = addresses.count == 8 ? 0x11 : 0x21
        return self.v2Signature + [0x21, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }
}
