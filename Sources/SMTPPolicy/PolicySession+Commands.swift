import SMTPProtocol

extension PolicySession {
    /// The EHLO reply: the server name and its extensions.
    public var ehloReply: SMTPReply {
        var lines = [self.policy.serverName, "PIPELINING", "SIZE \(self.policy.limits.messageSize)"]
        if self.tlsAvailability == .starttls && !self.facts.tlsActive { lines.append("STARTTLS") }
        if !self.authNeedsTLS { lines.append("AUTH " + self.mechanisms.joined(separator: " ")) }
        if self.peerMayUseXCLIENT { lines.append("XCLIENT NAME ADDR PROTO HELO LOGIN") }
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING"]
        return SMTPReply(code: .ok, lines: lines)
    }

    /// The SASL mechanisms offered: XOAUTH2 only when some user has a token.
    public var mechanisms: [String] {
        ["PLAIN", "LOGIN", "CRAM-MD5"] + (self.policy.authUsers.contains { $0.oauthToken != nil } ? ["XOAUTH2"] : [])
    }

    /// What a server requiring TLS serves before it (Postfix's command
    /// table): the rest is refused with `auth.tls-required`.
    static let beforeTLS: Set<SMTPCommand.Verb> = [.helo, .ehlo, .starttls, .noop, .quit, .xclient]

    mutating func receiveCommand(_ line: LineFramer.Line, _ command: SMTPCommand) -> Response {
        if !line.findings.isDisjoint(with: [.bareCR, .bareLF]) { return self.refuse(.bareLineBreak) }
        var command = command
        if command.verb != .auth && (line.length > self.policy.limits.commandLineLength || line.findings.contains(.truncated)) {
            // Postfix reads a command up to line_length_limit and skips the rest of the line.
            guard self.policy.addressSyntax == .postfix else { return self.refuse(.lineTooLong) }
            command = SMTPCommand(line: line.bytes.prefix(max(self.policy.limits.commandLineLength - 2, 0)))
        }
        if self.policy.addressSyntax == .postfix, Self.forbiddenByPostfix.contains(command.verbText.uppercased()) {
            // smtpd_forbidden_commands: an HTTP or proxy request, answered and cut off.
            var response = self.refuse(.forbiddenCommand)
            response.close = true
            return response
        }
        // EXPN and HELP are unknown to this server, TLS or not.
        if self.needsTLS, let verb = command.verb, !Self.beforeTLS.contains(verb), verb != .expn, verb != .help {
            // A BDAT's chunk is still read (RFC 3030), then refused.
            return verb == .bdat ? self.bdat(command, refusal: .authTLSRequired) : self.refuse(.authTLSRequired)
        }
        switch command.verb {
        case .helo, .ehlo:
            return self.hello(command)
        case .mail:
            return self.mail(command)
        case .rcpt:
            return self.rcpt(command)
        case .data:
            return self.data(command)
        case .rset:
            guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "RSET"]) }
            self.facts.transaction = nil
            self.facts.chunked = nil
            return self.accept(AcceptedReplies.ok)
        case .noop:
            return self.accept(AcceptedReplies.ok)
        case .quit:
            var response = self.accept(AcceptedReplies.bye)
            response.close = true
            return response
        case .vrfy:
            // RFC 5321 3.5.3: 252 confirms nothing, where the site allows VRFY at all.
            guard self.policy.isEnabled(.vrfyDisabled) else {
                return self.accept(AcceptedReplies.cannotVerify, waiving: .vrfyDisabled)
            }
            return self.refuse(.vrfyDisabled)
        case .auth:
            return self.auth(command)
        case .starttls:
            guard self.tlsAvailability != .none else { return self.refuse(.tlsNotAvailable) }
            guard !self.facts.tlsActive else { return self.refuse(.tlsAlreadyActive) }
            guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "STARTTLS"]) }
            var response = self.accept(AcceptedReplies.startTLS)
            response.startTLS = true
            return response
        case .xclient:
            return self.xclient(command)
        case .bdat:
            return self.bdat(command, refusal: nil)
        case .expn, .help, nil:
            return self.refuse(.unknownCommand)
        }
    }

    /// HELO and EHLO. A refused one leaves the session as it was (RFC 5321
    /// 4.1.4: "MUST stay in the same state"), so an earlier greeting still
    /// holds; an accepted one resets it.
    private mutating func hello(_ command: SMTPCommand) -> Response {
        let verb = command.verb == .ehlo ? "EHLO" : "HELO"
        let name = command.argument.trimmingSpaces()
        guard !name.isEmpty else { return self.refuse(.heloSyntax, ["verb": verb]) }
        let broken = self.heloExempt ? [] : self.oracle.brokenHeloRules(for: name)
        let rule = broken.first { self.policy.isEnabled($0) }
        if let rule, self.policy.timing(of: rule) == .atCommand { return self.refuse(rule, ["helo": name]) }
        self.facts.transaction = nil
        self.facts.chunked = nil
        if command.verb == .ehlo { self.facts.pipeliningOffered = true }
        self.facts.helo = Helo(name: name, deferred: rule)
        let reply = command.verb == .ehlo ? self.ehloReply : SMTPReply(code: .ok, lines: [self.policy.serverName])
        return self.accept(reply, deferring: rule, waiving: rule == nil ? broken.first : nil)
    }

    /// The Postfix `smtpd_forbidden_commands` default.
    static let forbiddenByPostfix: Set<String> = ["CONNECT", "GET", "POST"]

    private mutating func mail(_ command: SMTPCommand) -> Response {
        guard self.facts.helo != nil else { return self.refuse(.heloRequired) }
        guard self.facts.transaction == nil else { return self.refuse(.nestedMail) }
        guard !self.needsAuth else { return self.refuse(.authRequired) }
        switch EnvelopeArgument.parseMail(self.bracketed(command.argument, keyword: "FROM:")) {
        case .failure(.missingKeyword):
            return self.refuse(.mailSyntax)
        case .failure(.badPath):
            return self.refuse(.badSenderAddress)
        case .failure(.badParameter(let text)):
            return self.refuse(.mailBadParameter, ["param": text])
        case .success(let (path, parameters)):
            for parameter in parameters {
                switch parameter.keyword.uppercased() {
                case "SIZE":
                    guard let text = parameter.value, let size = Int(text), size >= 0 else {
                        return self.refuse(.mailBadParameter, ["param": parameter.description])
                    }
                    if size > self.policy.limits.messageSize { return self.refuse(.mailTooBig) }
                case "BODY":
                    guard let value = parameter.value?.uppercased(), value == "7BIT" || value == "8BITMIME" else {
                        return self.refuse(.mailBadParameter, ["param": parameter.description])
                    }
                case "AUTH":
                    break
                default:
                    return self.refuse(.mailBadParameter, ["param": parameter.description])
                }
            }
            self.facts.transaction = Transaction(sender: path.map { $0.mailbox.description } ?? "")
            return self.accept(AcceptedReplies.mail)
        }
    }

    /// Postfix's `strict_rfc821_envelopes = no` (its default): an address
    /// without angle brackets is read as if it had them.
    private func bracketed(_ argument: String, keyword: String) -> String {
        guard self.policy.addressSyntax == .postfix, argument.uppercased().hasPrefix(keyword) else { return argument }
        var rest = Substring(argument.dropFirst(keyword.count))
        if rest.hasPrefix(" ") { rest = rest.dropFirst() }
        guard !rest.hasPrefix("<"), !rest.isEmpty else { return argument }
        let address = rest.prefix { $0 != " " }
        return keyword + "<" + address + ">" + rest.dropFirst(address.count)
    }

    private mutating func rcpt(_ command: SMTPCommand) -> Response {
        guard self.facts.transaction != nil else { return self.refuse(.needMail) }
        // A server that took MAIL refuses here instead (RFC 4954 6: any command but AUTH, EHLO, HELO, NOOP, RSET, QUIT).
        guard !self.needsAuth else { return self.refuse(.authRequired) }
        let argument = self.bracketed(command.argument, keyword: "TO:")
        let parsed = EnvelopeArgument.parseRcpt(argument)
        if case .failure(.missingKeyword) = parsed { return self.refuse(.rcptSyntax) }
        let written = Self.addressText(argument)
        // What the relay check sees (nil for `<Postmaster>`, which every
        // server takes), and the address as replies name it.
        let recipient: PolicyOracle.Recipient?
        var address = written
        switch self.policy.addressSyntax {
        case .postfix:
            guard let reading = PolicyOracle.Recipient(postfixReading: written, policy: self.policy) else {
                return self.refuse(.badRecipientAddress)
            }
            recipient = reading
            address = reading.displayed ?? written
        case .strict:
            guard case .success(let (path, _)) = parsed else { return self.refuse(.badRecipientAddress) }
            recipient = PolicyOracle.Recipient(path, policy: self.policy)
        }
        if let helo = self.facts.helo, let deferred = helo.deferred, !self.heloExempt {
            var response = Response()
            response.replies.append(Reply(reply: self.oracle.refusal(deferred, ["helo": helo.name]), rule: deferred))
            return response
        }
        if (self.facts.transaction?.recipients.count ?? 0) >= self.policy.limits.maxRecipients {
            return self.refuse(.tooManyRecipients)
        }
        let mayRelay = self.facts.clientIsTrusted || self.facts.authenticatedUser != nil
        var waived: RuleID?
        if let recipient, let rule = self.oracle.brokenRecipientRule(for: recipient, mayRelay: mayRelay) {
            guard !self.policy.isEnabled(rule) else { return self.refuse(rule, ["rcpt": address]) }
            waived = rule
        }
        self.facts.transaction?.recipients.append(address)
        return self.accept(AcceptedReplies.rcpt, waiving: waived)
    }

    private mutating func data(_ command: SMTPCommand) -> Response {
        guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "DATA"]) }
        guard let transaction = self.facts.transaction else { return self.refuse(.needRcpt) }
        guard !transaction.recipients.isEmpty else { return self.refuse(.noRecipients) }
        if self.facts.sentUnasked && self.policy.isEnabled(.unauthPipelining) { return self.refuse(.unauthPipelining) }
        self.state = .message(octets: 0)
        return self.accept(AcceptedReplies.data, waiving: self.facts.sentUnasked ? .unauthPipelining : nil)
    }

    /// The recipient as written between the angle brackets, for `{rcpt}`.
    public static func addressText(_ argument: String) -> String {
        guard let open = argument.firstIndex(of: "<") else { return argument }
        let rest = argument[argument.index(after: open)...]
        guard let close = rest.lastIndex(of: ">") else { return String(rest) }
        return String(rest[..<close])
    }
}
