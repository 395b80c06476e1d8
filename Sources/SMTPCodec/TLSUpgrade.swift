import NIOCore
import NIOTLS

/// STARTTLS (RFC 3207) on a live channel, for client and server alike: the
/// TLS handler goes in at the head of the pipeline (or just behind a
/// handler that must see the octets as they cross the wire), an observer
/// behind it reports the end of the handshake, and a handshake that stalls
/// fails after `timeout`.
public enum TLSUpgrade {
    /// A time-out in seconds as people write it: "10", "2.5".
    static func seconds(_ amount: TimeAmount) -> String {
        let tenths = (amount.nanoseconds + 50_000_000) / 100_000_000
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }

    /// Call on the channel's event loop. The future succeeds when the
    /// handshake completes and fails when it fails, the connection closes,
    /// or `timeout` passes first (the channel is then closed).
    /// `watchRecords`: put a ``TLSRecordWatcher`` below the TLS handler, to
    /// see plain text where only TLS records may come (a client does).
    public static func install(
        _ handler: any ChannelHandler, on channel: any Channel, after anchor: (any ChannelHandler)? = nil, timeout: TimeAmount,
        watchRecords: Bool = false
    ) throws -> EventLoopFuture<Void> {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let operations = channel.pipeline.syncOperations
        let below: (any ChannelHandler)? = watchRecords ? TLSRecordWatcher() : nil
        for added in [below, handler].compactMap({ $0 }) {
            if let previous = added === handler ? (below ?? anchor) : anchor {
                try operations.addHandler(added, position: .after(previous))
            } else {
                try operations.addHandler(added, position: .first)
            }
        }
        try operations.addHandler(HandshakeObserver(promise: promise), position: .after(handler))
        let expiry = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(TLSSetupError(message: "the TLS handshake did not complete within \(Self.seconds(timeout)) s"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in expiry.cancel() }
        return promise.futureResult
    }
}

extension TimeAmount {
    /// Whole seconds, for messages.
    public var seconds: Int64 { self.nanoseconds / 1_000_000_000 }
}

/// Completes a promise when the TLS handshake ends, one way or the other.
public final class HandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny

    private var promise: EventLoopPromise<Void>?

    public init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            self.promise?.succeed(())
            self.promise = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let promise = self.promise {
            self.promise = nil
            promise.fail(error)
            return
        }
        context.fireErrorCaught(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.promise?.fail(TLSSetupError(message: "the connection closed during the TLS handshake"))
        self.promise = nil
        context.fireChannelInactive()
    }
}
