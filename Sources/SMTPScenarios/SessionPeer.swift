import SMTPProtocol

/// What waiting for the server ended with.
public enum PeerEvent: Sendable, Hashable {
    case response(ServerResponse)
    /// The server closed the connection with no further response.
    case closed(unconsumed: [UInt8])
    /// The server reset the connection.
    case reset
    case timedOut(unconsumed: [UInt8])
    /// The connection failed under the client, with its cause.
    case failed(Transcript.End.Failure)
}

/// Why a write did not go out.
public enum PeerError: Error, Sendable, Hashable {
    /// The server had closed the connection.
    case closed
    case failed(Transcript.End.Failure)
}

/// The other end of a scripted session: a live server (through the runner),
/// or the policy itself (``SimulatedPeer``).
public protocol SessionPeer: Sendable {
    func send(_ bytes: [UInt8]) async throws(PeerError)
    func nextEvent(timeout: Duration) async -> PeerEvent
    /// Upgrades to TLS after a 220 to STARTTLS; a handshake not done within
    /// `timeout` fails (a server that stalls it cannot hold the case).
    func startTLS(timeout: Duration) async throws(PeerError) -> TLSOutcome
    func close() async
}
