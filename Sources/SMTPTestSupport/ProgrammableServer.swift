import NIOCore
import NIOPosix

/// What a programmed server does with one line.
public enum ProgrammedAnswer: Sendable {
    /// Reply lines, each sent with CRLF.
    case reply([String])
    /// Reply, then close.
    case replyAndClose([String])
    /// Say nothing.
    case silence
}

/// A server whose answers depend on the conversation: each connection gets
/// its own `answer`, made fresh by the factory, so it can keep state.
public final class ProgrammableServer: Sendable {
    private let channel: any Channel
    public let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
    }

    /// `connection` makes, for each connection, the function that answers its lines.
    public static func start(
        host: String = "127.0.0.1", greeting: String = "220 mx.example.net ESMTP",
        connection: @escaping @Sendable () -> (String) -> ProgrammedAnswer
    ) async throws -> ProgrammableServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ProgrammedHandler(greeting: greeting, answer: connection()))
                }
            }
            .bind(host: host, port: 0).get()
        return ProgrammableServer(channel: channel)
    }

    public func stop() async throws { try await self.channel.close() }
}

final class ProgrammedHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let greeting: String
    private let answer: (String) -> ProgrammedAnswer
    private var pending: [UInt8] = []

    init(greeting: String, answer: @escaping (String) -> ProgrammedAnswer) {
        self.greeting = greeting
        self.answer = answer
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: self.greeting + "\r\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.pending += self.unwrapInboundIn(data).readableBytesView
        while let end = self.pending.firstIndex(of: 0x0A) {
            let line = String(decoding: self.pending[..<end].filter { $0 != 0x0D }, as: UTF8.self)
            self.pending.removeFirst(end + 1)
            switch self.answer(line) {
            case .reply(let lines):
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: lines.map { $0 + "\r\n" }.joined())), promise: nil)
            case .replyAndClose(let lines):
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: lines.map { $0 + "\r\n" }.joined())), promise: nil)
                context.close(promise: nil)
                return
            case .silence:
                break
            }
        }
    }
}
