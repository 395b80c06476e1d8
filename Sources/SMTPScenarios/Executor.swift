import NIOCore
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol

/// What a run lets a scenario use: the policy's facts and the credentials.
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

/// Runs one scenario's steps against a peer and records the transcript.
struct Executor {
    let scenario: Scenario
    let policy: Policy
    let credentials: Credentials?
    let deadline: NIODeadline
    /// For STARTTLS upgrades.
    var tlsOptions = ClientTLSOptions()
    /// Upgrade with STARTTLS before the first step (`--tls starttls`).
    var startTLSFirst = false

    /// What the client does before the steps to take on its identity.
    enum Prelude {
        case none
        /// XCLIENT ADDR=address from an authorised proxy.
        case xclient(String)
        /// AUTH PLAIN with the run's credentials.
        case authenticate
    }

    var prelude = Prelude.none
    /// Why the case cannot run against this target (a capability it lacks).
    private(set) var unsupported: String?
    /// Keep the octets behind redactions in memory (a simulation matched
    /// against a capture); live runs never keep them.
    var keepSecrets = false

    private var start = NIODeadline.now()
    private var encrypted = false
    /// The server as connected, `ip:port`; the simulation is given the live one.
    var serverAddress: String?
    private var transcript = Transcript()
    private var group = 0
    private var stopped = false
    private var currentStep: Int?

    init(scenario: Scenario, policy: Policy, credentials: Credentials?, deadline: NIODeadline) {
        self.scenario = scenario
        self.policy = policy
        self.credentials = credentials
        self.deadline = deadline
    }

    /// The value of each `{placeholder}`.
    var placeholderValues: [String: String] {
        [
            "local_domain": self.policy.localDomains.first ?? "localhost",
            "server_name": self.policy.serverName,
            "local_user": self.policy.localUsers.first { $0 != "postmaster" } ?? "postmaster",
            "user": self.credentials?.user ?? self.policy.authUsers.first?.name ?? "user",
            "error_limit": String(self.policy.limits.errorLimit),
            "server_ip": self.serverIP,
        ]
    }

    /// The target's address as an address literal's content (`127.0.0.1`, `IPv6:::1`).
    var serverIP: String {
        guard let ip = CaseContext.ip(of: self.serverAddress) else { return "127.0.0.1" }
        return ip.contains(":") ? "IPv6:\(ip)" : ip
    }

    func expand(_ template: String) -> String {
        var text = template
        for (key, value) in self.placeholderValues { text = text.replacingAll("{\(key)}", with: value) }
        return text
    }

    private var elapsed: Double { Double((NIODeadline.now() - self.start).nanoseconds) / 1e9 }

    mutating func run(
        on peer: some SessionPeer, client: String?, server: String?, implicitTLS: SMTPClientConnection.TLSOutcome? = nil
    ) async -> Transcript {
        self.start = .now()
        if self.serverAddress == nil { self.serverAddress = server }
        self.transcript = Transcript(client: client, server: server)
        if let implicitTLS {
            self.encrypted = true
            self.transcript.tls = TLSRecord(mode: .implicit, at: 0, version: implicitTLS.version, certificate: implicitTLS.certificate)
        }
        // An early talker writes its first command before reading the greeting.
        var earlyLine: [UInt8]?
        if let first = self.scenario.steps.first, first.beforeGreeting, case .send(let template) = first.action {
            let line = Array(self.expand(template).utf8) + [0x0D, 0x0A]
            if await self.write(line, to: peer) { earlyLine = line }
        }
        await self.receive(from: peer, kind: .banner, sent: nil, sentAt: nil, waitingFor: "the greeting")
        if let earlyLine, !self.stopped {
            self.currentStep = 0
            await self.receive(
                from: peer, kind: .command, sent: Transcript.Sent(bytes: earlyLine), sentAt: 0,
                waitingFor: "the reply to a command sent before the greeting")
        }
        if self.startTLSFirst && !self.stopped {
            await self.command("EHLO client.example.org", step: nil, on: peer)
            if !self.stopped { await self.upgrade(injected: nil, on: peer, required: "--tls starttls") }
        }
        if !self.stopped { await self.runPrelude(on: peer) }
        for (index, step) in self.scenario.steps.enumerated() where !step.beforeGreeting {
            guard !self.stopped else {
                self.transcript.notes.append("step \(index + 1) not sent: the session had ended")
                continue
            }
            await self.drainUnsolicited(from: peer)
            guard !self.stopped else { continue }
            self.currentStep = index
            let times: Int
            switch step.repeatCount {
            case .times(let count): times = count
            case .errorLimit: times = self.policy.limits.errorLimit
            case .maxRecipients: times = self.policy.limits.maxRecipients
            }
            for _ in 0..<times where !self.stopped {
                await self.drainUnsolicited(from: peer)
                guard !self.stopped else { break }
                await self.perform(step.action, step: index, on: peer)
            }
        }
        if !self.stopped {
            await self.drainUnsolicited(from: peer)
        }
        // Mid-DATA a QUIT would be message text: close instead, which aborts
        // the transaction (RFC 5321 3.8) and never submits a message.
        let inData = self.transcript.exchanges.last?.reply?.code == .startMailInput
        if !self.stopped && !inData {
            self.currentStep = nil
            await self.command("QUIT", step: nil, on: peer)
        }
        await peer.close()
        if self.transcript.end == nil { self.transcript.end = .closedByClient(at: self.elapsed) }
        return self.transcript
    }

    private mutating func perform(_ action: Step.Action, step: Int, on peer: some SessionPeer) async {
        switch action {
        case .send(let template):
            await self.command(self.expand(template), step: step, on: peer)
        case .pipeline(let templates):
            self.group += 1
            let lines = templates.map { Array(self.expand($0).utf8) + [0x0D, 0x0A] }
            guard await self.write(lines.flatMap { $0 }, to: peer) else { return }
            let sentAt = self.elapsed
            for line in lines where !self.stopped {
                await self.receive(
                    from: peer, kind: .command, sent: Transcript.Sent(bytes: line), sentAt: sentAt,
                    waitingFor: "the reply to \(Printable.escape(line.dropLast(2)))", group: self.group)
            }
        case .raw(let bytes, let replies):
            guard await self.write(bytes, to: peer) else { return }
            let sentAt = self.elapsed
            if replies == 0 {
                self.transcript.exchanges.append(.init(kind: .raw, step: step, sent: Transcript.Sent(bytes: bytes), sentAt: sentAt))
            }
            for index in 0..<replies where !self.stopped {
                await self.receive(
                    from: peer, kind: .raw, sent: index == 0 ? Transcript.Sent(bytes: bytes) : nil, sentAt: sentAt,
                    waitingFor: "reply \(index + 1) of \(replies) to raw octets")
            }
        case .body(let text):
            guard let last = self.transcript.exchanges.last, last.reply?.code == .startMailInput else {
                self.transcript.notes.append("step \(step + 1) (body) not sent: DATA was not answered 354")
                return
            }
            let bytes = DotStuffing.encode(self.expand(text).utf8)
            guard await self.write(bytes, to: peer) else { return }
            var sent = Transcript.Sent(bytes: Array(bytes.dropLast(3)))
            sent.octets = bytes.count
            sent.text += "\\r\\n."
            await self.receive(from: peer, kind: .body, sent: sent, sentAt: self.elapsed, waitingFor: "the reply to the message body")
        case .auth(let auth):
            await self.authenticate(auth, on: peer)
        case .starttls(let injected):
            await self.upgrade(injected: injected, on: peer, required: nil)
        case .bdat(let template, let last):
            if let ehlo = self.lastEHLOReply, Self.extensions(ehlo)["CHUNKING"] == nil {
                self.unsupported = "the server does not offer CHUNKING (BDAT) in its EHLO reply"
                self.stopped = true
                return
            }
            let chunk = Printable.unescape(self.expand(template))
            let line = Array("BDAT \(chunk.count)\(last ? " LAST" : "")\r\n".utf8)
            guard await self.write(line + chunk, to: peer) else { return }
            var sent = Transcript.Sent(bytes: line)
            sent.text += " <chunk of \(chunk.count) octets>"
            sent.octets += chunk.count
            await self.receive(from: peer, kind: .command, sent: sent, sentAt: self.elapsed, waitingFor: "the reply to a BDAT chunk")
        }
    }

    private mutating func runPrelude(on peer: some SessionPeer) async {
        switch self.prelude {
        case .none:
            return
        case .xclient(let address):
            await self.command("EHLO client.example.org", step: nil, on: peer)
            guard !self.stopped else { return }
            guard let ehlo = self.lastEHLOReply, Self.extensions(ehlo)["XCLIENT"] != nil else {
                self.unsupported = "the server does not offer XCLIENT to this client"
                self.stopped = true
                return
            }
            let literal = address.contains(":") ? "IPV6:\(address)" : address
            await self.command("XCLIENT ADDR=\(literal) NAME=[UNAVAILABLE]", step: nil, on: peer)
            if !self.stopped, let reply = self.transcript.exchanges.last?.reply, reply.code != .serviceReady {
                self.unsupported = "the server refused XCLIENT: \(reply.singleLine)"
                self.stopped = true
            }
        case .authenticate:
            await self.command("EHLO client.example.org", step: nil, on: peer)
            guard !self.stopped else { return }
            await self.authenticate(AuthStep(mechanism: .plain, initialResponse: true, password: .configured, cancel: false), on: peer)
            if !self.stopped, let reply = self.transcript.exchanges.last?.reply, reply.code != .authenticationSucceeded {
                self.unsupported = "authentication for this identity failed: \(reply.singleLine)"
                self.stopped = true
            }
        }
    }

    /// The reply to the last EHLO on this side of TLS.
    private var lastEHLOReply: SMTPReply? {
        self.transcript.exchanges.last { exchange in
            exchange.encrypted == self.encrypted && exchange.sent?.text.uppercased().hasPrefix("EHLO ") == true
                && exchange.reply?.code == .ok
        }?.reply
    }

    /// The keywords of an EHLO reply's extension lines, upper-cased, with their parameters.
    static func extensions(_ reply: SMTPReply) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for line in reply.lines.dropFirst() {
            let tokens = line.split(whereSeparator: { $0 == " " || $0 == "=" }).map { $0.uppercased() }
            guard let keyword = tokens.first else { continue }
            out[keyword, default: []] += tokens.dropFirst()
        }
        return out
    }

    /// STARTTLS (with a command injected behind it, for the probe), then the
    /// handshake if the server said 220.
    private mutating func upgrade(injected: String?, on peer: some SessionPeer, required: String?) async {
        if let ehlo = self.lastEHLOReply, Self.extensions(ehlo)["STARTTLS"] == nil {
            self.unsupported = "the server does not offer STARTTLS in its EHLO reply" + (required.map { " (asked for by \($0))" } ?? "")
            self.stopped = true
            return
        }
        var bytes = Array("STARTTLS\r\n".utf8)
        if let injected { bytes += Array(self.expand(injected).utf8) + [0x0D, 0x0A] }
        guard await self.write(bytes, to: peer) else { return }
        await self.receive(
            from: peer, kind: .command, sent: Transcript.Sent(bytes: bytes), sentAt: self.elapsed, waitingFor: "the reply to STARTTLS")
        guard !self.stopped, self.transcript.exchanges.last?.reply?.code == .serviceReady else {
            if required != nil && !self.stopped { self.unsupported = "the server refused STARTTLS (asked for by \(required ?? ""))" }
            return
        }
        do {
            let outcome = try await peer.startTLS(self.tlsOptions)
            self.encrypted = true
            self.transcript.tls = TLSRecord(
                mode: .starttls, at: self.elapsed, version: outcome.version, certificate: outcome.certificate,
                droppedPlaintext: outcome.droppedPlaintext)
            if !outcome.droppedPlaintext.isEmpty {
                self.transcript.notes.append(
                    "the server sent \(outcome.droppedPlaintext.count) octets of plaintext after its 220 to STARTTLS; dropped: "
                        + Printable.escape(outcome.droppedPlaintext.prefix(200)))
            }
        } catch {
            self.transcript.end = .failed(error.description, at: self.elapsed)
            self.stopped = true
        }
    }

    private mutating func authenticate(_ auth: AuthStep, on peer: some SessionPeer) async {
        if let ehlo = self.lastEHLOReply, let offered = Self.extensions(ehlo)["AUTH"], !offered.contains(auth.mechanism.rawValue) {
            self.unsupported = "the server offers AUTH \(offered.joined(separator: " ")), not \(auth.mechanism.rawValue)"
            self.stopped = true
            return
        }
        let user = self.credentials?.user ?? self.policy.authUsers.first?.name ?? "user"
        let configured = self.credentials?.password ?? self.policy.authUsers.first?.password ?? ""
        let password = auth.password == .configured ? configured : configured + "-wrong"
        let verb = "AUTH \(auth.mechanism.rawValue)"
        if auth.cancel {
            await self.command(verb, step: self.currentStep, on: peer)
            if !self.stopped && self.transcript.exchanges.last?.reply?.code == .authContinue {
                await self.command("*", step: self.currentStep, on: peer)
            }
            return
        }
        var responses: [String]
        switch auth.mechanism {
        case .plain: responses = [SASL.plainResponse(user: user, password: password)]
        case .login: responses = [SASL.base64(user.utf8), SASL.base64(password.utf8)]
        case .cramMD5: responses = []
        case .xoauth2:
            guard let token = self.credentials?.oauthToken else {
                self.unsupported = "XOAUTH2 needs a bearer token: --oauth-token-env VAR"
                self.stopped = true
                return
            }
            responses = [SASL.xoauth2Response(user: user, token: auth.password == .configured ? token : token + "-wrong")]
        }
        if auth.initialResponse, !responses.isEmpty {
            let line = Array("\(verb) \(responses.removeFirst())\r\n".utf8)
            await self.secret(line, prefix: "\(verb) ", kind: .command, on: peer)
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
            await self.secret(Array("\(response)\r\n".utf8), prefix: "", kind: .saslResponse, on: peer)
        }
        // XOAUTH2 failure: the server sends a 334 error description; an empty line ends the exchange.
        if auth.mechanism == .xoauth2, !self.stopped, self.transcript.exchanges.last?.reply?.code == .authContinue {
            await self.receiveAfterWriting([0x0D, 0x0A], kind: .saslResponse, on: peer)
        }
    }

    private mutating func receiveAfterWriting(_ bytes: [UInt8], kind: Transcript.Exchange.Kind, on peer: some SessionPeer) async {
        guard await self.write(bytes, to: peer) else { return }
        await self.receive(
            from: peer, kind: kind, sent: Transcript.Sent(bytes: bytes), sentAt: self.elapsed, waitingFor: "the reply to an empty line")
    }

    private mutating func secret(_ line: [UInt8], prefix: String, kind: Transcript.Exchange.Kind, on peer: some SessionPeer) async {
        guard await self.write(line, to: peer) else { return }
        var sent = Transcript.Sent(redacting: line, visiblePrefix: prefix)
        if self.keepSecrets { sent.withheld = line }
        await self.receive(
            from: peer, kind: kind, sent: sent, sentAt: self.elapsed,
            waitingFor: "the reply to \(prefix.isEmpty ? "a SASL response" : prefix + "...")")
    }

    private mutating func command(_ text: String, step: Int?, on peer: some SessionPeer) async {
        let line = Array(text.utf8) + [0x0D, 0x0A]
        guard await self.write(line, to: peer) else { return }
        await self.receive(
            from: peer, kind: .command, sent: Transcript.Sent(bytes: line), sentAt: self.elapsed, waitingFor: "the reply to \(text)")
    }

    private mutating func write(_ bytes: [UInt8], to peer: some SessionPeer) async -> Bool {
        do {
            try await peer.send(bytes)
            return true
        } catch  where error.kind == .connectionClosed {
            // The server closed first (after a 421, say): its doing, not the harness's.
            self.transcript.end = .closedByServer(at: self.elapsed)
            self.transcript.notes.append("the server had closed the connection before the client wrote \(bytes.count) octets")
            self.stopped = true
            return false
        } catch {
            self.transcript.end = .failed(error.description, at: self.elapsed)
            self.stopped = true
            return false
        }
    }

    private var remaining: TimeAmount {
        let left = self.deadline - NIODeadline.now()
        return left > .zero ? left : .zero
    }

    private mutating func receive(
        from peer: some SessionPeer, kind: Transcript.Exchange.Kind, sent: Transcript.Sent?, sentAt: Double?, waitingFor: String,
        group: Int? = nil
    ) async {
        let event = await peer.nextEvent(timeout: self.remaining)
        var exchange = Transcript.Exchange(
            kind: kind, step: kind == .banner ? nil : self.currentStep, sent: sent, sentAt: sentAt, pipelineGroup: group)
        exchange.encrypted = self.encrypted
        switch event {
        case .response(let response):
            exchange.response = response
            exchange.repliedAt = self.elapsed
            self.transcript.exchanges.append(exchange)
        case .closed(let unconsumed):
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .closedByServer(at: self.elapsed)
            if !unconsumed.isEmpty {
                self.transcript.notes.append(
                    "the server closed with \(unconsumed.count) octets not ended by CRLF: \(Printable.escape(unconsumed.prefix(200)))")
            }
            self.stopped = true
        case .timedOut(let unconsumed):
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .timedOut(waitingFor: waitingFor, at: self.elapsed, unconsumed: unconsumed)
            self.stopped = true
        }
    }

    /// Replies that arrived while no command was waiting (a 421 before close).
    private mutating func drainUnsolicited(from peer: some SessionPeer) async {
        while true {
            switch await peer.nextEvent(timeout: .zero) {
            case .response(let response):
                var exchange = Transcript.Exchange(kind: .unsolicited, step: self.currentStep, response: response, repliedAt: self.elapsed)
                exchange.encrypted = self.encrypted
                self.transcript.exchanges.append(exchange)
            case .closed:
                self.transcript.end = .closedByServer(at: self.elapsed)
                self.stopped = true
                return
            case .timedOut:
                return
            }
        }
    }
}
