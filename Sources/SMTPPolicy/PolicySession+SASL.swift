import SMTPProtocol

/// AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195) and XOAUTH2.
/// Credentials are checked by the configuration's ``Authenticator``.
extension PolicySession {
    mutating func auth(_ command: SMTPCommand) -> Response {
        guard self.facts.helo != nil else { return self.refuse(.heloRequired) }
        guard !self.authNeedsTLS else { return self.refuse(.authTLSRequired) }
        guard self.facts.authenticatedUser == nil else { return self.refuse(.authAlready) }
        guard self.facts.transaction == nil else { return self.refuse(.authInTransaction) }
        let parts = command.argument.split(separator: " ", omittingEmptySubsequences: true)
        guard let mechanism = parts.first?.uppercased(), parts.count <= 2 else { return self.refuse(.authMechanism) }
        let initial = parts.count == 2 ? String(parts[1]) : nil
        switch mechanism {
        case "PLAIN":
            guard let initial else { return self.prompt(.plain, "") }
            return self.finishPlain(initial)
        case "LOGIN":
            guard let initial else { return self.prompt(.loginUser, SASL.base64("Username:".utf8)) }
            return self.loginUser(initial)
        case "XOAUTH2" where self.mechanisms.contains("XOAUTH2"):
            guard let initial else { return self.refuse(.authBadEncoding) }
            return self.finishXOAUTH2(initial)
        case "CRAM-MD5":
            guard initial == nil else { return self.refuse(.authBadEncoding) }
            let number = self.facts.messages + self.facts.errors + 1_000
            let challenge = Array("<\(self.configuration.queueIDs.id(number)).\(number)@\(self.policy.serverName)>".utf8)
            return self.prompt(.cramMD5(challenge: challenge), SASL.base64(challenge))
        default:
            return self.refuse(.authMechanism)
        }
    }

    private mutating func prompt(_ step: SASLStep, _ text: String) -> Response {
        self.state = .sasl(step)
        return self.accept(SMTPReply(code: .authContinue, lines: [text]))
    }

    /// One client line inside a SASL exchange (the state is already back to commands).
    mutating func receiveSASL(_ line: LineFramer.Line, step: SASLStep) -> Response {
        let text = String(decoding: line.bytes, as: UTF8.self)
        if text == "*" { return self.refuse(.authCancelled) }
        switch step {
        case .plain:
            return self.finishPlain(text)
        case .loginUser:
            return self.loginUser(text)
        case .loginPassword(let user):
            guard let password = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
            return self.finish(.password(user: user, password: String(decoding: password, as: UTF8.self)))
        case .cramMD5(let challenge):
            guard let decoded = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
            let parts = decoded.split(separator: 0x20, maxSplits: 1)
            guard parts.count == 2 else { return self.refuse(.authFailed) }
            let user = String(decoding: parts[0], as: UTF8.self)
            return self.finish(.cramMD5(user: user, digest: String(decoding: parts[1], as: UTF8.self), challenge: challenge))
        case .xoauth2Error:
            return self.refuse(.authFailed)
        }
    }

    private mutating func loginUser(_ text: String) -> Response {
        guard let user = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        return self.prompt(.loginPassword(user: String(decoding: user, as: UTF8.self)), SASL.base64("Password:".utf8))
    }

    private mutating func finishPlain(_ text: String) -> Response {
        guard let bytes = text == "=" ? [] : SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        guard let credentials = SASL.parsePlain(bytes) else { return self.refuse(.authFailed) }
        return self.finish(.password(user: credentials.user, password: credentials.password))
    }

    /// `user=U ^A auth=Bearer T ^A ^A`; a refused token gets a 334 error
    /// description first, then 535 after the client's empty line.
    private mutating func finishXOAUTH2(_ text: String) -> Response {
        guard let bytes = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        var user: String?
        var token: String?
        for field in bytes.split(separator: 0x01) {
            let text = String(decoding: field, as: UTF8.self)
            if text.hasPrefix("user=") { user = String(text.dropFirst(5)) }
            if text.hasPrefix("auth=Bearer ") { token = String(text.dropFirst(12)) }
        }
        guard let user, let token else { return self.refuse(.authFailed) }
        if self.configuration.authenticator.verify(.bearer(user: user, token: token)) {
            self.facts.authenticatedUser = user
            return self.accept(AcceptedReplies.authenticated)
        }
        let error = SASL.base64(Array("{\"status\":\"401\",\"schemes\":\"Bearer\"}".utf8))
        return self.prompt(.xoauth2Error, error)
    }

    private mutating func finish(_ credential: Credential) -> Response {
        guard self.configuration.authenticator.verify(credential) else { return self.refuse(.authFailed) }
        self.facts.authenticatedUser = credential.user
        return self.accept(AcceptedReplies.authenticated)
    }
}
