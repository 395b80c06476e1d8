import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A server that misbehaves on purpose, in one of the ways hostile or
/// broken servers do, so that the client can be shown to end each with a
/// clear reason, within its time-out, in bounded memory.
public final class HostileServer: Sendable {
    public enum Behaviour: String, Sendable, CaseIterable {
        /// Offers STARTTLS, says 220 to it, then never answers the handshake.
        case stalledSTARTTLSHandshake
        /// Accepts and says nothing: a TLS client waits for a ServerHello forever.
        case stalledImplicitHandshake
        /// Answers the first command with complete replies, without end.
        case streamedReplies
        /// Answers the first command with a multi-line reply that never ends.
        case endlessMultilineReply
        /// Sends the greeting one octet a second.
        case tricklingBanner
        /// Sends octets that are not SMTP at all, with line ends among them.
        case garbage
        /// Closes halfway through the EHLO reply.
        case closeMidReply
        /// Resets the connection (RST) on EHLO.
        case reset
    }

    /// The case hostile-server tests run: EHLO, MAIL, and a RCPT the policy
    /// refuses as relaying (an answer anywhere in it can go wrong).
    public static let relayCase = """
        id: hostile.relay
        title: relay through a hostile server
        steps:
          - send: EHLO client.example.org
          - send: MAIL FROM:<a@client.example.org>
          - send: RCPT TO:<someone@example.org>
        expect:
          refused: relay.denied
        """

    private let channel: any Channel
    public let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
    }

    public static func start(_ behaviour: Behaviour) async throws -> HostileServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HostileHandler(behaviour))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HostileServer(channel: channel)
    }

    public func stop() async throws { try await self.channel.close() }
}

final class HostileHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let behaviour: HostileServer.Behaviour
    private var pending: [UInt8] = []
    private var flooding = false
    private var stalled = false

    init(_ behaviour: HostileServer.Behaviour) {
        self.behaviour = behaviour
    }

    func channelActive(context: ChannelHandlerContext) {
        switch self.behaviour {
        case .stalledImplicitHandshake:
            self.stalled = true
        case .tricklingBanner:
            self.trickle(Array("220 mx.example.net ESMTP slowly\r\n".utf8)[...], context: context)
        case .garbage:
            var generator = SystemRandomNumberGenerator()
            var octets = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for index in stride(from: 100, to: octets.count, by: 300) { octets[index] = 0x0D }
            for index in stride(from: 101, to: octets.count, by: 300) { octets[index] = 0x0A }
            self.write(octets, context: context)
        default:
            self.write(Array("220 mx.example.net ESMTP hostile\r\n".utf8), context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.stalled, !self.flooding else { return }
        self.pending += self.unwrapInboundIn(data).readableBytesView
        while !self.stalled, !self.flooding, let end = self.pending.firstIndex(of: 0x0A) {
            let line = String(decoding: self.pending[..<end], as: UTF8.self).uppercased()
            self.pending.removeFirst(end + 1)
            self.answer(line, context: context)
        }
    }

    private func answer(_ line: String, context: ChannelHandlerContext) {
        switch self.behaviour {
        case .streamedReplies:
            self.flooding = true
            self.flood(Array(String(repeating: "250 2.0.0 Ok\r\n", count: 512).utf8), context: context)
        case .endlessMultilineReply:
            self.flooding = true
            self.write(Array("250-mx.example.net\r\n".utf8), context: context)
            self.flood(Array(String(repeating: "250-and more\r\n", count: 512).utf8), context: context)
        case .closeMidReply where line.hasPrefix("EHLO"):
            self.write(Array("250-mx.example.net\r\n250-PIPEL".utf8), context: context)
            context.close(promise: nil)
        case .reset where line.hasPrefix("EHLO"):
            // SO_LINGER with a zero time-out: close sends RST, not FIN.
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            guard let provider = context.channel as? any SocketOptionProvider else { return context.close(promise: nil) }
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in bound.value.close(promise: nil) }
        case .stalledSTARTTLSHandshake where line.hasPrefix("EHLO"):
            self.write(Array("250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n".utf8), context: context)
        case .stalledSTARTTLSHandshake where line.hasPrefix("STARTTLS"):
            self.write(Array("220 2.0.0 Ready to start TLS\r\n".utf8), context: context)
            self.stalled = true
        case _ where line.hasPrefix("QUIT"):
            self.write(Array("221 2.0.0 Bye\r\n".utf8), context: context)
            context.close(promise: nil)
        default:
            self.write(Array("250 2.0.0 Ok\r\n".utf8), context: context)
        }
    }

    private func write(_ octets: [UInt8], context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: octets)), promise: nil)
    }

    /// The same octets again each time the last write went out: as fast as
    /// the client reads, and no faster (the server's own memory stays flat).
    private func flood(_ octets: [UInt8], context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: octets))).whenSuccess {
            let (handler, context) = bound.value
            guard context.channel.isActive else { return }
            handler.flood(octets, context: context)
        }
    }

    private func trickle(_ octets: ArraySlice<UInt8>, context: ChannelHandlerContext) {
        guard let first = octets.first, context.channel.isActive else { return }
        self.write([first], context: context)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(1)) {
            let (handler, context) = bound.value
            handler.trickle(octets.dropFirst(), context: context)
        }
    }
}
