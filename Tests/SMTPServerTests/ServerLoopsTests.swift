import Foundation
import SMTPPolicy
import SMTPServer
import SMTPTestSupport
import Testing

/// `serve` runs the server on event loops of its own (`--threads`); the
/// in-process runs share the process's loops.
@Suite struct ServerLoopsTests {
    /// Its own loops serve every session, and stopping the server shuts them
    /// down: the sessions still open end at once (on shared loops they would
    /// go on until their clients leave).
    @Test(arguments: [1, 2])
    func aServerOnLoopsOfItsOwnEndsItsSessionsWhenStopped(threads: Int) async throws {
        let server = try await ReferenceServer.start(.init(policy: .defaultSite()), threads: threads)
        let clients = try (0..<4).map { _ in try RawClient(port: server.port) }
        for client in clients { #expect(client.readLine()?.hasPrefix("220 ") == true) }
        try await server.stop()
        for client in clients { #expect(Self.closed(client), "a session went on after the server stopped") }
    }

    /// The server closed the connection: it reads as the end (or a reset), not as silence.
    static func closed(_ client: RawClient) -> Bool {
        var entry = pollfd(fd: client.descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 10_000) == 1 else { return false }
        var octet: UInt8 = 0
        return recv(client.descriptor, &octet, 1, 0) <= 0
    }
}
