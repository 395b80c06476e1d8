import NIOCore
import NIOPosix
import SMTPCodec
import SMTPProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// A scripted SMTP client connection on SwiftNIO. It sends exactly the
/// octets it is given and hands back every response in arrival order,
/// paired by the multi-line rule, never by socket reads.
public final class SMTPClientConnection: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// A local address to bind before connecting (the `trusted` identity).
        public var sourceAddress: String?
        public var connectTimeout: TimeAmount

        public init(host: String, port: Int, sourceAddress: String? = nil, connectTimeout: TimeAmount = .seconds(10)) {
            self.host = host
            self.port = port
            self.sourceAddress = sourceAddress
            self.connectTimeout = connectTimeout
        }
    }

    /// What waiting for a response ended with.
    public enum Event: Sendable, Hashable {
        case response(ServerResponse)
        /// The server closed the connection with no further response.
        case closed(unconsumed: [UInt8])
        case timedOut(unconsumed: [UInt8])
    }

    private let channel: any Channel
    private let collector: NIOLoopBound<ResponseCollector>

    public var localAddress: String? { self.channel.localAddress.map(Self.describe) }
    public var remoteAddress: String? { self.channel.remoteAddress.map(Self.describe) }

    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    private init(channel: any Channel, collector: NIOLoopBound<ResponseCollector>) {
        self.channel = channel
        self.collector = collector
    }

    public static func connect(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(ClientError) -> SMTPClientConnection {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
        if let source = configuration.sourceAddress {
            do {
                bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
            } catch {
                throw ClientError(.badSourceAddress(source, "\(error)"))
            }
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw ClientError(.connectFailed("\(configuration.host):\(configuration.port)", Self.explain(error)))
        }
        do {
            let collector = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ResponseCollector.self), eventLoop: channel.eventLoop)
            }.get()
            return SMTPClientConnection(channel: channel, collector: collector)
        } catch {
            try? await channel.close()
            throw ClientError(.connectFailed("\(configuration.host):\(configuration.port)", "\(error)"))
        }
    }

    /// A connect failure in a few words: "Connection refused", "timed out", a DNS error.
    static func explain(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError {
            if connection.connectionErrors.isEmpty { return connection.description }
            return connection.connectionErrors.map { failure in
                let reason = (failure.error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(failure.error)"
                return "\(failure.target.ipAddress ?? "\(failure.target)"): \(reason)"
            }.joined(separator: "; ")
        }
        if error is ChannelError { return "connection timed out (\(error))" }
        return "\(error)"
    }

    /// Writes the octets in one write (a pipelined group is one call).
    public func send(_ bytes: [UInt8]) async throws(ClientError) {
        do {
            try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes))
        } catch {
            throw ClientError(.writeFailed("\(error)"))
        }
    }

    /// The next response, or how waiting for it ended.
    public func nextEvent(timeout: TimeAmount) async -> Event {
        let collector = self.collector
        let future = self.channel.eventLoop.flatSubmit {
            collector.value.next(timeout: timeout, eventLoop: collector.eventLoop)
        }
        do {
            return try await future.get()
        } catch {
            return .closed(unconsumed: [])
        }
    }

    /// Whether the server has closed its side.
    public var isClosed: Bool {
        get async {
            let collector = self.collector
            return (try? await self.channel.eventLoop.submit { collector.value.isClosed }.get()) ?? true
        }
    }

    public func close() async {
        try? await self.channel.close()
    }
}

public struct ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case connectFailed(String, String)
        case badSourceAddress(String, String)
        case writeFailed(String)
    }

    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch self.kind {
        case .connectFailed(let target, let reason): "cannot connect to \(target): \(reason)"
        case .badSourceAddress(let address, let reason): "cannot bind source address \(address): \(reason)"
        case .writeFailed(let reason): "write failed: \(reason)"
        }
    }
}

/// Frames and parses what the server sends, queues the responses and hands
/// them out one at a time, with a time-out per wait.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Reply lines over 512 octets are findings; the cap only bounds memory.
    private var framer = LineFramer(maximumLength: 8192)
    private var parser = ReplyParser()
    private var ready = CircularBuffer<ServerResponse>()
    private var waiter: (promise: EventLoopPromise<SMTPClientConnection.Event>, timeout: Scheduled<Void>)?
    private(set) var isClosed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.framer.append(self.unwrapInboundIn(data).readableBytesView)
        while let line = self.framer.next() {
            if let response = self.parser.feed(line) { self.ready.append(response) }
        }
        self.deliver()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isClosed = true
        self.deliver()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func next(timeout: TimeAmount, eventLoop: any EventLoop) -> EventLoopFuture<SMTPClientConnection.Event> {
        precondition(self.waiter == nil, "one wait at a time")
        let promise = eventLoop.makePromise(of: SMTPClientConnection.Event.self)
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        let task = eventLoop.scheduleTask(in: timeout) {
            let collector = loopBound.value
            guard let waiter = collector.waiter else { return }
            collector.waiter = nil
            waiter.promise.succeed(.timedOut(unconsumed: collector.framer.unconsumed))
        }
        self.waiter = (promise, task)
        self.deliver()
        return promise.futureResult
    }

    private func deliver() {
        guard let waiter = self.waiter else { return }
        if let response = self.ready.popFirst() {
            self.waiter = nil
            waiter.timeout.cancel()
            waiter.promise.succeed(.response(response))
        } else if self.isClosed {
            self.waiter = nil
            waiter.timeout.cancel()
            waiter.promise.succeed(.closed(unconsumed: self.framer.unconsumed))
        }
    }
}
