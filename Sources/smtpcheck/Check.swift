import ArgumentParser
import Foundation
import SMTPCapture
import SMTPPolicy
import SMTPReport
import SMTPRunner
import SMTPScenarios

extension SMTPCheck {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Judge every captured SMTP session against the policy.",
            discussion: "Each session is a case: every reply that breaks the policy is a failure, shown with its exchange.")

        @Argument(help: "pcap or pcapng files ('-' reads standard input).", completion: .file(extensions: ["pcap", "pcapng", "cap"]))
        var captures: [String] = []

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Watch this interface live instead (root or CAP_NET_RAW): each session is judged when it ends; Ctrl-C or SIGTERM stops with the summary.",
                valueName: "interface"))
        var interface: String?

        @OptionGroup var policyOptions: PolicyOptions
        @OptionGroup var input: CaptureInputOptions
        @OptionGroup var sharding: ShardOption
        @OptionGroup var report: ReportOptions

        func validate() throws {
            if self.captures.isEmpty && self.interface == nil { throw ValidationError("give at least one capture, or --interface") }
            if !self.captures.isEmpty && self.interface != nil {
                throw ValidationError("--interface watches live traffic: it goes without capture files")
            }
            // Each capture is a suite of its own, its sessions named within
            // it: the same file twice would be one suite holding each name twice.
            var seen = Set<String>()
            if let twice = self.captures.first(where: { !seen.insert($0).inserted }) {
                throw ValidationError("\(twice) is given twice: each capture is read once")
            }
            if self.sharding.shard != nil && self.interface != nil {
                throw ValidationError("--shard splits files: it goes without --interface")
            }
            try self.sharding.validate(format: self.report.format)
        }

        func run() async throws {
            let policy = try self.policyOptions.load()
            let started = Date()
            // Each session is judged and written as soon as it ends, then let go:
            // memory follows the open connections, not the file's size.
            let target = self.interface.map { "interface \($0)" } ?? "capture " + self.captures.joined(separator: ", ")
            var heading = RunHeading(target: target, policy: policy.source, profile: policy.profile, groupedByFile: self.captures.count > 1)
            heading.shard = self.sharding.shard?.description
            var writer = try self.report.writer(heading)
            var notes: [String] = []
            if let interface = self.interface {
                let summary = try self.input.watch(interface) { session in
                    writer.add(Audit.judge(session.recorded, policy: policy, file: interface))
                }
                notes += summary.notes.map { "\(interface): \($0)" }
            }
            // A shard takes every N-th file where there are files enough,
            // else every N-th session of each file.
            let shard = self.sharding.shard
            let byFile = shard.map { self.captures.count >= $0.count } ?? false
            let fileShard: Shard? = byFile ? shard : nil
            let sessionShard: Shard? = byFile ? nil : shard
            for (fileIndex, capture) in self.captures.enumerated() where fileShard?.takes(fileIndex) ?? true {
                // Judged and rendered on the reading threads, written here in order.
                let render = writer.renderer
                let summary = try self.input.read(
                    capture,
                    prepare: { session -> RenderedCase? in
                        guard sessionShard?.takes(session.number - 1) ?? true else { return nil }
                        var result = Audit.judge(session.recorded, policy: policy, file: capture)
                        result.place = CaseResult.Place(suite: fileIndex, item: session.number - 1)
                        return render(result)
                    }
                ) { if let rendered = $0 { writer.add(rendered) } }
                notes += summary.notes.map { "\(capture): \($0)" }
            }
            for note in notes { StandardStreams.err("smtpcheck: \(note)\n") }
            writer.finish(duration: Date().timeIntervalSince(started))
            ReportOptions.warnIfNothingTested(writer.tally)
            if writer.tally.exitCode != 0 { throw ExitCode(writer.tally.exitCode) }
        }
    }
}
