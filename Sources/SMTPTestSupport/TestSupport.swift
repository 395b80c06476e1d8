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

/// A loopback port that refuses connections for as long as the process
/// runs: a socket bound to it and never listening holds it, so no other
/// test's server or client can take it in between (a port bound, read and
/// released could be).
public func refusedPort() async throws -> Int {
    try RefusingPort.shared.get().port
}

final class RefusingPort: Sendable {
    static let shared = Result { try RefusingPort() }
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw RawClient.Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound else { throw RawClient.Failure(description: "bind: \(String(cString: strerror(errno)))") }
        // The descriptor stays open, unlistened, for the life of the process.
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }
}
