import NIOConcurrencyHelpers
import NIOCore
import SMTPPolicy

/// Connections open per client address, shared by every session of one server.
final class ConnectionCounter: Sendable {
    private let open = NIOLockedValueBox<[String: Int]>([:])

    /// Counts a connection in; `false` (and not counted) past `limit`.
    func admit(_ address: String, limit: Int) -> Bool {
        self.open.withLockedValue { open in
            let count = open[address, default: 0]
            guard count < limit else { return false }
            open[address] = count + 1
            return true
        }
    }

    func release(_ address: String) {
        self.open.withLockedValue { open in
            let count = open[address, default: 0] - 1
            open[address] = count > 0 ? count : nil
        }
    }
}

/// First in a session's pipeline: a client address already holding `limit`
/// connections gets Postfix's reply to `smtpd_client_connection_count_limit`
/// (`421 4.7.0 ... too many connections from ...`) and is closed before any
/// session is made for it.
final class ConnectionGate: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    typealias OutboundOut = ByteBuffer

    private let counter: ConnectionCounter
    private let address: String
    private let limit: Int
    private let serverName: String
    /// A plaintext reply makes no sense where TLS comes first: close only.
    private let says421: Bool
    private var admitted = false

    init(counter: ConnectionCounter, address: String, limit: Int, serverName: String, says421: Bool) {
        self.counter = counter
        self.address = address
        self.limit = limit
        self.serverName = serverName
        self.says421 = says421
    }

    func channelActive(context: ChannelHandlerContext) {
        guard self.counter.admit(self.address, limit: self.limit) else {
            if self.says421 {
                let reply = "421 4.7.0 \(self.serverName) Error: too many connections from \(self.address)\r\n"
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
            }
            context.close(promise: nil)
            return
        }
        self.admitted = true
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.admitted else { return }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if self.admitted {
            self.admitted = false
            self.counter.release(self.address)
            context.fireChannelInactive()
        }
    }
}
