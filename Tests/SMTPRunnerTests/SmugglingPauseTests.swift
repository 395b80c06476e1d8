import NIOCore
import NIOPosix
import SMTPPolicy
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

/// A server of the test's own, as one real MTA was seen: in message data it
/// ends the message at LF.LF, LF.CRLF or CRLF.LF as soon as it reads one,
/// answers 250, and drops whatever else that read held. With a `readDelay`
/// (on a channel that does not read by itself) it reads that long after
/// each read, as a busy server does: what the client writes meanwhile
/// comes in one read.
final class FalseEndHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffer: [UInt8] = []
    private var inData = false
    private let readDelay: TimeAmount?

    init(readDelay: TimeAmount? = nil) {
        self.readDelay = readDelay
    }

    func channelActive(context: ChannelHandlerContext) {
        self.reply("220 falseend.example ESMTP", context: context)
        if self.readDelay != nil { context.read() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let readDelay = self.readDelay else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: readDelay) { loopBound.value.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.buffer += self.unwrapInboundIn(data).readableBytesView
        while true {
            if self.inData {
                let data = [0x0D, 0x0A] + self.buffer
                let ends: [[UInt8]] = [[0x0A, 0x2E, 0x0A], [0x0A, 0x2E, 0x0D, 0x0A], [0x0D, 0x0A, 0x2E, 0x0A]]
                guard ends.contains(where: { data.contains($0) }) else { return }
                self.inData = false
                self.buffer = []  // the rest of the read goes with the message
                self.reply("250 2.0.0 queued", context: context)
                return
            }
            guard let end = self.buffer.firstRange(of: [0x0D, 0x0A])?.lowerBound else { return }
            let line = String(decoding: self.buffer[..<end], as: UTF8.self).uppercased()
            self.buffer.removeFirst(end + 2)
            switch line.split(separator: " ").first.map(String.init) ?? "" {
            case "EHLO": self.reply("250-falseend.example\r\n250-PIPELINING\r\n250 8BITMIME", context: context)
            case "DATA":
                self.inData = true
                self.reply("354 go ahead", context: context)
            case "QUIT":
                self.reply("221 bye", context: context)
                context.close(promise: nil)
                return
            default: self.reply("250 ok", context: context)
            }
        }
    }

    private func reply(_ text: String, context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: text + "\r\n")), promise: nil)
    }
}

@Suite struct SmugglingPauseTests {
    static let falseEnds: Set<String> = [
        "smuggling.data.lf-dot-lf.paused", "smuggling.data.lf-dot-crlf.paused", "smuggling.data.crlf-dot-lf.paused",
    ]

    /// Issue 16, 1. Pipelined, the smuggled commands vanish with the dropped
    /// read and every DATA case passes; paused after the false end, the
    /// server's early 250 is the finding.
    @Test func aServerThatEndsAtAFalseEndAndDropsTheRestFailsThePausedCases() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FalseEndHandler()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let cases = try battery().filter { $0.id.hasPrefix("smuggling.data.") }.map(\.withLongPauses)
        let result = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: port)), policy: .defaultSite(profile: .portable))
        ).run(cases)
        try await server.close()
        #expect(ids(result, "FAIL") == Self.falseEnds, "\(summary(result))")
        #expect(ids(result, "PASS").contains("smuggling.data.lf-dot-lf"), "the pipelined variant cannot see this server")
    }

    /// A server that reads 300 ms after each read answers the commands
    /// before DATA that slowly, and the paused cases listen four times as
    /// long as that: long enough for the server to read the false end on its
    /// own. A fixed 200 ms pause would let it read both sides of the pause
    /// together, drop the second, and pass.
    @Test func aServerThatReadsSlowlyIsGivenALongerPause() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FalseEndHandler(readDelay: .milliseconds(300)))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let cases = try battery().filter { Self.falseEnds.contains($0.id) }
        let result = try await ScenarioRunner(
            .init(target: .live(TargetAddress(host: "127.0.0.1", port: port)), policy: .defaultSite(profile: .portable))
        ).run(cases)
        try await server.close()
        #expect(ids(result, "FAIL") == Self.falseEnds, "\(summary(result))")
    }

    /// The reference server's smuggling-discard fault behaves the same. The
    /// in-process server shares its threads with the tests running beside
    /// this one, and one starved past the pause reads both sides of it
    /// together (as the test above shows a busy server does): the paused
    /// steps listen a second here.
    @Test func theSmugglingDiscardFaultFailsThePausedCases() async throws {
        let cases = try battery().filter { $0.tags.contains("smuggling") }.map(\.withLongPauses)
        let result = try await run(cases, policy: .defaultSite(), faults: .smugglingDiscard)
        #expect(ids(result, "FAIL") == Self.falseEnds, "\(summary(result))")
    }

    /// The paused cases start first when cases run in parallel, so that
    /// their waits overlap the rest of the battery, and the identity
    /// variants (waiting for their preludes) last; one at a time, the
    /// battery's order is kept. Results are in scenario order either way.
    @Test func pausingCasesStartFirstInParallelAndInOrderAlone() throws {
        let cases = try battery()
        let paused = Set(cases.indices.filter { cases[$0].pauses })
        let variants = cases.indices.filter { cases[$0].derivedExpectations }
        #expect(paused.count == 8)
        #expect(!variants.isEmpty)
        let order = ScenarioRunner.launchOrder(cases, jobs: 16)
        #expect(Set(order.prefix(paused.count)) == paused)
        #expect(
            order.dropFirst(paused.count).elementsEqual(
                cases.indices.filter { !paused.contains($0) && !cases[$0].derivedExpectations } + variants))
        #expect(ScenarioRunner.launchOrder(cases, jobs: 1) == Array(cases.indices))
    }
}

extension Scenario {
    /// The scenario with its pauses a second long, for tests whose server
    /// shares its threads with other tests.
    var withLongPauses: Scenario {
        var scenario = self
        for index in scenario.steps.indices where scenario.steps[index].pauseMilliseconds != nil {
            scenario.steps[index].pauseMilliseconds = 1_000
        }
        return scenario
    }
}
