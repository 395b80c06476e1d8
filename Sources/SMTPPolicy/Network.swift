import SMTPProtocol

/// An IPv4 or IPv6 network in CIDR form, `127.0.0.2/32`, `2001:db8::/32`.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: [UInt8]
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPNetwork.addressBytes(String(parts[0])) else { return nil }
        let maximum = address.count * 8
        var prefix = maximum
        if parts.count == 2 {
            guard parts[1].allSatisfy({ $0 >= "0" && $0 <= "9" }), let value = Int(parts[1]), (0...maximum).contains(value) else {
                return nil
            }
            prefix = value
        }
        self.address = address
        self.prefixLength = prefix
    }

    /// The octets of a textual address (4 for IPv4, 16 for IPv6). An
    /// IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is returned as IPv4.
    public static func addressBytes(_ text: String) -> [UInt8]? {
        if let v4 = IPAddressText.ipv4(text) { return v4 }
        let unscoped = text.split(separator: "%", maxSplits: 1).first.map(String.init) ?? text
        guard let groups = IPAddressText.ipv6(unscoped) else { return nil }
        let bytes = groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        if bytes.prefix(10).allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes.suffix(4)) }
        return bytes
    }

    public func contains(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == self.address.count else { return false }
        var remaining = self.prefixLength
        for (mine, theirs) in zip(self.address, bytes) {
            if remaining <= 0 { return true }
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if mine & mask != theirs & mask { return false }
            remaining -= 8
        }
        return true
    }

    public func contains(address text: String) -> Bool {
        IPNetwork.addressBytes(text).map(self.contains) ?? false
    }

    /// The network's first address as text (for binding a source address in it).
    public var firstAddressText: String {
        if self.address.count == 4 { return self.address.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(self.address[$0]) << 8 | UInt16(self.address[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }

    public var description: String { "\(self.firstAddressText)/\(self.prefixLength)" }
}
