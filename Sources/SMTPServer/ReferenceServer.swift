import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
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
        /// STARTTLS or TLS from the first byte, with this identity; `nil` for plaintext only.
        public var tls: TLS?
        /// Expect a PROXY protocol header (v1 or v2) first, from the policy's proxy hosts only.
        public var proxyProtocol = false

        public struct TLS: Sendable {
            public enum Mode: String, Sendable, Hashable, CaseIterable {
                case starttls
                case implicit
            }

            public var mode: Mode
            public var identity: TLSIdentity

            public init(mode: Mode, identity: TLSIdentity) {
                self.mode = mode
                self.identity = identity
            }
        }

        public init(
            policy: Policy, host: String = "127.0.0.1", port: Int = 0, faults: PolicySession.Faults = [], maildir: String? = nil,
            tls: TLS? = nil
        ) {
            self.tls = tls
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
        let pipeline = try SessionPipeline(configuration: configuration, store: store)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try pipeline.configure(channel) }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return try ReferenceServer(configuration: configuration, channel: channel, store: store)
    }

    /// Stops listening. Sessions in progress end when their clients go.
    public func stop() async throws {
        try await self.channel.close()
    }
}

/// The handlers of one server session, for a socket or an in-memory channel.
public struct SessionPipeline: Sendable {
    let configuration: ReferenceServer.Configuration
    let store: MessageStore
    let sslContext: NIOSSLContext?
    let availability: PolicySession.TLSAvailability

    public init(configuration: ReferenceServer.Configuration, store: MessageStore) throws {
        self.configuration = configuration
        self.store = store
        self.sslContext = try configuration.tls.map { try $0.identity.serverContext() }
        switch configuration.tls?.mode {
        case .starttls: self.availability = .starttls
        case .implicit: self.availability = .implicit
        case nil: self.availability = .none
        }
    }

    /// Adds the session's handlers; call on the channel's event loop.
    public func configure(_ channel: any Channel) throws {
        let policy = self.configuration.policy
        let faults = self.configuration.faults
        let availability = self.availability
        let makeSession: @Sendable (String?, String?) -> PolicySession = { client, peer in
            PolicySession(policy: policy, clientAddress: client, faults: faults, tls: availability, peer: peer)
        }
        let session = makeSession(channel.remoteAddress?.ipAddress, nil)
        if self.configuration.proxyProtocol {
            try channel.pipeline.syncOperations.addHandler(ProxyHeaderHandler(allowed: policy.proxyHosts))
        }
        if self.availability == .implicit, let sslContext {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        }
        let framing = LineFramingHandler(maximumLength: self.configuration.maximumLineLength)
        try channel.pipeline.syncOperations.addHandler(framing)
        try channel.pipeline.syncOperations.addHandler(
            ServerSessionHandler(
                session: session, store: self.store, idleTimeout: .seconds(Int64(self.configuration.policy.limits.idleTimeout)),
                framing: framing, sslContext: self.availability == .starttls ? self.sslContext : nil,
                proxied: self.configuration.proxyProtocol ? makeSession : nil))
    }
}

public struct ServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// Carries out a ``PolicySession``'s responses on one connection.
final class ServerSessionHandler: ChannelInboundHandler {
    typealias InboundIn = FramedInput
    typealias OutboundOut = ByteBuffer

    private var session: PolicySession
    private let store: MessageStore
    private let idleTimeout: TimeAmount
    private var idleTask: Scheduled<Void>?
    private var closing = false
    private let framing: LineFramingHandler
    private let sslContext: NIOSSLContext?
    /// Between the 220 to STARTTLS and the end of the handshake: lines that
    /// arrive then were pipelined in plaintext behind STARTTLS.
    private var awaitingHandshake = false
    /// What a server with the injection bug keeps to answer inside TLS.
    private var injected: [LineFramer.Line] = []
    /// Set until the greeting has gone out; lines before it are early talk.
    private var greeted = false
    private var early: [LineFramer.Line] = []

    /// Set on a PROXY listener: the session is made, and the greeting sent,
    /// once the header names the client.
    private let proxied: (@Sendable (String?, String?) -> PolicySession)?

    init(
        session: PolicySession, store: MessageStore, idleTimeout: TimeAmount, framing: LineFramingHandler, sslContext: NIOSSLContext?,
        proxied: (@Sendable (String?, String?) -> PolicySession)? = nil
    ) {
        self.proxied = proxied
        self.session = session
        self.store = store
        self.idleTimeout = idleTimeout
        self.framing = framing
        self.sslContext = sslContext
    }

    func channelActive(context: ChannelHandlerContext) {
        guard self.proxied == nil else {
            context.fireChannelActive()
            return
        }
        self.greet(context: context)
        context.fireChannelActive()
    }

    private func greet(context: ChannelHandlerContext) {
        let pause = self.session.oracle.policy.limits.greetPauseMilliseconds
        guard pause > 0 else {
            self.sendGreeting(context: context)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(Int64(pause))) {
            let (handler, context) = loopBound.value
            guard !handler.closing else { return }
            handler.sendGreeting(context: context)
        }
    }

    private func sendGreeting(context: ChannelHandlerContext) {
        self.greeted = true
        var buffer = context.channel.allocator.buffer(capacity: 64)
        self.session.greeting.writeWire(into: &buffer)
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        self.armIdleTimer(context: context)
        // What the client said before the greeting is answered now, in order.
        let early = self.early
        self.early = []
        for line in early where !self.closing { self.process(line, context: context, followed: true) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.idleTask?.cancel()
        self.idleTask = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        let line: LineFramer.Line
        switch self.unwrapInboundIn(data) {
        case .line(let framed):
            line = framed
        case .chunk(let bytes):
            let response = self.session.receiveChunk(bytes)
            if let message = response.message { self.store.add(message) }
            self.carryOut(response, context: context)
            return
        }
        if !self.greeted {
            if self.early.isEmpty { self.session.clientTalkedEarly() }
            self.early.append(line)
            return
        }
        if self.awaitingHandshake {
            // RFC 3207 6: plaintext pipelined behind STARTTLS is discarded.
            if self.session.faults.contains(.starttlsInjection) { self.injected.append(line) }
            return
        }
        self.process(line, context: context, followed: self.framing.hasBufferedLine)
    }

    private func process(_ line: LineFramer.Line, context: ChannelHandlerContext, followed: Bool = false) {
        let response = self.session.receive(line, followed: followed)
        if let message = response.message { self.store.add(message) }
        if let size = response.readChunk, size > 0 { self.framing.expectChunk(size) }
        self.carryOut(response, context: context)
        if response.startTLS && !self.closing, let sslContext = self.sslContext {
            self.awaitingHandshake = true
            if !self.session.faults.contains(.starttlsInjection) { _ = self.framing.discardBuffered() }
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext), position: .first)
            } catch {
                context.close(promise: nil)
            }
        }
        if !self.closing { self.armIdleTimer(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let proxied = event as? ProxyHeaderHandler.ProxiedClient, let make = self.proxied {
            let ignore = self.session.faults.contains(.ignoreClientIdentity)
            self.session = make(ignore ? proxied.peer : (proxied.address ?? proxied.peer), proxied.peer)
            self.greet(context: context)
            return
        }
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, self.awaitingHandshake {
            self.awaitingHandshake = false
            self.session.tlsEstablished()
            let injected = self.injected
            self.injected = []
            for line in injected where !self.closing { self.process(line, context: context) }
        }
        context.fireUserInboundEventTriggered(event)
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
