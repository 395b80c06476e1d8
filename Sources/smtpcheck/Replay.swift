import ArgumentParser
import Foundation
import NIOCore
import SMTPCapture
import SMTPPolicy
import SMTPReport
import SMTPRunner
import SMTPScenarios

extension SMTPCheck {
    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-drive the clients of a capture against a live server and show every reply that changed.",
            discussion: """
                Pipelined groups are sent as groups. Message bodies were not kept, so a stand-in of the same size is sent. \
                AUTH is replayed only with --auth-from-capture. A captured STARTTLS ends the replay where the capture's \
                plain text ends; --tls starttls upgrades every session first (EHLO, STARTTLS, handshake, not compared) and \
                replays the captured commands inside TLS, for servers that require it.
                """)

        @Argument(help: "A pcap or pcapng file.", completion: .file(extensions: ["pcap", "pcapng", "cap"]))
        var capture: String

        @Option(name: .long, help: "The server to replay against, HOST[:PORT].")
        var target: String

        @Flag(name: .customLong("auth-from-capture"), help: "Replay AUTH exchanges with the credentials in the capture.")
        var authFromCapture = false

        @Option(name: .long, help: "A regular expression to take out of reply texts before comparing (repeatable).")
        var normalize: [String] = []

        @Option(name: .long, help: "A source address to bind.")
        var source: String?

        @Option(
            name: .long,
            help: "Sessions replayed at once (default 1: in the capture's order, as a server that counts clients saw them).")
        var jobs: Int = 1

        @Option(name: .long, help: "Seconds each session may take.")
        var timeout: Int = 30

        @Option(name: .long, help: "Also judge every replayed session against this policy (a file or a built-in name).")
        var policy: String?

        @OptionGroup var tlsArguments: TLSArguments
        @OptionGroup var input: CaptureInputOptions
        @OptionGroup var sharding: ShardOption
        @OptionGroup var report: ReportOptions

        func validate() throws {
            guard TargetAddress(self.target) != nil else { throw ValidationError("--target '\(self.target)' is not HOST[:PORT]") }
            if self.jobs < 1 || self.jobs > 256 { throw ValidationError("--jobs must be from 1 to 256") }
            if self.timeout < 1 || self.timeout > 3600 { throw ValidationError("--timeout must be from 1 to 3600 seconds") }
            for pattern in self.normalize where (try? NSRegularExpression(pattern: pattern)) == nil {
                throw ValidationError("--normalize '\(pattern)' is not a regular expression")
            }
            if let source = self.source, let problem = SMTPCheck.Run.unbindable(source) {
                throw ValidationError("--source \(source): \(problem)")
            }
            try self.sharding.validate(format: self.report.format)
        }

        func run() async throws {
            guard let target = TargetAddress(self.target, defaultPort: self.tlsArguments.defaultPort) else {
                throw ValidationError("bad --target")
            }
            let started = Date()
            let policy = try self.policy.map { try PolicyOptions.load($0) }
            let captured = try self.input.read(self.capture).sessions.map(\.recorded)
            let chosen = captured.indices.filter { self.sharding.shard?.takes($0) ?? true }
            let sessions = chosen.map { captured[$0] }
            let replayer = try Replayer(
                .init(
                    target: target, timeout: .seconds(Int64(self.timeout)), authFromCapture: self.authFromCapture,
                    normalize: self.normalize, sourceAddress: self.source, policy: policy, tls: self.tlsArguments.tls,
                    tlsOptions: self.tlsArguments.options))
            var heading = RunHeading(
                target: "\(target) (replaying \(self.capture))",
                policy: policy.map(\.source) ?? "none: replies are compared with the capture", profile: policy?.profile ?? .documented,
                count: sessions.count, idWidth: sessions.map { "session-\($0.number)".count }.max())
            heading.shard = self.sharding.shard?.description
            let report = self.report
            let live = LiveReport(total: sessions.count, progress: ProgressLine.wanted) { try report.writer(heading) }
            SignalSources.onTermination { live.interrupt() }
            let capture = self.capture
            await Self.inOrder(sessions.count, jobs: self.jobs) { index in
                var result = await replayer.replay(sessions[index], capture: capture)
                result.place = CaseResult.Place(suite: 0, item: chosen[index])
                return result
            } each: {
                live.add($0)
            }
            try live.finish(duration: Date().timeIntervalSince(started))
            let tally = live.tally
            ReportOptions.warnIfNothingTested(tally)
            if tally.exitCode != 0 { throw ExitCode(tally.exitCode) }
        }

        /// Runs `count` jobs, `jobs` at a time, and hands out their results
        /// in index order as soon as each one's turn comes. At most
        /// `4 * jobs` results wait for a slow one ahead of them.
        static func inOrder<Result: Sendable>(
            _ count: Int, jobs: Int, _ body: @escaping @Sendable (Int) async -> Result, each: (Result) -> Void
        ) async {
            await withTaskGroup(of: (Int, Result).self) { group in
                var launched = 0
                var next = 0
                var waiting: [Int: Result] = [:]
                let window = max(jobs * 4, 1)
                func launch() {
                    while launched < count && launched - next < window && launched - next - waiting.count < jobs {
                        let index = launched
                        group.addTask { (index, await body(index)) }
                        launched += 1
                    }
                }
                launch()
                while let (index, result) = await group.next() {
                    waiting[index] = result
                    while let ready = waiting.removeValue(forKey: next) {
                        each(ready)
                        next += 1
                    }
                    launch()
                }
            }
        }
    }
}
