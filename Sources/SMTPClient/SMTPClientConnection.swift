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
        /// How long a TLS handshake may take.
        public var handshakeTimeout: TimeAmount = .seconds(10)

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

    private let channel: any Channel
    private let collector: NIOLoopBound<ResponseCollector>
    private let host: String
    private let recording: NIOLockedValueBox<[RecordedChunk]>?
    private let handshakeTimeout: TimeAmount
    /// How TLS came up at connect time (implicit TLS), if it did.
    public let implicitTLSOutcome: TLSOutcome?

    /// Both ends, as they were when the connection was made (a closed channel forgets them).
    public let localAddress: String?
    public let remoteAddress: String?

    static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    private init(
        channel: any Channel, collector: NIOLoopBound<ResponseCollector>, host: String, implicitTLSOutcome: TLSOutcome?,
        recording: NIOLockedValueBox<[RecordedChunk]>?, handshakeTimeout: TimeAmount
    ) {
        self.recording = recording
        self.handshakeTimeout = handshakeTimeout
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

    /// The client's TLS settings. Verification is the callback's (below); a
    /// server that never answers close_notify holds a session up one second at most.
    static var tlsConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv1
        configuration.shutdownTimeout = .seconds(1)
        return configuration
    }

    /// A client TLS handler whose verification callback inspects the chain
    /// with swift-certificates and stores what it found in `report`.
    static func makeTLSHandler(
        _ options: ClientTLSOptions, host: String, report: NIOLockedValueBox<CertificateSummary?>
    ) throws -> NIOSSLClientHandler {
        let context = try NIOSSLContext(configuration: Self.tlsConfiguration)
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
    /// strict verification refused it (the client's choice), else what the
    /// TLS library said.
    static func explainHandshake(_ error: any Error, _ certificate: CertificateSummary?, _ options: ClientTLSOptions)
        -> ClientError.Kind
    {
        if options.verification == .strict, let certificate, !certificate.verified {
            return .certificateRefused("the server certificate was refused (strict verification): \(certificate.verification)")
        }
        let text = (error as? NIOSSLError).map { "\($0)" } ?? "\(error)"
        return .tlsFailed(Self.readable(handshakeError: text))
    }

    /// BoringSSL's error text, said the way an admin reads it: the alert the
    /// server sent, or plain text where TLS records were due; else as it came.
    static func readable(handshakeError text: String) -> String {
        if let range = text.range(of: "TLSV1_ALERT_") {
            let name = text[range.upperBound...].prefix { $0.isLetter || $0 == "_" }
            return "the server sent the fatal TLS alert \(name.lowercased())"
        }
        if text.contains("WRONG_VERSION_NUMBER") {
            return "what came back was not a TLS record: the server did not start TLS"
        }
        return text
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
    /// A handshake not done within `timeout` (by default the connection's
    /// handshake time-out) fails and closes the connection.
    public func startTLS(_ options: ClientTLSOptions, timeout: TimeAmount? = nil) async throws(ClientError) -> TLSOutcome {
        let report = NIOLockedValueBox<CertificateSummary?>(nil)
        let collector = self.collector
        let host = self.host
        let channel = self.channel
        let timeout = timeout.map { min($0, self.handshakeTimeout) } ?? self.handshakeTimeout
        let setUp = channel.eventLoop.submit { () throws -> ([UInt8], EventLoopFuture<Void>) in
            let dropped = collector.value.discardBuffered()
            let handler = try Self.makeTLSHandler(options, host: host, report: report)
            let recorder = try? channel.pipeline.syncOperations.handler(type: TrafficRecorder.self)
            return (dropped, try TLSUpgrade.install(handler, on: channel, after: recorder, timeout: timeout, watchRecords: true))
        }
        do {
            let (dropped, handshake) = try await setUp.get()
            try await handshake.get()
            let version = try await Self.negotiatedVersion(channel)
            return TLSOutcome(version: version, certificate: report.withLockedValue { $0 }, droppedPlaintext: dropped)
        } catch {
            throw ClientError(Self.explainHandshake(error, report.withLockedValue { $0 }, options))
        }
    }

    public static func connect(
        _ configuration: Configuration, group: (any EventLoopGroup)? = nil
    ) async throws(ClientError) -> SMTPClientConnection {
        // On the loop the task runs on, where it runs on one.
        let group = group ?? EventLoopExecutor.currentLoop ?? MultiThreadedEventLoopGroup.singleton
        let report = NIOLockedValueBox<CertificateSummary?>(nil)
        let handshake = NIOLockedValueBox<EventLoopFuture<Void>?>(nil)
        let recording = configuration.record ? NIOLockedValueBox<[RecordedChunk]>([]) : nil
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let recording { try operations.addHandler(TrafficRecorder(log: recording)) }
                    if let preamble = configuration.preamble { try operations.addHandler(PreambleWriter(preamble)) }
                    let framing = LineFramingHandler(maximumLength: 8192)
                    let decoder = ReplyDecodingHandler()
                    try operations.addHandlers([framing, decoder, ResponseCollector(framing: framing, decoder: decoder)])
                    if let options = configuration.implicitTLS {
                        let handler = try Self.makeTLSHandler(options, host: configuration.host, report: report)
                        let recorder = try? operations.handler(type: TrafficRecorder.self)
                        let future = try TLSUpgrade.install(
                            handler, on: channel, after: recorder, timeout: configuration.handshakeTimeout, watchRecords: true)
                        handshake.withLockedValue { $0 = future }
                    }
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
            // An address literal is connected to as it is: the resolver
            // would look it up on a thread of its own for every case.
            if let address = try? SocketAddress(ipAddress: configuration.host, port: configuration.port) {
                channel = try await bootstrap.connect(to: address).get()
            } else {
                channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
            }
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
                    throw ClientError(Self.explainHandshake(error, report.withLockedValue { $0 }, options))
                }
                let version = try await Self.negotiatedVersion(channel)
                outcome = TLSOutcome(version: version, certificate: report.withLockedValue { $0 }, droppedPlaintext: [])
            }
            return SMTPClientConnection(
                channel: channel, collector: collector, host: configuration.host, implicitTLSOutcome: outcome, recording: recording,
                handshakeTimeout: configuration.handshakeTimeout)
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
            let collector = self.collector
            if let reason = try? await self.channel.eventLoop.submit({ collector.value.closedByClient }).get() {
                throw ClientError(.limitExceeded(reason))
            }
            throw ClientError(.connectionClosed)
        } catch let error as IOError where [EPIPE, ECONNRESET].contains(error.errnoCode) {
            throw ClientError(.connectionClosed)
        } catch {
            throw ClientError(.writeFailed("\(error)"))
        }
    }

    /// The next response, or how waiting for it ended.
    public func nextEvent(timeout: TimeAmount) async -> ClientEvent {
        let collector = self.collector
        let future = self.channel.eventLoop.flatSubmit {
            collector.value.next(timeout: timeout, eventLoop: collector.eventLoop)
        }
        do {
            return try await future.get()
        } catch {
            return .failed("\(error)")
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
        /// Strict verification refused the server's certificate: the client ended the handshake.
        case certificateRefused(String)
        /// The server had closed the connection when the client wrote.
        case connectionClosed
        /// The client had closed the connection: the server passed a bound.
        case limitExceeded(String)
    }

    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch self.kind {
        case .connectFailed(let target, let reason): "cannot connect to \(target): \(reason)"
        case .badSourceAddress(let address, let reason): "cannot bind source address \(address): \(reason)"
        case .writeFailed(let reason): "write failed: \(reason)"
        case .tlsFailed(let reason): "TLS handshake failed: \(reason)"
        case .certificateRefused(let reason): "TLS handshake stopped: \(reason)"
        case .connectionClosed: "the server had closed the connection"
        case .limitExceeded(let reason): reason
        }
    }
}
