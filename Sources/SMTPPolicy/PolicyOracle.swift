import SMTPProtocol

/// What the policy demands, with no I/O: which rule a HELO name or a
/// recipient breaks, what a refusal's reply is, and whether a reply that came
/// honours a rule. The reference server answers with it; expectations and
/// the capture auditor judge with it.
public struct PolicyOracle: Sendable {
    public let policy: Policy

    public init(policy: Policy) {
        self.policy = policy
    }

    /// Every HELO-name rule `name` breaks, enabled or not, in Postfix's
    /// order: deny list, address literal, bare IP, syntax, fully-qualified.
    public func brokenHeloRules(for name: String) -> [RuleID] {
        var broken: [RuleID] = []
        let lowered = name.lowercased()
        if self.policy.heloDenyList.contains(where: { $0.lowercased() == lowered }) { broken.append(.heloDenied) }
        if name.hasPrefix("[") {
            switch AddressLiteral.parse(name) {
            case .success(.general), .failure: broken.append(.heloInvalidLiteral)
            case .success: break
            }
        } else if IPAddressText.ipv4(name) != nil || (name.utf8.contains(UInt8(ascii: ":")) && IPAddressText.ipv6(name) != nil) {
            broken.append(.heloNonFQDN)
        } else if let rule = self.hostNameRule(for: name) {
            broken.append(rule)
        }
        return broken
    }

    /// The first enabled HELO-name rule `name` breaks.
    public func heloRule(for name: String) -> RuleID? {
        self.brokenHeloRules(for: name).first { self.policy.isEnabled($0) }
    }

    /// `helo.invalid` or `helo.non-fqdn` for a name that is neither a
    /// literal nor a bare address, read as the policy's `helo_syntax` says.
    private func hostNameRule(for name: String) -> RuleID? {
        switch self.policy.heloSyntax {
        case .strict:
            if !DomainName.isValid(name) || Self.hasNumericTopLabel(name) { return .heloInvalid }
            return name.utf8.contains(UInt8(ascii: ".")) ? nil : .heloNonFQDN
        case .postfix:
            let trimmed = name.count > 1 && name.hasSuffix(".") ? String(name.dropLast()) : name
            let numeric = trimmed.allSatisfy { $0 == "." || ("0"..."9").contains($0) }
            let asLetters = String(trimmed.map { $0 == "_" ? "a" : $0 })
            if numeric || !DomainName.isValid(asLetters) { return .heloInvalid }
            return trimmed.utf8.contains(UInt8(ascii: ".")) ? nil : .heloNonFQDN
        }
    }

    /// `host.123`: a top-level label of digits only names no host (RFC 3696 2).
    static func hasNumericTopLabel(_ name: String) -> Bool {
        guard name.utf8.contains(UInt8(ascii: ".")) else { return false }
        // The last label that is not empty, found without splitting the name.
        var end = name.endIndex
        while end > name.startIndex, name[name.index(before: end)] == "." { end = name.index(before: end) }
        let named = name[..<end]
        guard !named.isEmpty else { return false }
        let last = named.lastIndex(of: ".").map { named[named.index(after: $0)...] } ?? named
        return last.allSatisfy(\.isNumber)
    }

    /// A recipient as the relay check sees it: its local part, and whether
    /// its domain is one of the policy's local domains.
    public struct Recipient: Sendable, Hashable {
        public var localPart: String
        public var isLocalDomain: Bool

        /// The address as Postfix names it in replies (`postfixReading`); nil
        /// where replies name it as written.
        public let displayed: String?

        /// An RFC 5321 path; nil for `<Postmaster>`, which no rule refuses.
        public init?(_ path: EnvelopeArgument.ForwardPath, policy: Policy) {
            guard case .path(let mailPath) = path else { return nil }
            self.localPart = mailPath.mailbox.localPartValue
            if case .name(let domain) = mailPath.mailbox.domain {
                self.isLocalDomain = policy.isLocal(domain: domain)
            } else {
                self.isLocalDomain = false
            }
            self.displayed = nil
        }

        /// What is between the angle brackets, read as Postfix reads it
        /// (`address_syntax: postfix`): a source route is dropped, quotes are
        /// taken out, the domain is what follows the last `@`, and an address
        /// with no `@` gets the local domain. Returns the recipient and the
        /// address as Postfix writes it in its replies; nil when nothing is
        /// left to deliver to.
        public init?(postfixReading text: String, policy: Policy) {
            var rest = Substring(text)
            if rest.hasPrefix("@") {
                guard let colon = rest.firstIndex(of: ":") else { return nil }
                rest = rest[rest.index(after: colon)...]
            }
            var unquoted = ""
            var quoted = false
            var escaped = false
            for character in rest {
                if escaped {
                    unquoted.append(character)
                    escaped = false
                } else if quoted && character == "\\" {
                    escaped = true
                } else if character == "\"" {
                    quoted.toggle()
                } else {
                    unquoted.append(character)
                }
            }
            guard !quoted, !unquoted.isEmpty, !unquoted.contains(where: { $0 == "<" || $0 == ">" || $0.isWhitespace }) else {
                return nil
            }
            if let at = unquoted.lastIndex(of: "@") {
                let domain = unquoted[unquoted.index(after: at)...]
                guard !domain.isEmpty else { return nil }
                self.localPart = String(unquoted[..<at])
                self.isLocalDomain = policy.isLocal(domain: String(domain))
            } else {
                self.localPart = unquoted
                self.isLocalDomain = true
            }
            self.displayed = unquoted
        }
    }

    /// The rule a recipient breaks for a client that may (or may not) relay,
    /// enabled or not.
    ///
    /// Mail to a local domain with sender-specified routing in its local
    /// part (`%`, `!`, a quoted `@`) is refused as relaying to a client that
    /// may not relay, whatever the reading. For one that may, Postfix's
    /// `reject_unauth_destination` reads it as relaying (`address_syntax:
    /// postfix`); RFC 5321 2.3.11 leaves a local part to its domain, where
    /// it names a mailbox like any other (`strict`), unknown unless listed.
    public func brokenRecipientRule(for recipient: Recipient, mayRelay: Bool) -> RuleID? {
        let local = recipient.localPart
        let routed = local.contains { $0 == "%" || $0 == "!" || $0 == "@" }
        let localMailbox = recipient.isLocalDomain && (!routed || (mayRelay && self.policy.addressSyntax == .strict))
        guard localMailbox else { return mayRelay ? nil : .relayDenied }
        return self.policy.localUsers.contains(local.lowercased()) ? nil : .unknownUser
    }

    /// The enabled rule a recipient breaks.
    public func recipientRule(for recipient: Recipient, mayRelay: Bool) -> RuleID? {
        self.brokenRecipientRule(for: recipient, mayRelay: mayRelay).flatMap { self.policy.isEnabled($0) ? $0 : nil }
    }

    /// The refusal's reply with its placeholders filled in.
    public func refusal(_ rule: RuleID, _ values: [String: String] = [:]) -> SMTPReply {
        var values = values
        values["server"] = self.policy.serverName
        let reply = self.policy.rules[rule] ?? RuleCatalogue.documented[rule] ?? RuleReply(550, "5.0.0", "\(rule)")
        return reply.reply(values)
    }

    /// Whether `response` is the refusal `rule` demands, under the policy's profile; `nil` when it is.
    public func mismatch(_ response: ServerResponse?, against rule: RuleID, values: [String: String] = [:]) -> Mismatch? {
        self.mismatch(response, expected: self.refusal(rule, values))
    }

    /// How `response` differs from the reply the policy gives, under the
    /// policy's profile (exactly, or by reply class); `nil` when it matches.
    public func mismatch(_ response: ServerResponse?, expected: SMTPReply) -> Mismatch? {
        guard let response else { return .noReply }
        guard case .reply(let reply) = response else {
            if case .malformed(let malformed) = response { return .malformed(malformed) }
            return .noReply
        }
        let expectedClass = expected.code.value / 100
        switch self.policy.profile.matching {
        case .replyClass:
            guard reply.code.value / 100 == expectedClass else { return .replyClass(got: reply.code.value / 100, expected: expectedClass) }
            if let enhanced = reply.enhancedCode, enhanced.codeClass != expectedClass {
                return .enhancedClass(enhanced, expected: expectedClass)
            }
            return nil
        case .exact:
            guard reply.code == expected.code else { return .code(got: reply.code, expected: expected.code) }
            guard reply.enhancedCode == expected.enhancedCode else {
                return .enhancedCode(got: reply.enhancedCode, expected: expected.enhancedCode)
            }
            guard reply.text == expected.text else { return .text(got: reply.text, expected: expected.text) }
            return nil
        }
    }
}

/// How a reply differs from the one the policy gives.
public enum Mismatch: Sendable, Hashable, Codable {
    case noReply
    case malformed(MalformedReply)
    case replyClass(got: Int, expected: Int)
    /// The enhanced code's class is not the reply's expected class.
    case enhancedClass(EnhancedStatusCode, expected: Int)
    case code(got: ReplyCode, expected: ReplyCode)
    case enhancedCode(got: EnhancedStatusCode?, expected: EnhancedStatusCode?)
    case text(got: String, expected: String)
}
