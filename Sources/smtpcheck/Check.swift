import ArgumentParser
import Foundation
import SMTPCapture
import SMTPPolicy
import SMTPRunner
import SMTPScenarios

extension SMTPCheck {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Judge every captured SMTP session against the policy.",
            discussion: "Each session is a case: every reply that breaks the policy is a failure, shown with its exchange.")

        @Argument(help: "pcap or pcapng files.")
        var captures: [String]

        @OptionGroup var policyOptions: PolicyOptions
        @OptionGroup var input: CaptureInputOptions
        @OptionGroup var report: ReportOptions

        func validate() throws {
            if self.captures.isEmpty { throw ValidationError("give at least one capture") }
        }

        func run() async throws {
            let policy = try self.policyOptions.load()
            let started = Date()
            var cases: [CaseResult] = []
            var notes: [String] = []
            for capture in self.captures {
                let summary = try self.input.read(capture)
                notes += summary.notes.map { "\(capture): \($0)" }
                cases += summary.sessions.map { Audit.judge($0.recorded, policy: policy, file: capture) }
            }
            for note in notes { FileHandle.standardError.write(Data("smtpcheck: \(note)\n".utf8)) }
            var result = RunResult(
                target: "capture " + self.captures.joined(separator: ", "), policy: policy.source, profile: policy.profile, cases: cases,
                duration: Date().timeIntervalSince(started))
            result.groupedByFile = true
            try self.report.emit(result)
            ReportOptions.warnIfNothingTested(result)
            if result.exitCode != 0 { throw ExitCode(result.exitCode) }
        }
    }
}
