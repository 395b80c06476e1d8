import SMTPProtocol

/// Following a recorded server: after the session answered a command as
/// the policy would, ``follow(_:)`` moves it to where the real server's
/// answer left the real session, so that the next command is judged from
/// there. Only state the reply decides moves.
extension PolicySession {
    public mutating func follow(_ actual: SMTPReply) {
        guard let before = self.beforeLast else { return }
        self.beforeLast = nil
        let serverAccepted = actual.code.isPositive
        switch (before.accepted, serverAccepted) {
        case (true, false):
            // Refused where the policy accepts: a refused command changes
            // nothing (RFC 5321 4.1.4 says so of HELO and EHLO: the session
            // "MUST stay in the same state"), so an earlier greeting stands.
            self.state = before.state
            self.facts = before.facts
            self.facts.errors += 1
        case (false, true):
            self.facts.errors = before.facts.errors
            self.assume(before.command, accepted: actual)
        case (true, true):
            if before.command.verb == .ehlo {
                // What the real server offered decides whether the client was told of PIPELINING.
                self.facts.pipeliningOffered = before.facts.pipeliningOffered || actual.offers("PIPELINING")
            }
        case (false, false):
            break
        }
    }

    /// The effect of a command the real server accepted where the policy refuses it.
    private mutating func assume(_ command: SMTPCommand, accepted actual: SMTPReply) {
        switch command.verb {
        case .helo, .ehlo:
            self.state = .command
            self.facts.helo = Helo(name: command.argument.trimmingSpaces(), deferred: nil)
            self.facts.transaction = nil
            self.facts.chunked = nil
            if command.verb == .ehlo { self.facts.pipeliningOffered = self.facts.pipeliningOffered || actual.offers("PIPELINING") }
        case .mail:
            self.facts.transaction = Transaction(sender: Self.addressText(String(command.argument.dropFirst(5))))
        case .rcpt:
            if self.facts.transaction == nil { self.facts.transaction = Transaction(sender: "") }
            self.facts.transaction?.recipients.append(Self.addressText(command.argument))
        case .data:
            guard actual.code == .startMailInput else { return }
            if self.facts.transaction == nil { self.facts.transaction = Transaction(sender: "", recipients: [""]) }
            self.state = .message(octets: 0)
        case .bdat:
            self.state = .command
            let last = command.argument.uppercased().hasSuffix("LAST")
            if self.facts.transaction == nil { self.facts.transaction = Transaction(sender: "", recipients: [""]) }
            if last {
                self.facts.transaction = nil
                self.facts.chunked = nil
            }
        case .rset:
            self.facts.transaction = nil
            self.facts.chunked = nil
        case .auth:
            if actual.code == .authContinue { self.state = .sasl(.plain) }
            if actual.code == .authenticationSucceeded && self.facts.authenticatedUser == nil {
                self.facts.authenticatedUser = "(as recorded)"
            }
        case .starttls, .xclient, .vrfy, .expn, .noop, .help, .quit, nil:
            break
        }
    }

    /// The recorded outcome of an AUTH exchange whose credentials are not known.
    public mutating func followAuthentication(succeeded: Bool) {
        self.state = .command
        self.beforeLast = nil
        if succeeded && self.facts.authenticatedUser == nil { self.facts.authenticatedUser = "(as recorded)" }
    }
}
