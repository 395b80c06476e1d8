import NIOCore
import SMTPProtocol

/// Frames inbound bytes into CRLF lines with ``LineFramer`` (strict: a bare
/// LF or CR never ends a line). Client and server share it.
public final class LineFramingHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = LineFramer.Line

    private var framer: LineFramer

    public init(maximumLength: Int = 4096) {
        self.framer = LineFramer(maximumLength: maximumLength)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.framer.append(buffer.readableBytesView)
        while let line = self.framer.next() {
            context.fireChannelRead(self.wrapInboundOut(line))
        }
    }

    /// Drops octets that arrived but were not yet framed, and returns them
    /// (the plaintext pipelined behind STARTTLS, for one).
    public func discardBuffered() -> [UInt8] {
        let dropped = self.framer.unconsumed
        self.framer.discardBuffered()
        return dropped
    }

    /// Octets held without a CRLF.
    public var unconsumed: [UInt8] { self.framer.unconsumed }
}

/// Assembles framed lines into replies by the multi-line rule (RFC 5321 4.2.1).
public final class ReplyDecodingHandler: ChannelInboundHandler {
    public typealias InboundIn = LineFramer.Line
    public typealias InboundOut = ServerResponse

    private var parser = ReplyParser()

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let response = self.parser.feed(self.unwrapInboundIn(data)) {
            context.fireChannelRead(self.wrapInboundOut(response))
        }
    }
}

extension SMTPReply {
    /// The reply as wire octets in a buffer.
    public func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeString(self.wireFormat)
    }
}
