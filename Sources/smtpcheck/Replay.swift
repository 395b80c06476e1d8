import ArgumentParser
import Foundation
import NIOCore
import SMTPCapture
import SMTPPolicy
import SMTPRunner
import SMTPScenarios

extension SMTPCheck {
    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-drive the clients of a capture against a live server and show every reply that changed.",
            discussion: """
                Pipelined groups are sent as groups. Message bodies were not kept, so a stand-in of the same size is sent. \
                AUTH is replayed only with --auth-from-capture; STARTTLS sessions replay up to the upgrade.
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

        @Option(name: .long, help: "Seconds each session may take.")
        var timeout: Int = 30

        @Option(name: .long, help: "Also judge every replayed session against this policy (a file or a built-in name).")
        var policy: String?

        @OptionGroup var input: CaptureInputOptions
        @OptionGroup var report: ReportOptions

        func validate() throws {
            guard TargetAddress(self.target) != nil else { throw ValidationError("--target '\(self.target)' is not HOST[:PORT]") }
            for pattern in self.normalize where (try? NSRegularExpression(pattern: pattern)) == nil {
                throw ValidationError("--normalize '\(pattern)' is not a regular expression")
            }
        }

        func run() async throws {
            guard let target = TargetAddress(self.target) else { throw ValidationError("bad --target") }
            let started = Date()
            let summary = try self.input.read(self.capture)
            let policy = try self.policy.map { try PolicyOptions.load($0) }
            let replayer = try Replayer(
                .init(
                    target: target, timeout: .seconds(Int64(self.timeout)), authFromCapture: self.authFromCapture,
                    normalize: self.normalize, sourceAddress: self.source, policy: policy))
            var cases: [CaseResult] = []
            for session in summary.sessions { cases.append(await replayer.replay(session.recorded, capture: self.capture)) }
            let result = RunResult(
                target: "\(target) (replaying \(self.capture))",
                policy: policy.map(\.source) ?? "none: replies are compared with the capture", profile: policy?.profile ?? .documented,
                cases: cases, duration: Date().timeIntervalSince(started))
            try self.report.emit(result)
            ReportOptions.warnIfNothingTested(result)
            if result.exitCode != 0 { throw ExitCode(result.exitCode) }
        }
    }
}
