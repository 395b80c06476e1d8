import SMTPPolicy
import SMTPProtocol

/// `HOST[:PORT]`: an IPv4 address, `[IPv6]:port` or a bare IPv6 address, or a name.
public struct TargetAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `allowsPortZero`: for listening, where port 0 picks a free port.
    public init?(_ text: String, defaultPort: Int = 25, allowsPortZero: Bool = false) {
        let ports = allowsPortZero ? 0...65535 : 1...65535
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            var port = defaultPort
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let value = Int(rest.dropFirst()), ports.contains(value) else { return nil }
                port = value
            }
            guard IPAddressText.ipv6(host) != nil else { return nil }
            self.init(host: host, port: port)
            return
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 {
            guard IPAddressText.ipv6(text) != nil else { return nil }
            self.init(host: text, port: defaultPort)
            return
        }
        var host = text
        var port = defaultPort
        if colons == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let value = Int(text[text.index(after: colon)...]), ports.contains(value) else { return nil }
            port = value
        }
        guard !host.isEmpty, IPAddressText.ipv4(host) != nil || DomainName.isValid(host) else { return nil }
        self.init(host: host, port: port)
    }

    /// An IPv6 address (not a name).
    public var isIPv6: Bool { IPAddressText.ipv6(self.host) != nil && IPAddressText.ipv4(self.host) == nil }

    /// On this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`).
    public var isLoopback: Bool {
        self.host == "localhost" || IPNetwork("127.0.0.0/8")?.contains(address: self.host) == true
            || IPNetwork.addressBytes(self.host) == IPNetwork.addressBytes("::1")
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}
