import NIOCore
import SMTPClient
import SMTPPolicy
import SMTPProtocol

/// What a run lets a scenario use: the policy's facts and the credentials.
public struct Credentials: Sendable, Hashable {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }
}

/// Runs one scenario's steps against a peer and records the transcript.
struct Executor {
    let scenario: Scenario
    let policy: Policy
    let credentials: Credentials?
    let deadline: NIODeadline

    private var start = NIODeadline.now()
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
        ]
    }

    func expand(_ template: String) -> String {
        var text = template
        for (key, value) in self.placeholderValues { text = text.replacingAll("{\(key)}", with: value) }
        return text
    }

    private var elapsed: Double { Double((NIODeadline.now() - self.start).nanoseconds) / 1e9 }

    mutating func run(on peer: some SessionPeer, client: String?, server: String?) async -> Transcript {
        self.start = .now()
        self.transcript = Transcript(client: client, server: server)
        await self.receive(from: peer, kind: .banner, sent: nil, sentAt: nil, waitingFor: "the greeting")
        for (index, step) in self.scenario.steps.enumerated() {
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
        }
    }

    private mutating func authenticate(_ auth: AuthStep, on peer: some SessionPeer) async {
        let user = self.credentials?.user ?? self.policy.authUsers.first?.name ?? "user"
        let configured = self.credentials?.password ?? self.policy.authUsers.first?.password ?? ""
        let password = auth.password == .configured ? configured : configured + "-wrong"
        let verb = "AUTH \(auth.mechanism.rawValue)"
        var responses: [String] = []
        switch auth.mechanism {
        case .plain: responses = [SASL.plainResponse(user: user, password: password)]
        case .login: responses = [SASL.base64(user.utf8), SASL.base64(password.utf8)]
        }
        if auth.initialResponse {
            let line = Array("\(verb) \(responses.removeFirst())\r\n".utf8)
            await self.secret(line, prefix: "\(verb) ", kind: .command, on: peer)
        } else {
            await self.command(verb, step: self.currentStep, on: peer)
        }
        for response in responses {
            guard !self.stopped, self.transcript.exchanges.last?.reply?.code == .authContinue else { return }
            await self.secret(Array("\(response)\r\n".utf8), prefix: "", kind: .saslResponse, on: peer)
        }
    }

    private mutating func secret(_ line: [UInt8], prefix: String, kind: Transcript.Exchange.Kind, on peer: some SessionPeer) async {
        guard await self.write(line, to: peer) else { return }
        await self.receive(
            from: peer, kind: kind, sent: Transcript.Sent(redacting: line, visiblePrefix: prefix), sentAt: self.elapsed,
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
                self.transcript.exchanges.append(
                    .init(kind: .unsolicited, step: self.currentStep, response: response, repliedAt: self.elapsed))
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
