import SMTPPolicy
import SMTPProtocol

/// What a run lets a scenario use: the credentials of its AUTH user.
public struct Credentials: Sendable, Hashable {
    public var user: String
    public var password: String
    /// An OAuth 2.0 bearer token for XOAUTH2.
    public var oauthToken: String?

    public init(user: String, password: String, oauthToken: String? = nil) {
        self.user = user
        self.password = password
        self.oauthToken = oauthToken
    }
}

extension Policy {
    /// This policy with the run's credentials as its one AUTH user; the
    /// sender address the policy names for that login, if any, stays.
    public func using(_ credentials: Credentials) -> Policy {
        var policy = self
        policy.authUsers = [
            Policy.AuthUser(
                name: credentials.user, password: credentials.password, passwordSource: "the run's credentials",
                oauthToken: credentials.oauthToken, address: self.authUsers.first { $0.name == credentials.user }?.address)
        ]
        return policy
    }
}

/// The values of a scenario's `{placeholders}`, and their expansion in
/// command lines and in octets (raw steps, BDAT chunks, bodies) alike.
public struct Placeholders: Sendable, Hashable {
    public var values: [String: String]

    /// Every placeholder a scenario may use.
    public static let names: Set<String> = [
        "local_domain", "server_name", "server_ip", "local_user", "user", "sender", "error_limit",
    ]

    /// `serverIP`: the target's address as an address literal's content
    /// (`127.0.0.1`, `IPv6:::1`).
    public init(policy: Policy, credentials: Credentials?, serverIP: String) {
        let user = credentials?.user ?? policy.authUsers.first?.name ?? "user"
        self.values = [
            "local_domain": policy.localDomains.first ?? "localhost",
            "server_name": policy.serverName,
            "local_user": policy.localUsers.first { $0 != "postmaster" } ?? "postmaster",
            "user": user,
            "sender": policy.senderAddress(forLogin: user),
            "error_limit": String(policy.limits.errorLimit),
            "server_ip": serverIP,
        ]
    }

    /// `ip` of `ip:port` or `[ipv6]:port` as an address literal's content.
    public static func literal(of endpoint: String?) -> String {
        guard let ip = Endpoints.ip(of: endpoint) else { return "127.0.0.1" }
        return ip.contains(":") ? "IPv6:\(ip)" : ip
    }

    public func expand(_ template: String) -> String { Placeholder.expand(template, self.values) }

    /// Expands placeholders in octets, leaving every other octet as it is.
    public func expand(_ bytes: [UInt8]) -> [UInt8] { Placeholder.expand(bytes, self.values) }
}

/// `ip:port` text, as transcripts name the two ends.
public enum Endpoints {
    /// The IP address of `ip:port` or `[ipv6]:port`; `nil` for anything else.
    public static func ip(of endpoint: String?) -> String? {
        guard let endpoint else { return nil }
        let host: String
        if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
            host = String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
        } else {
            host = endpoint.split(separator: ":").first.map(String.init) ?? ""
        }
        return IPAddressText.ipv4(host) != nil || IPAddressText.ipv6(host) != nil ? host : nil
    }
}
