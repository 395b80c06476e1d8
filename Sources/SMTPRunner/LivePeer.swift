import NIOCore
import SMTPClient
import SMTPCodec
import SMTPProtocol
import SMTPScenarios

/// A live connection as a ``SessionPeer``: the executor's writes and waits
/// go to the socket, and its failures come back typed, with their cause.
struct LivePeer: SessionPeer {
    let connection: SMTPClientConnection
    let tls: ClientTLSOptions

    func send(_ bytes: [UInt8]) async throws(PeerError) {
        do {
            try await self.connection.send(bytes)
        } catch {
            if case .connectionClosed = error.kind { throw .closed }
            if case .limitExceeded(let reason) = error.kind { throw .failed(.limitExceeded(reason)) }
            throw .failed(.writeFailed(error.description))
        }
    }

    func nextEvent(timeout: Duration) async -> PeerEvent {
        switch await self.connection.nextEvent(timeout: TimeAmount(timeout)) {
        case .response(let response): .response(response)
        case .closed(let unconsumed): .closed(unconsumed: unconsumed)
        case .reset: .reset
        case .timedOut(let unconsumed): .timedOut(unconsumed: unconsumed)
        case .failed(let cause): .failed(.channel(cause))
        case .limitExceeded(let what): .failed(.limitExceeded(what))
        case .plaintextAfterTLS(let octets, let preview): .failed(.plaintextAfterTLS(octets: octets, preview: preview))
        }
    }

    func startTLS(timeout: Duration) async throws(PeerError) -> TLSOutcome {
        do {
            return try await self.connection.startTLS(self.tls, timeout: TimeAmount(timeout))
        } catch {
            switch error.kind {
            case .certificateRefused(let reason): throw .failed(.certificateRefused(reason))
            case .tlsFailed(let reason): throw .failed(.tlsHandshake(reason))
            default: throw .failed(.tlsHandshake(error.description))
            }
        }
    }

    func close() async {
        await self.connection.close()
    }
}

extension TimeAmount {
    /// A Swift `Duration` as NIO's time amount (at most a day, at least zero).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let clamped = min(max(seconds, 0), 86_400)
        self = .nanoseconds(clamped * 1_000_000_000 + (seconds < 0 ? 0 : attoseconds / 1_000_000_000))
    }
}
