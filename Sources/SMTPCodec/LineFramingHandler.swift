import NIOCore
import SMTPProtocol

/// What the framing handler passes on: a line, or octets of a BDAT chunk.
public enum FramedInput: Sendable, Hashable {
    case line(LineFramer.Line)
    case chunk([UInt8])
}

/// Frames inbound bytes into CRLF lines with ``LineFramer`` (strict: a bare
/// LF or CR never ends a line); after ``expectChunk(_:)``, the next octets go
/// on as they are (RFC 3030 BDAT).
public final class LineFramingHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = FramedInput

    private var framer: LineFramer
    private var chunkRemaining = 0

    public init(maximumLength: Int = 4096) {
        self.framer = LineFramer(maximumLength: maximumLength)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        // Through a concrete type: a generic sequence across the module
        // boundary is copied an octet at a time.
        buffer.withUnsafeReadableBytes { self.framer.append($0) }
        while true {
            if self.chunkRemaining > 0 {
                let bytes = self.framer.takeRaw(upTo: self.chunkRemaining)
                guard !bytes.isEmpty else { return }
                self.chunkRemaining -= bytes.count
                context.fireChannelRead(self.wrapInboundOut(.chunk(bytes)))
            } else if let line = self.framer.next() {
                context.fireChannelRead(self.wrapInboundOut(.line(line)))
            } else {
                return
            }
        }
    }

    /// The next `count` octets are a BDAT chunk, not lines.
    public func expectChunk(_ count: Int) {
        self.chunkRemaining = count
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

    /// A line has begun and not yet ended (a chunk in progress is not a line).
    public var hasPartialLine: Bool { self.chunkRemaining == 0 && self.framer.hasUnconsumedBytes }

    /// Another whole line arrived behind the one being handled (pipelining).
    public var hasBufferedLine: Bool { self.framer.hasCompleteLine }
}

/// Assembles framed lines into replies by the multi-line rule (RFC 5321 4.2.1).
public final class ReplyDecodingHandler: ChannelInboundHandler {
    public typealias InboundIn = FramedInput
    public typealias InboundOut = ServerResponse

    private var parser = ReplyParser()

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = self.unwrapInboundIn(data) else { return }
        if let response = self.parser.feed(line) {
            context.fireChannelRead(self.wrapInboundOut(response))
        }
    }

    /// Drops the lines of a reply not yet complete (after STARTTLS), and returns them.
    public func discardPending() -> [LineFramer.Line] {
        let pending = self.parser.pending
        self.parser = ReplyParser()
        return pending
    }
}

extension SMTPReply {
    /// The reply as wire octets in a buffer.
    public func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeString(self.wireFormat)
    }
}
