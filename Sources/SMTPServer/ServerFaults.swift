import SMTPPolicy
import SMTPProtocol

/// Deliberate defects of the reference server, to prove the battery can
/// fail. They belong to the server, never to the policy: the judge always
/// runs the policy as written.
public struct ServerFaults: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Any client may relay.
    public static let openRelay = ServerFaults(rawValue: 1 << 0)
    /// HELO/EHLO names are not checked.
    public static let noHeloChecks = ServerFaults(rawValue: 1 << 1)
    /// AUTH accepts any password of a known user.
    public static let acceptAnyPassword = ServerFaults(rawValue: 1 << 2)
    /// Commands pipelined behind STARTTLS in plaintext are answered inside
    /// TLS (the CVE-2011-0411 class of bug).
    public static let starttlsInjection = ServerFaults(rawValue: 1 << 3)
    /// A bare LF or CR ends a line in message data, so `\n.\n` ends the
    /// message; BDAT chunks are read as DATA lines (SMTP smuggling,
    /// CVE-2023-51764 and its kin).
    public static let smuggling = ServerFaults(rawValue: 1 << 4)
    /// No command line, recipient or size limits; VRFY and EXPN answer;
    /// commands after QUIT are answered.
    public static let laxProtocol = ServerFaults(rawValue: 1 << 5)
    /// XCLIENT and PROXY headers are accepted but the policy judges the
    /// proxy's own address, not the client it names.
    public static let ignoreClientIdentity = ServerFaults(rawValue: 1 << 6)

    /// Message data ends at LF.LF, LF.CRLF or CRLF.LF as soon as it is read,
    /// and what else came in the same read is dropped: the smuggled commands
    /// pipelined behind the false end are never answered, so only a client
    /// that pauses after it sees the early reply (a real MTA seen so).
    public static let smugglingDiscard = ServerFaults(rawValue: 1 << 7)

    /// Each fault by its command-line name, with what it breaks.
    public static let catalogue: [(name: String, fault: ServerFaults, breaks: String)] = [
        ("open-relay", .openRelay, "relay: any client may relay"),
        ("no-helo-checks", .noHeloChecks, "helo: HELO/EHLO names are not checked"),
        ("accept-any-password", .acceptAnyPassword, "auth: any password of a known user is taken"),
        ("starttls-injection", .starttlsInjection, "tls: plaintext pipelined behind STARTTLS is answered inside TLS"),
        ("smuggling", .smuggling, "smuggling: a bare CR or LF ends a line in message data"),
        (
            "smuggling-discard", .smugglingDiscard,
            "smuggling: LF.LF, LF.CRLF and CRLF.LF end message data at once, and the rest of that read is dropped"
        ),
        ("lax-protocol", .laxProtocol, "discipline: no limits, VRFY/EXPN answer, talk after QUIT"),
        ("ignore-client-identity", .ignoreClientIdentity, "identity matrix: the proxy is judged, not the client it names"),
    ]

    public static var byName: [String: ServerFaults] {
        Dictionary(uniqueKeysWithValues: self.catalogue.map { ($0.name, $0.fault) })
    }

    /// The names of the faults set.
    public var names: [String] { Self.catalogue.filter { self.contains($0.fault) }.map(\.name) }

    /// The policy the faulty server runs in place of the real one.
    public func adjust(_ policy: Policy) -> Policy {
        var policy = policy
        if self.contains(.openRelay) { policy.rules[.relayDenied] = nil }
        if self.contains(.noHeloChecks) { for rule in RuleID.heloNameRules { policy.rules[rule] = nil } }
        if self.contains(.laxProtocol) {
            policy.limits.commandLineLength = Int.max
            policy.limits.maxRecipients = Int.max
            policy.limits.messageSize = Int.max
            policy.rules[.unauthPipelining] = nil
        }
        return policy
    }

    /// The authenticator the faulty server checks credentials with.
    public func authenticator(for policy: Policy) -> Authenticator {
        guard self.contains(.acceptAnyPassword) else { return .policy(policy) }
        let users = Set(policy.authUsers.map(\.name))
        return Authenticator { users.contains($0.user) }
    }
}
