import NIOCore

/// Octets that came after TLS where only TLS records may come: a server
/// that left TLS and went on in plain text.
public struct PlaintextAfterTLS: Sendable, Hashable {
    public var octets: Int
    /// The first octets, for the report.
    public var preview: [UInt8]
}

/// Sits below a client's TLS handler and follows the TLS record framing of
/// what the server sends (RFC 8446 5.1: type, version, length). Octets that
/// are not a record are not handed to TLS, which would fail on them with
/// nothing to show: they are kept back, counted and reported up the pipeline
/// as a ``PlaintextAfterTLS`` event, so the transcript can say what came.
public final class TLSRecordWatcher: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// Octets of the current record still to come.
    private var remaining = 0
    /// A record header read in part.
    private var header: [UInt8] = []
    private var plaintext: PlaintextAfterTLS?
    static let previewLength = 200

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data).readableBytesView
        guard self.plaintext == nil else { return self.keep(bytes, context: context) }
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if self.remaining > 0 {
                let take = min(self.remaining, bytes.endIndex - index)
                self.remaining -= take
                index += take
                continue
            }
            self.header.append(bytes[index])
            index += 1
            guard self.header.count == 5 else { continue }
            let length = Int(self.header[3]) << 8 | Int(self.header[4])
            guard (20...24).contains(self.header[0]), self.header[1] == 3, length <= 18_432 else {
                // Not a TLS record: hand on the records before it, keep the rest back.
                let start = max(index - 5, bytes.startIndex)
                if start > bytes.startIndex { context.fireChannelRead(self.wrapInboundOut(ByteBuffer(bytes: bytes[..<start]))) }
                self.plaintext = PlaintextAfterTLS(octets: 0, preview: [])
                return self.keep(bytes[start...], context: context)
            }
            self.header.removeAll(keepingCapacity: true)
            self.remaining = length
        }
        context.fireChannelRead(self.wrapInboundOut(ByteBuffer(bytes: bytes)))
    }

    private func keep(_ bytes: some Collection<UInt8>, context: ChannelHandlerContext) {
        guard var found = self.plaintext else { return }
        found.octets += bytes.count
        if found.preview.count < Self.previewLength { found.preview += bytes.prefix(Self.previewLength - found.preview.count) }
        self.plaintext = found
        context.fireUserInboundEventTriggered(found)
    }
}
