import SMTPPolicy
import SMTPProtocol

/// The policy as a peer: lines go through a ``PolicySession`` and its
/// replies come back at once, each remembered with the rule that decided it.
/// Running a scenario against it tells what the policy expects at every step.
actor SimulatedPeer: SessionPeer {
    private var session: PolicySession
    private var framer = LineFramer(maximumLength: 4096)
    private var queue: [ServerResponse] = []
    private var closed = false
    private var chunkRemaining = 0
    private var greetingRead = false
    /// Every reply the policy gave, in order, with its rule.
    private(set) var annotations: [PolicySession.Reply] = []

    init(_ configuration: PolicySession.Configuration) {
        self.session = PolicySession(configuration)
        let greeting = PolicySession.Reply(reply: self.session.greeting)
        self.queue.append(.reply(greeting.reply))
        self.annotations.append(greeting)
    }

    func send(_ bytes: [UInt8]) async throws(PeerError) {
        guard !self.closed else { return }
        if !self.greetingRead { self.session.receivedBeforeGreeting() }
        bytes.withUnsafeBytes { self.framer.append($0) }
        while true {
            let response: PolicySession.Response
            if self.chunkRemaining > 0 {
                let chunk = self.framer.takeRaw(upTo: self.chunkRemaining)
                guard !chunk.isEmpty else { return }
                self.chunkRemaining -= chunk.count
                response = self.session.receiveChunk(chunk)
            } else if let line = self.framer.next() {
                response = self.session.receive(line, followed: self.framer.hasCompleteLine)
                self.chunkRemaining = response.readChunk ?? 0
            } else {
                return
            }
            for reply in response.replies {
                self.queue.append(.reply(reply.reply))
                self.annotations.append(reply)
            }
            if response.close {
                self.closed = true
                return
            }
            if response.startTLS {
                // The reference server drops what was pipelined behind STARTTLS.
                self.framer.discardBuffered()
                return
            }
        }
    }

    func startTLS(timeout: Duration) async throws(PeerError) -> TLSOutcome {
        self.session.tlsEstablished()
        return TLSOutcome(version: nil, certificate: nil, droppedPlaintext: [])
    }

    func nextEvent(timeout: Duration) async -> PeerEvent {
        self.greetingRead = true
        if !self.queue.isEmpty { return .response(self.queue.removeFirst()) }
        return self.closed ? .closed(unconsumed: []) : .timedOut(unconsumed: self.framer.unconsumed)
    }

    func close() async {
        self.closed = true
    }
}

/// A case as the policy itself answers it: the transcript of the same
/// client against the policy's own session, with the rule behind each reply.
public struct Simulation: Sendable {
    public var transcript: Transcript
    /// The policy's replies in order, the greeting first, each with its rule.
    public var annotations: [PolicySession.Reply]
    /// A capability the policy's own session lacks for the case, if one.
    public var unsupported: SkipReason?

    /// Runs `scenario` as `client` against the policy, the way the live
    /// client would run it against the target.
    public static func run(
        _ scenario: Scenario, policy: Policy, credentials: Credentials?, client: String?, peer: String? = nil,
        tls: PolicySession.TLSAvailability, server: String?, startTLSFirst: Bool = false, prelude: Executor.Prelude = .none,
        keepSecrets: Bool = false
    ) async -> Simulation {
        let simulated = SimulatedPeer(.init(policy: policy, clientAddress: client, peer: peer, tls: tls))
        var executor = Executor(scenario: scenario, policy: policy, credentials: credentials, deadline: .now + .seconds(60))
        executor.startTLSFirst = startTLSFirst
        executor.serverAddress = server
        executor.prelude = prelude
        executor.keepSecrets = keepSecrets
        let implicit = tls == .implicit ? TLSOutcome(version: nil, certificate: nil, droppedPlaintext: []) : nil
        let transcript = await executor.run(on: simulated, client: client, server: "policy", implicitTLS: implicit)
        return Simulation(transcript: transcript, annotations: await simulated.annotations, unsupported: executor.unsupported)
    }

    /// Each answered exchange of the policy's transcript with the rule behind its reply.
    public var annotated: [(exchange: Transcript.Exchange, note: PolicySession.Reply)] {
        var out: [(Transcript.Exchange, PolicySession.Reply)] = []
        var index = 0
        for exchange in self.transcript.exchanges where exchange.response != nil {
            guard index < self.annotations.count else { break }
            out.append((exchange, self.annotations[index]))
            index += 1
        }
        return out
    }

    /// What the policy answered at a step (its last reply there).
    public func note(at step: Int) -> PolicySession.Reply? {
        self.annotated.last { $0.exchange.step == step && $0.exchange.role != .unsolicited }?.note
    }

    /// Where the policy first applies `rule`: its refusal, or a HELO it
    /// accepts with the refusal deferred; and where the refusal itself comes.
    public func window(of rule: RuleID) -> (trigger: Int, due: Int?)? {
        let annotated = self.annotated
        guard let trigger = annotated.first(where: { $0.note.rule == rule || $0.note.deferredRule == rule })?.exchange.step else {
            return nil
        }
        return (trigger, annotated.first { $0.note.rule == rule }?.exchange.step)
    }

    /// The first step the policy refuses, and under which rule.
    public var firstRefusal: SkipReason.StepRule? {
        self.annotated.first { $0.exchange.step != nil && $0.note.rule != nil }.flatMap { entry in
            entry.note.rule.flatMap { rule in entry.exchange.step.map { SkipReason.StepRule(step: $0, rule: rule) } }
        }
    }
}
