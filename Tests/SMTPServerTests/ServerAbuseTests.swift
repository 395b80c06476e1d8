import NIOCore
import NIOEmbedded
import SMTPPolicy
import SMTPProtocol
import SMTPServer
import SMTPTestSupport
import Testing

/// What a hostile client does to the reference server: each was seen with
/// the release build, and each has its regression test here.
@Suite struct ServerAbuseTests {
    /// A BDAT size at the top of Int64, then one octet: before the fix, an
    /// arithmetic overflow trap in `LineFramer.takeRaw` killed the server.
    @Test(arguments: [false, true])
    func aBDATSizeAtTheTopOfInt64DoesNotCrash(afterMAIL: Bool) throws {
        let channel = try ServerTimingTests.server(.defaultSite())
        _ = try ServerTimingTests.written(channel)
        if afterMAIL {
            for line in ["EHLO client.example.org", "MAIL FROM:<a@client.example.org>", "RCPT TO:<postmaster@example.net>"] {
                try channel.writeInbound(ByteBuffer(string: line + "\r\n"))
                _ = try ServerTimingTests.written(channel)
            }
        }
        try channel.writeInbound(ByteBuffer(string: "BDAT 9223372036854775807 LAST\r\nX"))
        try channel.writeInbound(ByteBuffer(string: "more octets of the chunk\r\n"))
        #expect(channel.isActive)
        // The chunk never ends; the idle time-out does.
        channel.embeddedEventLoop.advanceTime(by: .seconds(Int64(Policy.defaultSite().limits.idleTimeout)))
        #expect(try ServerTimingTests.written(channel).hasPrefix("421 4.4.2"))
        #expect(!channel.isActive)
        _ = try? channel.finish()
    }

    @Test func takeRawNeverAddsAWireNumberToAnIndex() {
        var framer = LineFramer()
        framer.append(Array("X".utf8))
        #expect(framer.takeRaw(upTo: Int.max) == [0x58])
        #expect(framer.takeRaw(upTo: Int.max).isEmpty)
    }

    /// A client sending a byte a second holds no session past
    /// `command_timeout` from its line's first octet, whatever the idle time-out.
    @Test func aLineNotFinishedWithinTheCommandTimeOutEndsTheSession() throws {
        var policy = Policy.defaultSite()
        policy.limits.commandTimeout = 60
        let channel = try ServerTimingTests.server(policy)
        _ = try ServerTimingTests.written(channel)
        for octet in "NOOP" {
            try channel.writeInbound(ByteBuffer(string: String(octet)))
            channel.embeddedEventLoop.advanceTime(by: .seconds(14))
        }
        #expect(try ServerTimingTests.written(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(try ServerTimingTests.written(channel) == "421 4.4.2 mx.example.net Error: timeout exceeded\r\n")
        #expect(!channel.isActive)
        _ = try? channel.finish()
    }

    @Test func linesFinishedInTimeKeepTheSession() throws {
        var policy = Policy.defaultSite()
        policy.limits.commandTimeout = 60
        let channel = try ServerTimingTests.server(policy)
        _ = try ServerTimingTests.written(channel)
        for _ in 0..<5 {
            try channel.writeInbound(ByteBuffer(string: "NO"))
            channel.embeddedEventLoop.advanceTime(by: .seconds(59))
            try channel.writeInbound(ByteBuffer(string: "OP\r\n"))
            #expect(try ServerTimingTests.written(channel).hasPrefix("250 "))
        }
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    /// Postfix's `smtpd_client_connection_count_limit`: past the limit a
    /// client address gets 421 4.7.0 and no session; a freed slot is taken again.
    @Test func connectionsPastThePerClientLimitAreRefused() async throws {
        var policy = Policy.defaultSite()
        policy.limits.connectionsPerClient = 2
        let server = try await ReferenceServer.start(.init(policy: policy))
        let first = try RawClient(port: server.port)
        let second = try RawClient(port: server.port)
        #expect(first.readLine()?.hasPrefix("220 ") == true)
        #expect(second.readLine()?.hasPrefix("220 ") == true)
        let third = try RawClient(port: server.port)
        #expect(third.readLine() == "421 4.7.0 mx.example.net Error: too many connections from 127.0.0.1")
        #expect(third.readLine() == nil)
        try first.writeAll("QUIT\r\n")
        #expect(first.readLine()?.hasPrefix("221 ") == true)
        #expect(first.readLine() == nil)
        // The slot is released when the server sees the close; a fourth
        // connection made after that is served.
        var served = false
        for _ in 0..<50 where !served {
            let fourth = try RawClient(port: server.port)
            served = fourth.readLine()?.hasPrefix("220 ") == true
        }
        #expect(served)
        try await server.stop()
    }

    @Test func trustedClientsAreExemptFromTheConnectionLimit() async throws {
        var policy = Policy.defaultSite()
        policy.limits.connectionsPerClient = 1
        policy.trustedNetworks = IPNetwork("127.0.0.0/8").map { [$0] } ?? []
        let server = try await ReferenceServer.start(.init(policy: policy))
        let clients = try (0..<3).map { _ in try RawClient(port: server.port) }
        for client in clients { #expect(client.readLine()?.hasPrefix("220 ") == true) }
        try await server.stop()
    }
}
