import Foundation
import NIOCore
import NIOPosix
import SMTPPolicy
import SMTPServer

/// Paths inside this repository, found from this file's location.
public enum Repository {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static var scenarios: String { root + "/scenarios" }
    public static var policies: String { root + "/scenarios/policies" }
    /// The captures shared beside the project, where that folder exists.
    public static var sharedCaptures: String { root + "/../shared/captures" }
}

/// Runs `body` with a reference server on 127.0.0.1 and a free port, and
/// stops the server afterwards whatever `body` does.
public func withReferenceServer<T>(
    policy: Policy = .defaultSite(), faults: ServerFaults = [], tls: ReferenceServer.Configuration.TLS? = nil,
    _ body: (ReferenceServer) async throws -> T
) async throws -> T {
    let server = try await ReferenceServer.start(.init(policy: policy, faults: faults, tls: tls))
    do {
        let value = try await body(server)
        try await server.stop()
        return value
    } catch {
        try? await server.stop()
        throw error
    }
}

/// A server that says exactly what it is told: a greeting, then for each line
/// it receives the next scripted answer (raw octets, sent as they are), so a
/// test can play a broken or hostile server. An answer of `nil` sends
/// nothing; when the script runs out the server closes.
public final class ScriptedServer: Sendable {
    private let channel: any Channel
    public let port: Int

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    public static func start(greeting: [UInt8]?, answers: [[UInt8]?], closeWhenDone: Bool = true) async throws -> ScriptedServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ScriptHandler(greeting: greeting, answers: answers, closeWhenDone: closeWhenDone))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ScriptedServer(channel: channel, port: channel.localAddress?.port ?? 0)
    }

    public func stop() async throws {
        try await self.channel.close()
    }
}

final class ScriptHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let greeting: [UInt8]?
    private var answers: [[UInt8]?]
    private let closeWhenDone: Bool
    private var pending: [UInt8] = []

    init(greeting: [UInt8]?, answers: [[UInt8]?], closeWhenDone: Bool) {
        self.greeting = greeting
        self.answers = answers
        self.closeWhenDone = closeWhenDone
    }

    func channelActive(context: ChannelHandlerContext) {
        if let greeting = self.greeting {
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: greeting)), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.pending += self.unwrapInboundIn(data).readableBytesView
        while let end = self.pending.firstIndex(of: 0x0A) {
            self.pending.removeFirst(end + 1)
            guard !self.answers.isEmpty else {
                if self.closeWhenDone { context.close(promise: nil) }
                return
            }
            if let answer = self.answers.removeFirst() {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: answer)), promise: nil)
            }
        }
    }
}

/// A free loopback port that refuses connections: bound, read, released.
public func refusedPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 1
    try await channel.close()
    return port
}
