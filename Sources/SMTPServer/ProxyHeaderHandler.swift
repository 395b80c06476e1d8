import NIOCore
import SMTPPolicy
import SMTPProtocol

/// Reads a PROXY protocol header before anything else, from peers the policy
/// allows to send one; then names the real client and steps aside.
final class ProxyHeaderHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Fired once the header is read: whom the session speaks for.
    struct ProxiedClient {
        var address: String?
        var peer: String?
    }

    private let allowed: [IPNetwork]
    private var buffered: [UInt8] = []
    private var done = false

    init(allowed: [IPNetwork]) {
        self.allowed = allowed
    }

    func channelActive(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress?.ipAddress ?? ""
        if !self.allowed.contains(address: peer) {
            // Postfix closes on a PROXY listener a client may not use.
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.done else {
            context.fireChannelRead(data)
            return
        }
        self.buffered += self.unwrapInboundIn(data).readableBytesView
        switch ProxyHeader.parse(self.buffered) {
        case .needMore:
            if self.buffered.count > 232 { context.close(promise: nil) }
        case .invalid:
            context.close(promise: nil)
        case .complete(let header):
            self.done = true
            let rest = Array(self.buffered.dropFirst(header.length))
            self.buffered = []
            context.fireUserInboundEventTriggered(ProxiedClient(address: header.source, peer: context.channel.remoteAddress?.ipAddress))
            if !rest.isEmpty { context.fireChannelRead(self.wrapInboundOut(ByteBuffer(bytes: rest))) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
