import NIOCore
import SMTPCodec
import SMTPProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// What waiting for a response ended with.
public enum ClientEvent: Sendable, Hashable {
    case response(ServerResponse)
    /// The server closed the connection with no further response.
    case closed(unconsumed: [UInt8])
    /// The server reset the connection.
    case reset
    /// Plain text came where only TLS records may (the server left TLS).
    case plaintextAfterTLS(octets: Int, preview: [UInt8])
    case timedOut(unconsumed: [UInt8])
    /// The server passed a bound the client keeps (a reply without end,
    /// replies nobody asked for piling up): the connection was closed.
    case limitExceeded(String)
    /// The channel failed under the client: the error, in words.
    case failed(String)
}

/// Queues the responses ``ReplyDecodingHandler`` assembles and hands them
/// out one at a time, with a time-out per wait. It sits last in the
/// client's pipeline, behind the codec's framing and reply decoding.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = ServerResponse

    private let framing: LineFramingHandler
    private let decoder: ReplyDecodingHandler
    private var ready = CircularBuffer<ServerResponse>()
    /// Octets of the replies in `ready`: bounded, so that a server streaming
    /// replies faster than they are read cannot grow the client.
    private var readyOctets = 0
    /// Most octets of replies held before they are asked for.
    static let maximumReadyOctets = 1 << 20
    private var waiter: (promise: EventLoopPromise<ClientEvent>, timeout: Scheduled<Void>)?
    private(set) var isClosed = false
    /// Why the client closed the connection itself (a bound the server passed).
    private(set) var closedByClient: String?
    /// The error the channel failed with, kept until it is handed out.
    private var failure: ClientEvent?

    init(framing: LineFramingHandler, decoder: ReplyDecodingHandler) {
        self.framing = framing
        self.decoder = decoder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.failure == nil, !self.isClosed else { return }
        let response = self.unwrapInboundIn(data)
        if case .malformed(let malformed) = response, malformed.overLimit {
            return self.stop(.limitExceeded("\(malformed.reason): the server sent a multi-line reply without end"), context: context)
        }
        self.readyOctets += response.octets
        guard self.readyOctets <= Self.maximumReadyOctets else {
            return self.stop(
                .limitExceeded("replies over \(Self.maximumReadyOctets) octets came before they were asked for"), context: context)
        }
        self.ready.append(response)
        self.deliver()
    }

    /// Ends the connection on a bound passed: what was read stays to be
    /// handed out, then the reason.
    private func stop(_ event: ClientEvent, context: ChannelHandlerContext) {
        if case .limitExceeded(let reason) = event { self.closedByClient = reason }
        self.failure = event
        self.deliver()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isClosed = true
        self.deliver()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let plaintext = event as? PlaintextAfterTLS {
            self.failure = .plaintextAfterTLS(octets: plaintext.octets, preview: plaintext.preview)
            self.deliver()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Recorded with its cause, then the channel closes: a reset is the
        // server's doing; anything else reads as a failed connection, not as
        // a close by the server.
        if self.failure == nil {
            let reset = (error as? IOError).map { $0.errnoCode == ECONNRESET || $0.errnoCode == EPIPE } ?? false
            self.failure = reset ? .reset : .failed("\(error)")
        }
        self.deliver()
        context.close(promise: nil)
    }

    /// Drops buffered octets and replies not yet handed out; returns them as
    /// sent (for the report: plaintext after the 220 to STARTTLS).
    func discardBuffered() -> [UInt8] {
        var dropped: [UInt8] = []
        self.readyOctets = 0
        while let response = self.ready.popFirst() {
            switch response {
            case .reply(let reply): dropped += Array(reply.wireFormat.utf8)
            case .malformed(let malformed): dropped += malformed.lines.flatMap { $0 + [0x0D, 0x0A] }
            }
        }
        dropped += self.decoder.discardPending().flatMap { $0.bytes + [0x0D, 0x0A] }
        dropped += self.framing.discardBuffered()
        return dropped
    }

    func next(timeout: TimeAmount, eventLoop: any EventLoop) -> EventLoopFuture<ClientEvent> {
        guard self.waiter == nil else { return eventLoop.makeFailedFuture(ClientError(.writeFailed("one wait at a time"))) }
        let promise = eventLoop.makePromise(of: ClientEvent.self)
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        let task = eventLoop.scheduleTask(in: timeout) {
            let collector = loopBound.value
            guard let waiter = collector.waiter else { return }
            collector.waiter = nil
            waiter.promise.succeed(.timedOut(unconsumed: collector.framing.unconsumed))
        }
        self.waiter = (promise, task)
        self.deliver()
        return promise.futureResult
    }

    private func deliver() {
        guard let waiter = self.waiter else { return }
        let event: ClientEvent
        if let response = self.ready.popFirst() {
            self.readyOctets -= response.octets
            event = .response(response)
        } else if let failure = self.failure {
            self.failure = nil
            event = failure
        } else if self.isClosed {
            event = .closed(unconsumed: self.framing.unconsumed)
        } else {
            return
        }
        self.waiter = nil
        waiter.timeout.cancel()
        waiter.promise.succeed(event)
    }
}

extension ServerResponse {
    /// About how many octets the response took on the wire.
    var octets: Int {
        switch self {
        case .reply(let reply): reply.lines.reduce(0) { $0 + $1.utf8.count + 6 }
        case .malformed(let malformed): malformed.lines.reduce(0) { $0 + $1.count + 2 }
        }
    }
}
