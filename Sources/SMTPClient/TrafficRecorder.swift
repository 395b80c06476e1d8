import Foundation
import NIOConcurrencyHelpers
import NIOCore

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
