import SMTPPolicy
import SMTPProtocol

/// AUTH as a scenario's client does it: PLAIN (with and without an initial
/// response), LOGIN, CRAM-MD5 and XOAUTH2, with the run's credentials or a
/// wrong password, or cancelled at the first prompt. Responses are recorded
/// redacted.
extension Executor {
    /// The step probes whether AUTH is refused before TLS: it tests the
    /// refusal of AUTH itself, not the credentials.
    var probesAuthBeforeTLS: Bool {
        guard let step = self.currentStep, step < self.scenario.steps.count else { return false }
        return self.scenario.steps[step].expectation == .rule(.authTLSRequired)
    }

    /// Why AUTH cannot be tried here, if it cannot: the server offers no
    /// AUTH (a pass would rest on a refusal of AUTH itself, not on the
    /// behaviour the case is about), or not this mechanism.
    func authUnavailable(_ mechanism: String?) -> SkipReason? {
        guard let ehlo = self.lastEHLOReply, !self.probesAuthBeforeTLS else { return nil }
        guard let offered = ehlo.parameters(of: "AUTH") else {
            return .serverLacks(!self.encrypted && ehlo.offers("STARTTLS") ? .authBeforeTLS : .auth)
        }
        if let mechanism, !offered.contains(mechanism.uppercased()) {
            return .serverLacks(.authMechanism(mechanism.uppercased(), offered: offered))
        }
        return nil
    }

    mutating func authenticate(_ auth: AuthStep, on peer: some SessionPeer) async {
        let probe = self.probesAuthBeforeTLS
        if let reason = self.authUnavailable(auth.mechanism.rawValue) { return self.stop(unsupported: reason) }
        // The run's password goes out in plain text only where the run asked
        // for no TLS; a probe of AUTH before TLS never needs it.
        if !probe && !self.encrypted && !self.plaintextSecrets { return self.stop(unsupported: .needs(.startTLS)) }
        let user = self.credentials?.user ?? self.policy.authUsers.first?.name ?? "user"
        let configured = probe ? "made-up-\(user)-password" : (self.credentials?.password ?? self.policy.authUsers.first?.password ?? "")
        let password = auth.password == .configured ? configured : configured + "-wrong"
        let verb = "AUTH \(auth.mechanism.rawValue)"
        let mechanism = auth.mechanism.rawValue
        if auth.cancel {
            await self.command(verb, step: self.currentStep, on: peer)
            if !self.stopped && self.transcript.exchanges.last?.reply?.code == .authContinue {
                await self.secret(Array("*".utf8), mechanism: mechanism, on: peer)
            }
            return
        }
        var responses: [String]
        switch auth.mechanism {
        case .plain: responses = [SASL.plainResponse(user: user, password: password)]
        case .login: responses = [SASL.base64(user.utf8), SASL.base64(password.utf8)]
        case .cramMD5: responses = []
        case .xoauth2:
            guard let token = self.credentials?.oauthToken else { return self.stop(unsupported: .needs(.bearerToken)) }
            responses = [SASL.xoauth2Response(user: user, token: auth.password == .configured ? token : token + "-wrong")]
        }
        if auth.initialResponse, !responses.isEmpty {
            let line = Array("\(verb) \(responses.removeFirst())".utf8)
            guard await self.write(line + [0x0D, 0x0A], to: peer) else { return }
            let unit = ClientUnit.auth(mechanism: mechanism, line, keep: self.keepSecrets)
            await self.receive(from: peer, role: .answer, sent: unit, sentAt: self.elapsed)
        } else {
            await self.command(verb, step: self.currentStep, on: peer)
        }
        if auth.mechanism == .cramMD5, !self.stopped, let challengeReply = self.transcript.exchanges.last?.reply,
            challengeReply.code == .authContinue, let challenge = SASL.decodeBase64(challengeReply.lines.first ?? "")
        {
            responses = [SASL.cramMD5Response(user: user, password: password, challenge: challenge)]
        }
        for response in responses {
            guard !self.stopped, self.transcript.exchanges.last?.reply?.code == .authContinue else { return }
            await self.secret(Array(response.utf8), mechanism: mechanism, on: peer)
        }
        // XOAUTH2 failure: the server sends a 334 error description; an empty line ends the exchange.
        if auth.mechanism == .xoauth2, !self.stopped, self.transcript.exchanges.last?.reply?.code == .authContinue {
            await self.secret([], mechanism: mechanism, on: peer)
        }
    }

    /// One SASL response line (redacted in the transcript).
    private mutating func secret(_ line: [UInt8], mechanism: String, on peer: some SessionPeer) async {
        guard await self.write(line + [0x0D, 0x0A], to: peer) else { return }
        let unit = ClientUnit.saslResponse(line, mechanism: mechanism, keep: self.keepSecrets)
        await self.receive(from: peer, role: .answer, sent: unit, sentAt: self.elapsed)
    }
}
