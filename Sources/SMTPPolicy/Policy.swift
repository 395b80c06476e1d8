import SMTPProtocol

/// A site's policy: its facts (names, domains, users, networks) and, per
/// rule, the reply and timing it demands. One value answers for the
/// reference server, the expectations and the capture auditor alike.
public struct Policy: Sendable {
    /// Where the policy came from: a built-in name or a file path.
    public var source: String
    public var serverName: String
    public var localDomains: [String]
    public var localUsers: [String]
    public var trustedNetworks: [IPNetwork]
    /// Hosts that may speak for a client with XCLIENT (Postfix `smtpd_authorized_xclient_hosts`).
    public var xclientHosts: [IPNetwork] = []
    /// Hosts that may put a PROXY protocol header in front of a session (a load balancer).
    public var proxyHosts: [IPNetwork] = []
    public var heloDenyList: [String]
    public var authUsers: [AuthUser]
    public var profile: Profile
    /// When HELO-name refusals must come.
    public var heloTiming: RuleTiming
    /// Nothing but EHLO, HELO, STARTTLS, NOOP, QUIT and XCLIENT before
    /// STARTTLS (a submission service; Postfix `smtpd_tls_security_level =
    /// encrypt`): the rest gets `auth.tls-required`, unknown commands
    /// `cmd.unknown`. AUTH is not advertised before TLS.
    public var tlsRequired = false
    /// AUTH only after STARTTLS, MAIL in plain text too (an MX with Postfix's
    /// `smtpd_tls_auth_only = yes`; OpenSMTPD by default). AUTH is not
    /// advertised before TLS.
    public var authRequiresTLS = false
    /// MAIL and RCPT only after AUTH, TLS or not (a submission service, RFC
    /// 6409 4.3): until then they get `auth.required`, 530 (RFC 4954 6).
    public var authRequired = false
    /// Clients whose HELO names are not checked (Postfix
    /// `smtpd_helo_restrictions = permit_mynetworks, permit_sasl_authenticated,
    /// ...`; Sendmail's default).
    public var heloExempt: Set<HeloExemption> = []
    /// Whether a client told of PIPELINING before STARTTLS still counts as
    /// told after it. RFC 3207 4.2 resets the session; Postfix remembers.
    public var pipeliningAfterTLS: PipeliningMemory = .forgotten
    /// The limits the policy states. The documented and postfix profiles
    /// state all of the default site's; under portable only those a file
    /// gives are judged.
    public var statedLimits: Set<Limits.Name> = Set(Limits.Name.allCases)
    public var limits: Limits
    /// The reply of every enabled rule (catalogue, then profile, then file overrides).
    public var rules: [RuleID: RuleReply]
    /// A HELO-name rule's own timing, where the policy file gives one.
    public var ruleTimings: [RuleID: RuleTiming] = [:]
    /// Which HELO names count as valid host names.
    public var heloSyntax: HeloSyntax = .strict

    /// How RCPT addresses are read.
    public var addressSyntax: AddressSyntax = .strict

    public enum HeloExemption: String, Sendable, Hashable, CaseIterable {
        case trusted
        case authenticated
    }

    public enum PipeliningMemory: String, Sendable, Hashable, CaseIterable {
        /// RFC 3207 4.2: after STARTTLS the client was told nothing.
        case forgotten
        /// Postfix: told once in the connection counts for the rest of it.
        case remembered
    }

    /// How a recipient between the angle brackets is read.
    public enum AddressSyntax: String, Sendable, Hashable, CaseIterable {
        /// RFC 5321 4.1.2 `Path`: anything else is `rcpt.bad-address`.
        case strict
        /// As Postfix reads it: a source route dropped, quotes taken out,
        /// the domain after the last `@`, none meaning the local domain; the
        /// reply names the address in that form.
        case postfix
    }

    /// How `helo.invalid` and `helo.non-fqdn` read a name.
    public enum HeloSyntax: String, Sendable, Hashable, CaseIterable {
        /// RFC 5321 4.1.2 `Domain`: letters, digits and inner hyphens, no
        /// trailing dot, and no all-numeric top-level label (RFC 3696 2).
        case strict
        /// As Postfix's `reject_invalid_helo_hostname` reads it: one trailing
        /// dot is dropped, `_` counts as a letter, a numeric top-level label
        /// is allowed, and a name of digits and dots only is invalid.
        case postfix
    }

    public struct AuthUser: Sendable, Hashable {
        public var name: String
        /// `nil` when the variable it comes from is unset.
        public var password: String?
        /// Where the password comes from, for messages (`$SMTPCHECK_PASSWORD`).
        public var passwordSource: String
        /// An OAuth 2.0 bearer token the server accepts through XOAUTH2.
        public var oauthToken: String?
        /// The sender address this user's mail goes out from, where the
        /// policy names one (`address:`).
        public var address: String?

        public init(name: String, password: String?, passwordSource: String, oauthToken: String? = nil, address: String? = nil) {
            self.name = name
            self.password = password
            self.passwordSource = passwordSource
            self.oauthToken = oauthToken
            self.address = address
        }
    }

    public struct Limits: Sendable, Hashable {
        /// Error replies after which the server says 421 and closes (Postfix `smtpd_hard_error_limit`).
        public var errorLimit = 20
        public var maxRecipients = 100
        /// Octets; advertised as SIZE.
        public var messageSize = 10_240_000
        /// Seconds without a command before 421 and close.
        public var idleTimeout = 300
        /// RFC 5321 4.5.3.1.4: 512 octets with CRLF.
        public var commandLineLength = 512
        /// Milliseconds the greeting waits, to catch clients that talk first
        /// (Postfix postscreen's greet wait); 0 sends it at once.
        public var greetPauseMilliseconds = 0
        /// Seconds a client may take over one line once it has begun (a
        /// command, or a line of message data); then 421 and close, as
        /// Postfix's `smtpd_timeout` with `smtpd_per_record_deadline`. A
        /// client sending a byte a second cannot hold the session.
        public var commandTimeout = 60
        /// Connections one client address may hold at once (Postfix
        /// `smtpd_client_connection_count_limit`); 0 for no limit. Clients in
        /// the trusted networks are exempt, as Postfix exempts `$mynetworks`.
        public var connectionsPerClient = 50

        public init() {}

        /// The limits a policy file can state, by their names there.
        public enum Name: String, Sendable, Hashable, Codable, CaseIterable {
            case errorLimit = "error_limit"
            case maxRecipients = "max_recipients"
            case messageSize = "message_size"
            case idleTimeout = "idle_timeout"
            case commandLineLength = "command_line_length"
            case greetPause = "greet_pause_ms"
            case commandTimeout = "command_timeout"
            case connectionsPerClient = "connections_per_client"
        }
    }

    /// The limit a rule enforces, if one does.
    public static func limit(of rule: RuleID) -> Limits.Name? {
        switch rule {
        case .tooManyErrors: .errorLimit
        case .tooManyRecipients: .maxRecipients
        case .mailTooBig, .messageTooBig: .messageSize
        case .idleTimeout: .idleTimeout
        case .lineTooLong: .commandLineLength
        default: nil
        }
    }

    /// docs/policy.md's "default site".
    public static func defaultSite(profile: Profile = .documented, environment: [String: String] = [:]) -> Policy {
        var policy = Policy(
            source: profile.rawValue,
            serverName: "mx.example.net",
            localDomains: ["example.net"],
            localUsers: ["postmaster", "alice"],
            trustedNetworks: IPNetwork("127.0.0.2/32").map { [$0] } ?? [],
            heloDenyList: ["localhost", "mx.example.net"],
            authUsers: [AuthUser(name: "alice", password: environment["SMTPCHECK_PASSWORD"], passwordSource: "$SMTPCHECK_PASSWORD")],
            profile: profile,
            heloTiming: profile.defaultHeloTiming,
            limits: Limits(),
            rules: profile.rules
        )
        policy.rules[.heloUnknown] = nil  // needs DNS; the default site does no lookups
        // A proxy on loopback for the identity matrix: 127.0.0.3 may use XCLIENT,
        // 127.0.0.4 may send PROXY headers. Neither is a trusted network.
        policy.xclientHosts = IPNetwork("127.0.0.3/32").map { [$0] } ?? []
        policy.proxyHosts = IPNetwork("127.0.0.4/32").map { [$0] } ?? []
        policy.rules[.authTLSRequired] = nil  // the default site does not require TLS
        policy.rules[.authRequired] = nil  // nor AUTH before mail
        // A server the portable profile judges has limits of its own: only
        // those a policy file states are judged.
        if profile == .portable { policy.statedLimits = [] }
        return policy
    }

    public func isEnabled(_ rule: RuleID) -> Bool { self.rules[rule] != nil }

    /// The timing a refusal under `rule` may take.
    public func timing(of rule: RuleID) -> RuleTiming {
        RuleID.heloNameRules.contains(rule) ? (self.ruleTimings[rule] ?? self.heloTiming) : .atCommand
    }

    /// The sender address of the AUTH user who logs in as `login`: the
    /// address the policy names for that user, else the login itself where it
    /// is an address (many servers' logins are `user@domain`), else the login
    /// at the first local domain.
    public func senderAddress(forLogin login: String) -> String {
        if let address = self.authUsers.first(where: { $0.name == login })?.address { return address }
        if login.contains("@") { return login }
        return "\(login)@\(self.localDomains.first ?? "localhost")"
    }

    public func isLocal(domain: String) -> Bool {
        let lowered = domain.lowercased()
        return self.localDomains.contains { $0.lowercased() == lowered }
    }

    public func isTrusted(address: String) -> Bool {
        self.trustedNetworks.contains(address: address)
    }

    /// Sets the password of every AUTH user that has none (the in-process run
    /// makes one up when the environment gives none).
    public mutating func supplyMissingPasswords(_ password: String) {
        for index in self.authUsers.indices where self.authUsers[index].password == nil {
            self.authUsers[index].password = password
        }
    }
}

/// How strictly replies are matched, and which replies a stock server gives.
public enum Profile: String, Sendable, Hashable, Codable, CaseIterable {
    /// The exact code, enhanced code and text of docs/policy.md.
    case documented
    /// Stock Postfix: the documented wording, relay refused with 454 4.7.1 and
    /// unknown commands with 502.
    case postfix
    /// Any server that keeps the policy: reply class and timing; an enhanced
    /// code is checked only where the server sends one.
    case portable

    public enum Matching: Sendable, Hashable {
        case exact
        case replyClass
    }

    public var matching: Matching { self == .portable ? .replyClass : .exact }

    public var defaultHeloTiming: RuleTiming { self == .portable ? .noLaterThanRCPT : .atCommand }

    public var rules: [RuleID: RuleReply] {
        var rules = RuleCatalogue.documented
        if self == .postfix {
            rules[.relayDenied] = RuleReply(454, "4.7.1", "<{rcpt}>: Relay access denied")
            rules[.unknownCommand] = RuleReply(502, "5.5.2", "Error: command not recognized")
        }
        return rules
    }
}

/// Secrets the harness makes up where the environment gives none: an AUTH
/// password or an OAuth token for the in-process server.
public enum Secrets {
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
