import SMTPPolicy
import SMTPProtocol

/// Runs one scenario's steps against a peer and records the transcript. The
/// same code drives a live server (the runner's peer) and the policy itself
/// (``SimulatedPeer``), so both see the same client.
public struct Executor: Sendable {
    public let scenario: Scenario
    public let policy: Policy
    public let credentials: Credentials?
    public let deadline: ContinuousClock.Instant
    /// Upgrade with STARTTLS before the first step (`--tls starttls`).
    public var startTLSFirst = false

    /// What the client does before the steps to take on its identity.
    public enum Prelude: Sendable, Hashable {
        case none
        /// XCLIENT ADDR=address from an authorised proxy.
        case xclient(String)
        /// AUTH PLAIN with the run's credentials.
        case authenticate
    }

    public var prelude = Prelude.none
    /// Why the case cannot run against this target (a capability it lacks).
    public private(set) var unsupported: SkipReason?
    /// Keep the octets behind redactions in memory (a simulation matched
    /// against a capture); live runs never keep them.
    public var keepSecrets = false
    /// The server as connected, `ip:port`, for `{server_ip}`.
    public var serverAddress: String?
    /// The run's password may go out outside TLS (the run asked for no TLS).
    public var plaintextSecrets = true

    /// Replies one wait for unsolicited ones may take before it gives up on
    /// a server that keeps talking.
    static let unsolicitedPerDrain = 64
    /// Exchanges a transcript may hold before the session is cut off.
    public static let maximumExchanges = 20_000
    /// Replies nobody asked for that one session may bring before it is cut
    /// off: a server streaming replies is found, not recorded without end.
    public static let maximumUnsolicited = 100
    private var unsolicited = 0

    private var start = ContinuousClock.now
    var encrypted = false
    var transcript = Transcript()
    private var group = 0
    var stopped = false
    var currentStep: Int?

    public init(scenario: Scenario, policy: Policy, credentials: Credentials?, deadline: ContinuousClock.Instant) {
        self.scenario = scenario
        self.policy = policy
        self.credentials = credentials
        self.deadline = deadline
    }

    var placeholders: Placeholders {
        Placeholders(policy: self.policy, credentials: self.credentials, serverIP: Placeholders.literal(of: self.serverAddress))
    }

    var elapsed: Double {
        let duration = ContinuousClock.now - self.start
        return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    public mutating func run(on peer: some SessionPeer, client: String?, server: String?, implicitTLS: TLSOutcome? = nil) async
        -> Transcript
    {
        self.start = .now
        if self.serverAddress == nil { self.serverAddress = server }
        self.transcript = Transcript(client: client, server: server)
        if let implicitTLS {
            self.encrypted = true
            self.transcript.tls = TLSRecord(mode: .implicit, at: 0, version: implicitTLS.version, certificate: implicitTLS.certificate)
        }
        // An early talker writes its first command before reading the greeting.
        var early: ClientUnit?
        if let first = self.scenario.steps.first, first.beforeGreeting, case .send(let template) = first.action {
            let line = Array(self.placeholders.expand(template).utf8)
            if await self.write(line + [0x0D, 0x0A], to: peer) { early = .command(line) }
        }
        await self.receive(from: peer, role: .greeting, sent: nil, sentAt: nil)
        if let early, !self.stopped {
            self.currentStep = 0
            await self.receive(from: peer, role: .answer, sent: early, sentAt: 0)
        }
        if self.startTLSFirst && !self.stopped {
            await self.command("EHLO client.example.org", step: nil, on: peer)
            if !self.stopped { await self.upgrade(injected: nil, on: peer, required: true) }
        }
        if !self.stopped { await self.runPrelude(on: peer) }
        for (index, step) in self.scenario.steps.enumerated() where !step.beforeGreeting {
            guard !self.stopped else {
                self.transcript.notes.append(.stepNotSent(step: index, because: .sessionEnded))
                continue
            }
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
        if !self.stopped { await self.drainUnsolicited(from: peer) }
        // Mid-DATA a QUIT would be message text: close instead, which aborts
        // the transaction (RFC 5321 3.8) and never submits a message.
        // A case stopped for a capability the server lacks still ends politely.
        if self.transcript.end == nil && !self.inMessageData {
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
            let line = self.placeholders.expand(template)
            let command = SMTPCommand(line: Array(line.utf8))
            if command.verb == .auth, let reason = self.authUnavailable(command.argument.split(separator: " ").first.map(String.init)) {
                return self.stop(unsupported: reason)
            }
            // SIZE is judged against the SIZE the server offers (RFC 1870): without it there is nothing to judge.
            if let ehlo = self.lastEHLOReply, !ehlo.offers("SIZE"), command.verb == .mail,
                line.uppercased().contains(" SIZE=")
            {
                return self.stop(unsupported: .serverLacks(.size))
            }
            await self.command(line, step: step, on: peer)
        case .pipeline(let templates):
            // RFC 2920: a client pipelines only where the server offers it.
            if let ehlo = self.lastEHLOReply, !ehlo.offers("PIPELINING") { return self.stop(unsupported: .serverLacks(.pipelining)) }
            self.group += 1
            let lines = templates.map { Array(self.placeholders.expand($0).utf8) }
            guard await self.write(lines.flatMap { $0 + [0x0D, 0x0A] }, to: peer) else { return }
            let sentAt = self.elapsed
            for line in lines where !self.stopped {
                await self.receive(from: peer, role: .answer, sent: .command(line), sentAt: sentAt, group: self.group)
            }
        case .raw(let template, let replies):
            // Octets written after DATA are message text: only after a 354.
            if self.transcript.exchanges.last?.command?.verb == .data, !self.inMessageData {
                self.transcript.notes.append(.stepNotSent(step: step, because: .dataNotAccepted))
                return
            }
            let bytes = self.placeholders.expand(template)
            // Several command lines in one write are a pipeline (RFC 2920): only where
            // the server offers it. Octets after a 354 are message text, not commands.
            if !self.inMessageData, Self.commandLines(in: bytes) > 1,
                let ehlo = self.lastEHLOReply, !ehlo.offers("PIPELINING")
            {
                return self.stop(unsupported: .serverLacks(.pipelining))
            }
            guard await self.write(bytes, to: peer) else { return }
            let sentAt = self.elapsed
            if replies == 0 {
                self.transcript.exchanges.append(.init(role: .answer, step: step, sent: .raw(bytes), sentAt: sentAt))
                if let pause = self.scenario.steps[step].pauseMilliseconds {
                    await self.listen(to: peer, for: self.pause(atLeast: .milliseconds(pause)))
                }
            }
            for index in 0..<replies where !self.stopped {
                await self.receive(from: peer, role: .answer, sent: index == 0 ? .raw(bytes) : nil, sentAt: sentAt)
            }
        case .body(let text):
            guard self.inMessageData else {
                self.transcript.notes.append(.stepNotSent(step: step, because: .dataNotAccepted))
                return
            }
            let bytes = DotStuffing.encode(self.placeholders.expand(Array(text.utf8)))
            guard await self.write(bytes, to: peer) else { return }
            await self.receive(from: peer, role: .answer, sent: .messageBody(octets: bytes.count), sentAt: self.elapsed)
        case .auth(let auth):
            await self.authenticate(auth, on: peer)
        case .starttls(let injected):
            await self.upgrade(injected: injected, on: peer, required: false)
        case .bdat(let template, let last):
            if let ehlo = self.lastEHLOReply, !ehlo.offers("CHUNKING") {
                self.stop(unsupported: .serverLacks(.chunking))
                return
            }
            let chunk = self.placeholders.expand(template)
            let line = Array("BDAT \(chunk.count)\(last ? " LAST" : "")".utf8)
            guard await self.write(line + [0x0D, 0x0A] + chunk, to: peer) else { return }
            await self.receive(from: peer, role: .answer, sent: .bdat(line, chunk: chunk.count), sentAt: self.elapsed)
        }
    }

    mutating func stop(unsupported reason: SkipReason) {
        self.unsupported = reason
        self.stopped = true
    }

    private mutating func runPrelude(on peer: some SessionPeer) async {
        switch self.prelude {
        case .none:
            return
        case .xclient(let address):
            await self.command("EHLO client.example.org", step: nil, on: peer)
            guard !self.stopped else { return }
            guard let ehlo = self.lastEHLOReply, ehlo.offers("XCLIENT") else { return self.stop(unsupported: .serverLacks(.xclient)) }
            let literal = address.contains(":") ? "IPV6:\(address)" : address
            await self.command("XCLIENT ADDR=\(literal) NAME=[UNAVAILABLE]", step: nil, on: peer)
            if !self.stopped, let response = self.transcript.exchanges.last?.response, response.reply?.code != .serviceReady {
                self.stop(unsupported: .preludeRefused(what: .xclient, reply: response))
            }
        case .authenticate:
            await self.command("EHLO client.example.org", step: nil, on: peer)
            guard !self.stopped else { return }
            await self.authenticate(AuthStep(mechanism: .plain, initialResponse: true, password: .configured, cancel: false), on: peer)
            if !self.stopped, let response = self.transcript.exchanges.last?.response, response.reply?.code != .authenticationSucceeded {
                self.stop(unsupported: .preludeRefused(what: .authentication, reply: response))
            }
        }
    }

    /// Whether what is written now is message text: the last reply to a
    /// command was DATA's 354 (raw octets since then got none).
    var inMessageData: Bool {
        self.transcript.exchanges.last { $0.role == .answer && $0.response != nil }?.reply?.code == .startMailInput
    }

    /// The CRLF-ended lines in octets a raw step writes.
    static func commandLines(in bytes: [UInt8]) -> Int {
        zip(bytes, bytes.dropFirst()).reduce(0) { count, pair in pair == (0x0D, 0x0A) ? count + 1 : count }
    }

    /// The reply to the last EHLO on this side of TLS.
    var lastEHLOReply: SMTPReply? {
        self.transcript.exchanges.last { exchange in
            exchange.encrypted == self.encrypted && exchange.command?.verb == .ehlo && exchange.reply?.code == .ok
        }?.reply
    }

    /// STARTTLS (with a command injected behind it, for the probe), then the
    /// handshake if the server said 220. `required`: asked for by the run, not a step.
    private mutating func upgrade(injected: String?, on peer: some SessionPeer, required: Bool) async {
        if let ehlo = self.lastEHLOReply, !ehlo.offers("STARTTLS") { return self.stop(unsupported: .serverLacks(.startTLS)) }
        var bytes = Array("STARTTLS\r\n".utf8)
        if let injected { bytes += Array(self.placeholders.expand(injected).utf8) + [0x0D, 0x0A] }
        guard await self.write(bytes, to: peer) else { return }
        let unit: ClientUnit = injected == nil ? .command(Array("STARTTLS".utf8)) : .raw(bytes)
        await self.receive(from: peer, role: .answer, sent: unit, sentAt: self.elapsed)
        guard !self.stopped, let response = self.transcript.exchanges.last?.response, response.reply?.code == .serviceReady else {
            if required && !self.stopped {
                self.stop(unsupported: .preludeRefused(what: .startTLS, reply: self.transcript.exchanges.last?.response))
            }
            return
        }
        do {
            let outcome = try await peer.startTLS(timeout: self.remaining)
            self.encrypted = true
            self.transcript.tls = TLSRecord(
                mode: .starttls, at: self.elapsed, version: outcome.version, certificate: outcome.certificate,
                droppedPlaintext: outcome.droppedPlaintext)
            if !outcome.droppedPlaintext.isEmpty {
                self.transcript.notes.append(
                    .serverPlaintextAfterSTARTTLS(
                        octets: outcome.droppedPlaintext.count, preview: Array(outcome.droppedPlaintext.prefix(200))))
            }
        } catch {
            self.end(error)
        }
    }

    mutating func command(_ text: String, step: Int?, on peer: some SessionPeer) async {
        let line = Array(text.utf8)
        guard await self.write(line + [0x0D, 0x0A], to: peer) else { return }
        await self.receive(from: peer, role: .answer, sent: .command(line), sentAt: self.elapsed)
    }

    mutating func write(_ bytes: [UInt8], to peer: some SessionPeer) async -> Bool {
        do {
            try await peer.send(bytes)
            return true
        } catch {
            self.end(error)
            if case .closed = error { self.transcript.notes.append(.serverClosedBeforeWrite(octets: bytes.count)) }
            return false
        }
    }

    /// The session ends on a failed write or handshake: a closed connection
    /// is the server's doing (after a 421, say), anything else is recorded with its cause.
    private mutating func end(_ error: PeerError) {
        switch error {
        case .closed: self.transcript.end = .closedByServer(at: self.elapsed)
        case .failed(let failure): self.transcript.end = .failed(failure, at: self.elapsed)
        }
        self.stopped = true
    }

    private var remaining: Duration {
        let left = self.deadline - ContinuousClock.now
        return left > .zero ? left : .zero
    }

    mutating func receive(
        from peer: some SessionPeer, role: Transcript.Exchange.Role, sent: ClientUnit?, sentAt: Double?, group: Int? = nil
    ) async {
        let event = await peer.nextEvent(timeout: self.remaining)
        var exchange = Transcript.Exchange(
            role: role, step: role == .greeting ? nil : self.currentStep, sent: sent, sentAt: sentAt, pipelineGroup: group)
        exchange.encrypted = self.encrypted
        switch event {
        case .response(let response):
            exchange.response = response
            exchange.repliedAt = self.elapsed
            self.append(exchange)
        case .closed(let unconsumed):
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .closedByServer(at: self.elapsed)
            if !unconsumed.isEmpty { self.transcript.notes.append(.closedWithUnterminatedOctets(Array(unconsumed.prefix(200)))) }
            self.stopped = true
        case .reset:
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .reset(by: .server, at: self.elapsed)
            self.stopped = true
        case .timedOut(let unconsumed):
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .timedOut(at: self.elapsed, unconsumed: Array(unconsumed.prefix(200)))
            self.stopped = true
        case .failed(let failure):
            self.transcript.exchanges.append(exchange)
            self.transcript.end = .failed(failure, at: self.elapsed)
            self.stopped = true
        }
    }

    private mutating func append(_ exchange: Transcript.Exchange) {
        self.transcript.exchanges.append(exchange)
        if exchange.role == .unsolicited { self.unsolicited += 1 }
        if self.unsolicited >= Self.maximumUnsolicited {
            self.transcript.end = .failed(
                .limitExceeded("the server sent \(Self.maximumUnsolicited) replies nobody asked for"), at: self.elapsed)
            self.stopped = true
        } else if self.transcript.exchanges.count >= Self.maximumExchanges {
            self.transcript.end = .failed(.limitExceeded("the session passed \(Self.maximumExchanges) exchanges"), at: self.elapsed)
            self.stopped = true
        }
    }

    /// How long a paused step listens: the scenario's pause, or four times
    /// the slowest reply of this session so far if that is longer. The pause
    /// is there so that the server reads what came before it on its own; a
    /// server (or a host) slow to answer is slow to read, and a pause shorter
    /// than its reads would let it read both sides together and look like
    /// one that waited. The longer pause is at most ten seconds and a third
    /// of the time the case has left, so that a slow server's replies to
    /// what follows still come in time.
    func pause(atLeast minimum: Duration) -> Duration {
        let slowest =
            self.transcript.exchanges.lazy.compactMap { exchange -> Double? in
                guard exchange.role == .answer, let sent = exchange.sentAt, let replied = exchange.repliedAt else { return nil }
                return replied - sent
            }.max() ?? 0
        return max(minimum, min(.seconds(4 * max(slowest, 0)), .seconds(10), (self.deadline - ContinuousClock.now) / 3))
    }

    /// Listens for replies that should not come, for a bounded time: each
    /// is recorded as unsolicited; silence is no failure of the session.
    private mutating func listen(to peer: some SessionPeer, for pause: Duration) async {
        let until = min(ContinuousClock.now + pause, self.deadline)
        while !self.stopped, ContinuousClock.now < until {
            guard self.takeUnsolicited(await peer.nextEvent(timeout: until - ContinuousClock.now)) else { return }
        }
    }

    /// Replies that arrived while no command was waiting (a 421 before
    /// close), a bounded number at a time, and never past the deadline.
    private mutating func drainUnsolicited(from peer: some SessionPeer) async {
        for _ in 0..<Self.unsolicitedPerDrain {
            guard !self.stopped else { return }
            guard ContinuousClock.now < self.deadline else {
                self.transcript.end = .timedOut(at: self.elapsed, unconsumed: [])
                self.stopped = true
                return
            }
            guard self.takeUnsolicited(await peer.nextEvent(timeout: .zero)) else { return }
        }
    }

    /// Records what came while no command was waiting; `false` when nothing
    /// more will come now (the wait ran out, or the session ended).
    private mutating func takeUnsolicited(_ event: PeerEvent) -> Bool {
        switch event {
        case .response(let response):
            var exchange = Transcript.Exchange(role: .unsolicited, step: self.currentStep, response: response, repliedAt: self.elapsed)
            exchange.encrypted = self.encrypted
            self.append(exchange)
            return !self.stopped
        case .closed:
            self.transcript.end = .closedByServer(at: self.elapsed)
        case .reset:
            self.transcript.end = .reset(by: .server, at: self.elapsed)
        case .failed(let failure):
            self.transcript.end = .failed(failure, at: self.elapsed)
        case .timedOut:
            return false
        }
        self.stopped = true
        return false
    }
}
