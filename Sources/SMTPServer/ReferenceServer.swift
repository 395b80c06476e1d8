import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SMTPCodec
import SMTPPolicy
import SMTPProtocol

/// The reference SMTP server: answers every command through
/// ``PolicySession``, keeps accepted messages in memory (and in a Maildir when
/// asked), and never relays anything anywhere.
public final class ReferenceServer: Sendable {
    public struct Configuration: Sendable {
        public var policy: Policy
        public var host: String
        /// 0 picks a free port.
        public var port: Int
        public var faults: PolicySession.Faults
        /// Where accepted messages are also written, Maildir style.
        public var maildir: String?
        /// Hard cap on a buffered line; longer lines are cut and refused.
        public var maximumLineLength: Int

        public init(policy: Policy, host: String = "127.0.0.1", port: Int = 0, faults: PolicySession.Faults = [], maildir: String? = nil) {
            self.policy = policy
            self.host = host
            self.port = port
            self.faults = faults
            self.maildir = maildir
            self.maximumLineLength = 4096
        }
    }

    public let configuration: Configuration
    public let localAddress: SocketAddress
    public let store: MessageStore
    private let channel: any Channel

    private init(configuration: Configuration, channel: any Channel, store: MessageStore) throws {
        guard let address = channel.localAddress else { throw ServerError(message: "the listening socket has no address") }
        self.configuration = configuration
        self.channel = channel
        self.store = store
        self.localAddress = address
    }

    /// The port it listens on.
    public var port: Int { self.localAddress.port ?? 0 }

    public static func start(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ReferenceServer {
        let store = try MessageStore(maildir: configuration.maildir)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = PolicySession(
                        policy: configuration.policy, clientAddress: channel.remoteAddress?.ipAddress, faults: configuration.faults)
                    try channel.pipeline.syncOperations.addHandler(LineFramingHandler(maximumLength: configuration.maximumLineLength))
                    try channel.pipeline.syncOperations.addHandler(
                        ServerSessionHandler(
                            session: session, store: store, idleTimeout: .seconds(Int64(configuration.policy.limits.idleTimeout))))
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return try ReferenceServer(configuration: configuration, channel: channel, store: store)
    }

    /// Stops listening. Sessions in progress end when their clients go.
    public func stop() async throws {
        try await self.channel.close()
    }
}

public struct ServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// Carries out a ``PolicySession``'s responses on one connection.
final class ServerSessionHandler: ChannelInboundHandler {
    typealias InboundIn = LineFramer.Line
    typealias OutboundOut = ByteBuffer

    private var session: PolicySession
    private let store: MessageStore
    private let idleTimeout: TimeAmount
    private var idleTask: Scheduled<Void>?
    private var closing = false

    init(session: PolicySession, store: MessageStore, idleTimeout: TimeAmount) {
        self.session = session
        self.store = store
        self.idleTimeout = idleTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        self.session.greeting.writeWire(into: &buffer)
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        self.armIdleTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.idleTask?.cancel()
        self.idleTask = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        let response = self.session.receive(self.unwrapInboundIn(data))
        if let message = response.message { self.store.add(message) }
        self.carryOut(response, context: context)
        if !self.closing { self.armIdleTimer(context: context) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func carryOut(_ response: PolicySession.Response, context: ChannelHandlerContext) {
        if !response.replies.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: 128)
            for reply in response.replies { reply.reply.writeWire(into: &buffer) }
            context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        }
        if response.close {
            self.closing = true
            self.idleTask?.cancel()
            context.close(promise: nil)
        }
    }

    private func armIdleTimer(context: ChannelHandlerContext) {
        self.idleTask?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.idleTask = context.eventLoop.scheduleTask(in: self.idleTimeout) {
            let (handler, context) = loopBound.value
            guard !handler.closing else { return }
            handler.carryOut(handler.session.idleTimeout(), context: context)
        }
    }
}
