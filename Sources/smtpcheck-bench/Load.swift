// `smtpcheck-bench load`: many concurrent SMTP clients, each running whole
// deliveries (greeting, EHLO, MAIL, RCPT, DATA, body, QUIT) one after the
// other against a server on loopback, with the latency of every session.
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

struct LoadOptions {
    var port = 2525
    var clients = 1000
    var sessions = 100_000
    /// Source addresses (127.0.0.10 and up) the clients spread over, so that
    /// a per-address connection limit sees each as a modest client.
    var sources = 25
    /// A process whose resident size is sampled every `sampleEvery` sessions.
    var pid: Int32?
    var sampleEvery = 10_000

    init() {}

    init(_ arguments: ArraySlice<String>) throws {
        var rest = arguments
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst(), let number = Int(value), number > 0 else {
                throw LoadError("\(flag) needs a positive number")
            }
            switch flag {
            case "--port": self.port = number
            case "--clients": self.clients = number
            case "--sessions": self.sessions = number
            case "--sources": self.sources = min(number, 200)
            case "--pid": self.pid = Int32(clamping: number)
            case "--sample-every": self.sampleEvery = number
            default: throw LoadError("unknown option \(flag)")
            }
        }
    }
}

struct LoadError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One delivery as a state machine over the server's replies.
final class DeliveryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let steps: [(expect: Int, send: String)] = [
        (220, "EHLO load.example.org\r\n"),
        (250, "MAIL FROM:<load@client.example.org>\r\n"),
        (250, "RCPT TO:<postmaster@example.net>\r\n"),
        (250, "DATA\r\n"),
        (354, "Subject: load\r\n\r\nOne line of body.\r\n.\r\n"),
        (250, "QUIT\r\n"),
        (221, ""),
    ]
    private var step = 0
    private var buffer: [UInt8] = []
    private let done: EventLoopPromise<Void>

    init(done: EventLoopPromise<Void>) { self.done = done }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.buffer += self.unwrapInboundIn(data).readableBytesView
        while let end = self.lineEnd() {
            let line = Array(self.buffer[..<end])
            self.buffer.removeFirst(end + 2)
            // A continuation line ("250-") waits for the last line of its reply.
            guard line.count >= 3, line.count == 3 || line[3] != UInt8(ascii: "-") else { continue }
            let code = Int(String(decoding: line.prefix(3), as: UTF8.self)) ?? 0
            guard self.step < Self.steps.count, code == Self.steps[self.step].expect else {
                self.done.fail(LoadError("step \(self.step + 1): \(String(decoding: line, as: UTF8.self))"))
                context.close(promise: nil)
                return
            }
            let next = Self.steps[self.step].send
            self.step += 1
            if next.isEmpty {
                self.done.succeed()
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: next)), promise: nil)
        }
    }

    private func lineEnd() -> Int? {
        var index = 0
        while index + 1 < self.buffer.count {
            if self.buffer[index] == 0x0D && self.buffer[index + 1] == 0x0A { return index }
            index += 1
        }
        return nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.fail(LoadError("the server closed the connection at step \(self.step + 1)"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(error)
        context.close(promise: nil)
    }
}

func residentMiB(_ pid: Int32, field: String) -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") })
    else { return nil }
    return (Double(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
}

/// What a load run measured.
struct LoadReport {
    var options: LoadOptions
    var seconds: Double
    /// Each finished session's latency, in seconds, sorted.
    var latencies: [Double]
    var failures: [String: Int]
    var samples: [String]
    /// The server's peak resident size (VmHWM), where its PID was given.
    var serverPeakMiB: Double?

    var failed: Int { self.failures.values.reduce(0, +) }
    var rate: Double { Double(self.latencies.count) / max(self.seconds, 1e-9) }

    /// The latency below which `p` of the sessions finished, in milliseconds.
    func percentile(_ p: Double) -> Double {
        guard !self.latencies.isEmpty else { return 0 }
        return self.latencies[min(self.latencies.count - 1, Int(Double(self.latencies.count) * p))] * 1000
    }

    func print() {
        Swift.print(
            String(
                format: "load: %d clients, %d sessions in %.1f s: %.0f sessions/s; %d ok, %d failed",
                self.options.clients, self.options.sessions, self.seconds, self.rate, self.latencies.count, self.failed))
        Swift.print(
            String(
                format: "latency per session (ms): p50 %.1f, p90 %.1f, p99 %.1f, max %.1f", self.percentile(0.5),
                self.percentile(0.9), self.percentile(0.99), (self.latencies.last ?? 0) * 1000))
        for sample in self.samples { Swift.print(sample) }
        if let peak = self.serverPeakMiB { Swift.print(String(format: "server peak resident %.1f MiB", peak)) }
        for (reason, count) in self.failures.sorted(by: { $0.value > $1.value }).prefix(10) { Swift.print("  \(count) failed: \(reason)") }
    }
}

func runLoad(_ options: LoadOptions) async -> LoadReport {
    let group = MultiThreadedEventLoopGroup.singleton
    let started = NIOLockedValueBox(0)
    let results = NIOLockedValueBox((latencies: [Double](), failures: [String: Int](), samples: [String]()))
    let clock = ContinuousClock()
    let begin = clock.now
    func session(source: String) async -> Result<Double, any Error> {
        let start = clock.now
        do {
            let promise = group.next().makePromise(of: Void.self)
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(30))
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DeliveryHandler(done: promise))
                    }
                }
                .bind(to: try SocketAddress(ipAddress: source, port: 0))
                .connect(host: "127.0.0.1", port: options.port).get()
            let timeout = channel.eventLoop.scheduleTask(in: .seconds(30)) {
                promise.fail(LoadError("no end within 30 s"))
                channel.close(promise: nil)
            }
            defer { timeout.cancel() }
            try await promise.futureResult.get()
            let elapsed = clock.now - start
            return .success(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        } catch {
            return .failure(error)
        }
    }
    await withTaskGroup(of: Void.self) { tasks in
        for client in 0..<options.clients {
            let source = "127.0.0.\(10 + client % options.sources)"
            tasks.addTask {
                while true {
                    let number = started.withLockedValue { count -> Int in
                        count += 1
                        return count
                    }
                    guard number <= options.sessions else { return }
                    let outcome = await session(source: source)
                    results.withLockedValue { results in
                        switch outcome {
                        case .success(let seconds): results.latencies.append(seconds)
                        case .failure(let error): results.failures["\(error)", default: 0] += 1
                        }
                        let done = results.latencies.count + results.failures.values.reduce(0, +)
                        if let pid = options.pid, done % options.sampleEvery == 0, let rss = residentMiB(pid, field: "VmRSS") {
                            results.samples.append(String(format: "%8d sessions: server resident %.1f MiB", done, rss))
                        }
                    }
                }
            }
        }
    }
    let total = clock.now - begin
    let seconds = Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
    let (latencies, failures, samples) = results.withLockedValue { ($0.latencies.sorted(), $0.failures, $0.samples) }
    return LoadReport(
        options: options, seconds: seconds, latencies: latencies, failures: failures, samples: samples,
        serverPeakMiB: options.pid.flatMap { residentMiB($0, field: "VmHWM") })
}
