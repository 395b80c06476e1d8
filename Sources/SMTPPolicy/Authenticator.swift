import SMTPProtocol

/// What a client proved in a SASL exchange.
public enum Credential: Sendable, Hashable {
    case password(user: String, password: String)
    /// CRAM-MD5 (RFC 2195): the hex digest the client made of the challenge.
    case cramMD5(user: String, digest: String, challenge: [UInt8])
    /// XOAUTH2: an OAuth 2.0 bearer token.
    case bearer(user: String, token: String)

    public var user: String {
        switch self {
        case .password(let user, _), .cramMD5(let user, _, _), .bearer(let user, _): user
        }
    }
}

/// Decides whether credentials are good. The policy's own AUTH users by
/// default; a server may put in another (the deliberate fault that accepts
/// any password is one).
public struct Authenticator: Sendable {
    private let check: @Sendable (Credential) -> Bool

    public init(_ check: @escaping @Sendable (Credential) -> Bool) {
        self.check = check
    }

    public func verify(_ credential: Credential) -> Bool { self.check(credential) }

    /// Checks against the policy's AUTH users.
    public static func policy(_ policy: Policy) -> Authenticator {
        let users = policy.authUsers
        return Authenticator { credential in
            guard let user = users.first(where: { $0.name == credential.user }) else { return false }
            switch credential {
            case .password(_, let password):
                return user.password != nil && user.password == password
            case .cramMD5(_, let digest, let challenge):
                guard let password = user.password else { return false }
                return SASL.cramMD5Digest(password: password, challenge: challenge) == digest.lowercased()
            case .bearer(_, let token):
                return user.oauthToken != nil && user.oauthToken == token
            }
        }
    }
}
