import NIOCore
import NIOPosix
import NIOSSL
import SMTPCodec
import SMTPPolicy

/// The reference SMTP server: answers every command through
/// ``PolicySession``, keeps what it accepted in a bounded ``MessageStore``
/// (and in a Maildir when asked), and never relays anything anywhere.
public final class ReferenceServer: Sendable {
    public struct Configuration: Sendable {
        public var policy: Policy
        public var host: String
        /// 0 picks a free port.
        public var port: Int
        public var faults: ServerFaults
        /// Where accepted messages are also written, Maildir style.
        public var maildir: String?
        /// Hard cap on a buffered line; longer lines are cut and refused.
        public var maximumLineLength: Int
        /// STARTTLS or TLS from the first byte, with this identity; `nil` for plaintext only.
        public var tls: TLS?
        /// Expect a PROXY protocol header (v1 or v2) first, from the policy's proxy hosts only.
        public var proxyProtocol = false
        /// How long a TLS handshake may take.
        public var handshakeTimeout: TimeAmount = .seconds(30)
        /// Called once as each session ends, with what happened in it (on the
        /// session's event loop: keep it short).
        public var sessionEnded: (@Sendable (SessionSummary) -> Void)?

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
            policy: Policy, host: String = "127.0.0.1", port: Int = 0, faults: ServerFaults = [], maildir: String? = nil, tls: TLS? = nil
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
    /// The event loops it made for itself, shut down by `stop()`.
    private let ownLoops: MultiThreadedEventLoopGroup?

    private init(configuration: Configuration, channel: any Channel, store: MessageStore, ownLoops: MultiThreadedEventLoopGroup?) throws {
        guard let address = channel.localAddress else { throw ServerError(message: "the listening socket has no address") }
        self.configuration = configuration
        self.channel = channel
        self.store = store
        self.localAddress = address
        self.ownLoops = ownLoops
    }

    /// How many event loops a server of its own takes by default: half the
    /// cores, at least one. It listens on loopback, so its clients run on
    /// the same machine, and they need the other half: under Postfix's
    /// smtp-source on two cores, one loop serves 20,000 sessions a fifth
    /// faster than two, which fight the client for the cores.
    public static var defaultThreads: Int { max(1, System.coreCount / 2) }

    /// Starts the server on `threads` event loops of its own, which `stop()`
    /// shuts down.
    public static func start(_ configuration: Configuration, threads: Int) async throws -> ReferenceServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        do {
            return try await Self.start(configuration, group: group, ownLoops: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// The port it listens on.
    public var port: Int { self.localAddress.port ?? 0 }

    public static func start(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ReferenceServer {
        try await Self.start(configuration, group: group, ownLoops: nil)
    }

    private static func start(
        _ configuration: Configuration, group: any EventLoopGroup, ownLoops: MultiThreadedEventLoopGroup?
    ) async throws -> ReferenceServer {
        let store = try MessageStore(maildir: configuration.maildir)
        let pipeline = try SessionPipeline(configuration: configuration, store: store)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A thousand clients connecting at once queue in the kernel rather
            // than being refused (the default backlog is 128; the kernel caps
            // this at net.core.somaxconn).
            .serverChannelOption(.backlog, value: 4096)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try pipeline.configure(channel) }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch {
            throw ServerError(message: "cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
        return try ReferenceServer(configuration: configuration, channel: channel, store: store, ownLoops: ownLoops)
    }

    /// Stops listening. Sessions in progress end when their clients go, or,
    /// on event loops of its own, now, as those shut down.
    public func stop() async throws {
        try await self.channel.close()
        try await self.ownLoops?.shutdownGracefully()
    }
}

/// The handlers of one server session, for a socket or an in-memory channel.
public struct SessionPipeline: Sendable {
    let configuration: ReferenceServer.Configuration
    let store: MessageStore
    let sslContext: NIOSSLContext?
    let availability: PolicySession.TLSAvailability
    /// The policy the server runs: the real one, bent by its faults.
    let servedPolicy: Policy
    /// Connections open per client address, for `connections_per_client`.
    let connections = ConnectionCounter()

    public init(configuration: ReferenceServer.Configuration, store: MessageStore) throws {
        self.configuration = configuration
        self.store = store
        self.sslContext = try configuration.tls.map { try $0.identity.serverContext() }
        switch configuration.tls?.mode {
        case .starttls: self.availability = .starttls
        case .implicit: self.availability = .implicit
        case nil: self.availability = .none
        }
        self.servedPolicy = configuration.faults.adjust(configuration.policy)
    }

    /// A session for a client (and, behind a PROXY header, the peer that sent it).
    func makeSession(client: String?, peer: String?) -> PolicySession {
        PolicySession(
            .init(
                policy: self.servedPolicy, clientAddress: client, peer: peer, tls: self.availability, queueIDs: .random(),
                authenticator: self.configuration.faults.authenticator(for: self.servedPolicy)))
    }

    /// Adds the session's handlers; call on the channel's event loop.
    public func configure(_ channel: any Channel) throws {
        let operations = channel.pipeline.syncOperations
        let limit = self.servedPolicy.limits.connectionsPerClient
        if limit > 0, let address = channel.remoteAddress?.ipAddress,
            !self.servedPolicy.trustedNetworks.contains(address: address)
        {
            try operations.addHandler(
                ConnectionGate(
                    counter: self.connections, address: address, limit: limit, serverName: self.servedPolicy.serverName,
                    says421: self.availability != .implicit))
        }
        if self.configuration.proxyProtocol {
            try operations.addHandler(ProxyHeaderHandler(allowed: self.configuration.policy.proxyHosts))
        }
        if self.availability == .implicit, let sslContext {
            try operations.addHandler(NIOSSLServerHandler(context: sslContext))
        }
        // A client that sends without reading the replies is not read from
        // until they have gone out: the server's memory stays bounded.
        try operations.addHandler(BackPressureHandler())
        let framing = LineFramingHandler(maximumLength: self.configuration.maximumLineLength)
        try operations.addHandler(framing)
        try operations.addHandler(
            ServerSessionHandler(
                pipeline: self, session: self.makeSession(client: channel.remoteAddress?.ipAddress, peer: nil), framing: framing,
                waitsForProxyHeader: self.configuration.proxyProtocol))
    }
}

public struct ServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// What one session of the reference server came to, for its log line.
public struct SessionSummary: Sendable, Hashable {
    /// The client as the policy saw it (behind a PROXY header, the client it names).
    public var client: String
    /// The connection's own peer, where a PROXY header named another client.
    public var peer: String?
    /// `trusted`, `authenticated` or `external`.
    public var identity: String
    public var user: String?
    public var helo: String?
    public var tls: Bool
    /// The rules whose refusals the session gave, in the order they first fired.
    public var rules: [RuleID]
    public var messages: Int
    /// How it ended: `quit`, `closed by the client`, `timed out`, `too many errors`, `closed by the server`.
    public var outcome: String
    public var seconds: Double
}
