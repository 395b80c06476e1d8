import NIOCore
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol

/// The other end of a scripted session: a live server, or the policy itself.
public protocol SessionPeer: Sendable {
    func send(_ bytes: [UInt8]) async throws(ClientError)
    func nextEvent(timeout: TimeAmount) async -> SMTPClientConnection.Event
    /// Upgrades to TLS after a 220 to STARTTLS.
    func startTLS(_ options: ClientTLSOptions) async throws(ClientError) -> SMTPClientConnection.TLSOutcome
    func close() async
}

extension SMTPClientConnection: SessionPeer {}

/// The policy as a peer: lines go through a ``PolicySession`` and its replies
/// come back at once, each remembered with the rule that decided it. Running
/// a scenario against it tells what the policy expects at every step.
actor SimulatedPeer: SessionPeer {
    private var session: PolicySession
    private var framer = LineFramer(maximumLength: 4096)
    private var queue: [ServerResponse] = []
    private var closed = false
    private var chunkRemaining = 0
    private var greetingRead = false
    /// Every reply the policy gave, in order, with its rule.
    private(set) var annotations: [PolicySession.Reply] = []

    init(policy: Policy, clientAddress: String, tls: PolicySession.TLSAvailability, peer: String? = nil) {
        self.session = PolicySession(policy: policy, clientAddress: clientAddress, tls: tls, peer: peer)
        let greeting = PolicySession.Reply(reply: self.session.greeting)
        self.queue.append(.reply(greeting.reply))
        self.annotations.append(greeting)
    }

    func send(_ bytes: [UInt8]) async throws(ClientError) {
        guard !self.closed else { return }
        // Before the greeting was read: early talk, caught where the policy pauses its greeting.
        if !self.greetingRead && self.session.oracle.policy.limits.greetPauseMilliseconds > 0 { self.session.clientTalkedEarly() }
        self.framer.append(bytes)
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

    func startTLS(_ options: ClientTLSOptions) async throws(ClientError) -> SMTPClientConnection.TLSOutcome {
        self.session.tlsEstablished()
        return SMTPClientConnection.TLSOutcome(version: "simulated", certificate: nil, droppedPlaintext: [])
    }

    func nextEvent(timeout: TimeAmount) async -> SMTPClientConnection.Event {
        self.greetingRead = true
        if !self.queue.isEmpty { return .response(self.queue.removeFirst()) }
        return self.closed ? .closed(unconsumed: []) : .timedOut(unconsumed: self.framer.unconsumed)
    }

    func close() async {
        self.closed = true
    }
}
