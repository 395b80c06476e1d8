import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
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
        /// TLS from the first byte (RFC 8314), with these options.
        public var implicitTLS: ClientTLSOptions?
        /// Keep every octet sent and received, as on the wire (below TLS).
        public var record = false
        /// Octets written as soon as the connection is up (a PROXY header).
        public var preamble: [UInt8]?

        public init(
            host: String, port: Int, sourceAddress: String? = nil, connectTimeout: TimeAmount = .seconds(10),
            implicitTLS: ClientTLSOptions? = nil, record: Bool = false, preamble: [UInt8]? = nil
        ) {
            self.record = record
            self.preamble = preamble
            self.host = host
            self.port = port
            self.sourceAddress = sourceAddress
            self.connectTimeout = connectTimeout
            self.implicitTLS = implicitTLS
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
    private let host: String
    private let recording: NIOLockedValueBox<[RecordedChunk]>?
    /// How TLS came up at connect time (implicit TLS), if it did.
    public let implicitTLSOutcome: TLSOutcome?

    /// What a TLS handshake showed.
    public struct TLSOutcome: Sendable, Hashable {
        public var version: String?
        public var certificate: CertificateSummary?
        /// Plaintext received after the 220 to STARTTLS, dropped unread.
        public var droppedPlaintext: [UInt8]

        public init(version: String?, certificate: CertificateSummary?, droppedPlaintext: [UInt8]) {
            self.version = version
            self.certificate = certificate
            self.droppedPlaintext = droppedPlaintext
        }
    }

    /// Both ends, as they were when the connection was made (a closed channel forgets them).
    public let localAddress: String?
    public let remoteAddress: String?

    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    private init(
        channel: any Channel, collector: NIOLoopBound<ResponseCollector>, host: String, implicitTLSOutcome: TLSOutcome?,
        recording: NIOLockedValueBox<[RecordedChunk]>?
    ) {
        self.recording = recording
        self.localAddress = channel.localAddress.map(Self.describe)
        self.remoteAddress = channel.remoteAddress.map(Self.describe)
        self.channel = channel
        self.collector = collector
        self.host = host
        self.implicitTLSOutcome = implicitTLSOutcome
    }

    /// The name for SNI and the certificate check: the option, else the host
    /// when it is a name (an IP address is checked against IP SANs instead).
    static func serverName(_ options: ClientTLSOptions, host: String) -> String? {
        if let name = options.serverName { return name }
        return IPAddressText.ipv4(host) == nil && IPAddressText.ipv6(host) == nil ? host : nil
    }

    /// A client TLS handler whose verification callback inspects the chain
    /// with swift-certificates and stores what it found in `report`.
    static func makeTLSHandler(
        _ options: ClientTLSOptions, host: String, report: NIOLockedValueBox<CertificateSummary?>
    ) throws -> NIOSSLClientHandler {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv1
        let context = try NIOSSLContext(configuration: configuration)
        let name = Self.serverName(options, host: host)
        let checked = name ?? host
        return try NIOSSLClientHandler(context: context, serverHostname: name) { chain, promise in
            Task {
                let summary = await CertificateInspector.inspect(chain: chain, hostname: checked, options: options)
                report.withLockedValue { $0 = summary }
                let refuse = options.verification == .strict && summary?.verified != true
                promise.succeed(refuse ? .failed : .certificateVerified)
            }
        }
    }

    /// Why a handshake failed, in a sentence: the certificate's verdict when
    /// strict verification refused it, else what the TLS library said.
    static func explainHandshake(_ error: any Error, _ certificate: CertificateSummary?, _ options: ClientTLSOptions) -> String {
        if options.verification == .strict, let certificate, !certificate.verified {
            return "the server certificate was refused (--tls-verify strict): \(certificate.verification)"
        }
        if let ssl = error as? NIOSSLError { return "\(ssl)" }
        return "\(error)"
    }

    static func negotiatedVersion(_ channel: any Channel) async throws -> String? {
        try await channel.eventLoop.submit {
            Self.describe(try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).tlsVersion)
        }.get()
    }

    static func describe(_ version: TLSVersion?) -> String? {
        switch version {
        case .tlsv1: "TLSv1.0"
        case .tlsv11: "TLSv1.1"
        case .tlsv12: "TLSv1.2"
        case .tlsv13: "TLSv1.3"
        case nil: nil
        }
    }

    /// Upgrades the connection in place after a 220 to STARTTLS (RFC 3207):
    /// drops whatever plaintext is buffered, handshakes, and reports the certificate.
    public func startTLS(_ options: ClientTLSOptions) async throws(ClientError) -> TLSOutcome {
        let report = NIOLockedValueBox<CertificateSummary?>(nil)
        let collector = self.collector
        let host = self.host
        let channel = self.channel
        let handshake = channel.eventLoop.makePromise(of: Void.self)
        let setUp = channel.eventLoop.submit { () throws -> [UInt8] in
            let dropped = collector.value.discardBuffered()
            let handler = try Self.makeTLSHandler(options, host: host, report: report)
            if let recorder = try? channel.pipeline.syncOperations.handler(type: TrafficRecorder.self) {
                try channel.pipeline.syncOperations.addHandler(handler, position: .after(recorder))
            } else {
                try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            }
            try channel.pipeline.syncOperations.addHandler(HandshakeObserver(promise: handshake), position: .after(handler))
            return dropped
        }
        do {
            let dropped = try await setUp.get()
            try await handshake.futureResult.get()
            let version = try await Self.negotiatedVersion(channel)
            return TLSOutcome(version: version, certificate: report.withLockedValue { $0 }, droppedPlaintext: dropped)
        } catch {
            throw ClientError(.tlsFailed(Self.explainHandshake(error, report.withLockedValue { $0 }, options)))
        }
    }

    public static func connect(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(ClientError) -> SMTPClientConnection {
        let report = NIOLockedValueBox<CertificateSummary?>(nil)
        let handshake = NIOLockedValueBox<EventLoopFuture<Void>?>(nil)
        let recording = configuration.record ? NIOLockedValueBox<[RecordedChunk]>([]) : nil
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let recording { try channel.pipeline.syncOperations.addHandler(TrafficRecorder(log: recording)) }
                    if let preamble = configuration.preamble { try channel.pipeline.syncOperations.addHandler(PreambleWriter(preamble)) }
                    if let options = configuration.implicitTLS {
                        let promise = channel.eventLoop.makePromise(of: Void.self)
                        handshake.withLockedValue { $0 = promise.futureResult }
                        let handler = try Self.makeTLSHandler(options, host: configuration.host, report: report)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        try channel.pipeline.syncOperations.addHandler(HandshakeObserver(promise: promise))
                    }
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
            var outcome: TLSOutcome?
            if let future = handshake.withLockedValue({ $0 }) {
                do {
                    try await future.get()
                } catch {
                    let options = configuration.implicitTLS ?? ClientTLSOptions()
                    try? await channel.close()
                    throw ClientError(.tlsFailed(Self.explainHandshake(error, report.withLockedValue { $0 }, options)))
                }
                let version = try await Self.negotiatedVersion(channel)
                outcome = TLSOutcome(version: version, certificate: report.withLockedValue { $0 }, droppedPlaintext: [])
            }
            return SMTPClientConnection(
                channel: channel, collector: collector, host: configuration.host, implicitTLSOutcome: outcome, recording: recording)
        } catch let error as ClientError {
            throw error
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
        } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed || error == .outputClosed {
            throw ClientError(.connectionClosed)
        } catch let error as IOError where [EPIPE, ECONNRESET].contains(error.errnoCode) {
            throw ClientError(.connectionClosed)
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

    /// What went over the wire, in order, when the connection was made with `record`.
    public var recorded: [RecordedChunk] { self.recording?.withLockedValue { $0 } ?? [] }
}

public struct ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case connectFailed(String, String)
        case badSourceAddress(String, String)
        case writeFailed(String)
        case tlsFailed(String)
        /// The server had closed the connection when the client wrote.
        case connectionClosed
    }

    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch self.kind {
        case .connectFailed(let target, let reason): "cannot connect to \(target): \(reason)"
        case .badSourceAddress(let address, let reason): "cannot bind source address \(address): \(reason)"
        case .writeFailed(let reason): "write failed: \(reason)"
        case .tlsFailed(let reason): "TLS handshake failed: \(reason)"
        case .connectionClosed: "the server had closed the connection"
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

    /// Drops buffered octets and replies not yet handed out; returns them as
    /// sent (for the report: plaintext after the 220 to STARTTLS).
    func discardBuffered() -> [UInt8] {
        var dropped: [UInt8] = []
        while let response = self.ready.popFirst() {
            switch response {
            case .reply(let reply): dropped += Array(reply.wireFormat.utf8)
            case .malformed(let malformed): dropped += malformed.lines.flatMap { $0 + [0x0D, 0x0A] }
            }
        }
        dropped += self.framer.unconsumed
        self.framer.discardBuffered()
        self.parser = ReplyParser()
        return dropped
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

/// Octets that crossed the wire, one write or read.
public struct RecordedChunk: Sendable, Hashable {
    public var fromClient: Bool
    public var bytes: [UInt8]
    /// Seconds since the epoch.
    public var time: Double
}

/// Keeps a copy of every octet written and read, at the head of the pipeline.
final class TrafficRecorder: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let log: NIOLockedValueBox<[RecordedChunk]>

    init(log: NIOLockedValueBox<[RecordedChunk]>) {
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(self.unwrapInboundIn(data).readableBytesView)
        self.log.withLockedValue { $0.append(RecordedChunk(fromClient: false, bytes: bytes, time: Date().timeIntervalSince1970)) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = Array(self.unwrapOutboundIn(data).readableBytesView)
        self.log.withLockedValue { $0.append(RecordedChunk(fromClient: true, bytes: bytes, time: Date().timeIntervalSince1970)) }
        context.write(data, promise: promise)
    }
}

/// Writes a preamble (a PROXY header) the moment the connection is up,
/// before TLS and before anything else, then steps aside.
final class PreambleWriter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: self.bytes)), promise: nil)
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
