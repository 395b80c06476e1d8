import NIOCore
import NIOEmbedded
import SMTPPolicy
import SMTPServer
import Testing

/// The server's clocks, driven by the embedded event loop's time: no
/// sockets and no waiting, so the figures are exact.
@Suite struct ServerTimingTests {
    /// The reference server's pipeline on an embedded channel, connected.
    static func server(_ policy: Policy) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try SessionPipeline(configuration: .init(policy: policy), store: try MessageStore(maildir: nil)).configure(channel)
        _ = try channel.connect(to: SocketAddress(ipAddress: "192.0.2.10", port: 40_000)).wait()
        return channel
    }

    static func written(_ channel: EmbeddedChannel) throws -> String {
        var out = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { out += buffer.readString(length: buffer.readableBytes) ?? "" }
        return out
    }

    @Test func anIdleClientGets421AtTheTimeOutAndNotBefore() throws {
        var policy = Policy.defaultSite()
        policy.limits.idleTimeout = 300
        let channel = try Self.server(policy)
        #expect(try Self.written(channel).hasPrefix("220 "))
        try channel.writeInbound(ByteBuffer(string: "EHLO client.example.org\r\n"))
        #expect(try Self.written(channel).hasPrefix("250-"))
        // A command re-arms the timer: the 300 s count from the EHLO.
        channel.embeddedEventLoop.advanceTime(by: .seconds(299))
        #expect(try Self.written(channel).isEmpty)
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try Self.written(channel) == "421 4.4.2 mx.example.net Error: timeout exceeded\r\n")
        #expect(!channel.isActive)
        _ = try? channel.finish()
    }

    @Test func theGreetingWaitsForThePauseAndCatchesAnEarlyTalker() throws {
        var policy = Policy.defaultSite()
        policy.limits.greetPauseMilliseconds = 1000
        let channel = try Self.server(policy)
        #expect(try Self.written(channel).isEmpty)
        // The client talks first, before any greeting.
        try channel.writeInbound(ByteBuffer(string: "EHLO client.example.org\r\n"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(try Self.written(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        let greeted = try Self.written(channel)
        #expect(greeted.hasPrefix("220 mx.example.net ESMTP"))
        #expect(greeted.contains("250-mx.example.net"), "the early EHLO is answered once the greeting is out")
        for line in ["MAIL FROM:<a@client.example.org>", "RCPT TO:<postmaster@example.net>"] {
            try channel.writeInbound(ByteBuffer(string: line + "\r\n"))
            #expect(try Self.written(channel).hasPrefix("250 "))
        }
        try channel.writeInbound(ByteBuffer(string: "DATA\r\n"))
        #expect(try Self.written(channel).hasPrefix("503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"))
        _ = try? channel.finish()
    }

    @Test func aClientThatWaitsForTheGreetingIsServed() throws {
        var policy = Policy.defaultSite()
        policy.limits.greetPauseMilliseconds = 1000
        let channel = try Self.server(policy)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try Self.written(channel).hasPrefix("220 "))
        for line in ["EHLO client.example.org", "MAIL FROM:<a@client.example.org>", "RCPT TO:<postmaster@example.net>"] {
            try channel.writeInbound(ByteBuffer(string: line + "\r\n"))
            _ = try Self.written(channel)
        }
        try channel.writeInbound(ByteBuffer(string: "DATA\r\n"))
        #expect(try Self.written(channel).hasPrefix("354 "))
        _ = try? channel.finish()
    }
}
