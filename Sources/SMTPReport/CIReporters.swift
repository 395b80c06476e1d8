import Foundation
import SMTPScenarios

/// A Markdown report: a heading, a table row per case (details for those
/// that did not pass), the summary. It reads on GitHub, GitLab and in a
/// pull request comment as it is.
public struct MarkdownStream: ReportStream {
    let wording: Wording

    public init(wording: Wording = Wording()) { self.wording = wording }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        sink.write(Self.heading(heading) + "\n| result | case | title | details |\n|---|---|---|---|\n")
    }

    public func add(_ result: CaseResult, to sink: inout some ReportSink) {
        sink.write(Self.row(result, wording: self.wording))
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let wording = self.wording
        return { Self.row($0, wording: wording) }
    }

    public func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        sink.write(rendered)
    }

    public func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        sink.write("\n" + Self.summary(tally, duration: duration) + "\n")
    }

    static func heading(_ heading: RunHeading) -> String {
        "## smtpcheck against \(cell(heading.target))\n\npolicy `\(heading.policy)`, profile `\(heading.profile.rawValue)`\n"
    }

    static func summary(_ tally: RunTally, duration: Double) -> String {
        var out =
            "**\(tally.count("PASS")) passed, \(tally.count("FAIL")) failed, \(tally.count("ERROR")) errors, \(tally.count("SKIP")) skipped** "
            + "in \(String(format: "%.2f", duration)) s\n\n" + ConsoleReporter.familySummary(tally)
        if tally.relay.attempts > 0 { out += "; relay: \(tally.relay.refused) of \(tally.relay.attempts) relay attempts refused" }
        return out
    }

    static func row(_ result: CaseResult, wording: Wording) -> String {
        let mark: String
        switch result.verdict {
        case .passed: mark = "✅ PASS"
        case .failed: mark = "❌ FAIL"
        case .error: mark = "⚠️ ERROR"
        case .skipped: mark = "➖ SKIP"
        }
        let details = TranscriptText(wording: wording).details(result).map(cell).joined(separator: "<br>")
        return "| \(mark) | `\(result.qualifiedID)` | \(cell(result.scenario.title)) | \(details) |\n"
    }

    /// Text for a table cell: no line break, no unescaped `|`, markup characters escaped.
    static func cell(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "|": out += "\\|"
            case "\n", "\r": out += " "
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "`", "*", "_", "[", "]": out += "\\\(character)"
            default: out.append(character)
            }
        }
        return out
    }
}

/// GitHub Actions: a workflow command per failure and error, so each shows
/// as an annotation on its scenario file and line (or its capture and
/// session); the transcripts folded in log groups; the summary last. With
/// `summaryFile` (`$GITHUB_STEP_SUMMARY`), a Markdown job summary is
/// appended to it: the counts and the cases that did not pass.
public struct GitHubStream: ReportStream {
    let wording: Wording
    let summaryFile: String?
    private var heading = RunHeading(target: "", policy: "", profile: .documented)
    /// Rows of the job summary: the cases that did not pass, up to `summaryRows`.
    private var notPassed: [String] = []
    private var moreNotPassed = 0
    static let summaryRows = 500

    public init(wording: Wording = Wording(), summaryFile: String? = nil) {
        self.wording = wording
        self.summaryFile = summaryFile
    }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        self.heading = heading
        sink.write("smtpcheck against \(heading.target) (policy \(heading.policy), profile \(heading.profile.rawValue))\n")
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        self.add(result, rendered: Self.lines(result, wording: self.wording), to: &sink)
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let wording = self.wording
        return { Self.lines($0, wording: wording) }
    }

    public mutating func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        sink.write(rendered)
        switch result.verdict {
        case .passed, .skipped: return
        case .failed, .error:
            if self.notPassed.count < Self.summaryRows {
                self.notPassed.append(MarkdownStream.row(result, wording: self.wording))
            } else {
                self.moreNotPassed += 1
            }
        }
    }

    public func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        sink.write(
            "\(tally.count("PASS")) passed, \(tally.count("FAIL")) failed, \(tally.count("ERROR")) errors, \(tally.count("SKIP")) skipped "
                + "in \(String(format: "%.2f", duration)) s\n")
        guard let summaryFile else { return }
        var summary = MarkdownStream.heading(self.heading) + "\n" + MarkdownStream.summary(tally, duration: duration) + "\n"
        if !self.notPassed.isEmpty {
            summary += "\n| result | case | title | details |\n|---|---|---|---|\n" + self.notPassed.joined()
            if self.moreNotPassed > 0 { summary += "\n… and \(self.moreNotPassed) more cases that did not pass\n" }
        }
        // Appended, as GitHub asks: other steps write to the same file.
        let descriptor = open(summaryFile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            sink.write("::warning::cannot write the job summary to \(Self.escapeData(summaryFile))\n")
            return
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        try? handle.write(contentsOf: Data((summary + "\n").utf8))
        try? handle.close()
    }

    /// A case's lines: a plain line when it passed or was skipped; for a
    /// failure, an `::error` annotation per broken rule at the case's file
    /// and line, and the transcript in a group.
    static func lines(_ result: CaseResult, wording: Wording) -> String {
        let scenario = result.scenario
        // At the failing step's line where the scenario file has one.
        func location(step: Int?) -> String {
            let stepLine = step.flatMap { scenario.steps.indices.contains($0) ? scenario.steps[$0].line : nil } ?? 0
            let line = stepLine > 0 ? stepLine : scenario.line
            return "file=\(escapeProperty(scenario.file))" + (line > 0 ? ",line=\(line)" : "")
        }
        let text = TranscriptText(wording: wording)
        var out = ""
        switch result.verdict {
        case .passed:
            return "PASS \(result.qualifiedID)\n"
        case .skipped(let reason):
            return "SKIP \(result.qualifiedID): \(wording.skip(reason))\n"
        case .failed(let failures):
            for failure in failures {
                let rule = failure.rule.map { "rule \($0.rawValue)" } ?? "acceptance"
                let step = failure.step.map { ", step \($0 + 1)" } ?? ""
                let message =
                    "\(scenario.title): \(rule)\(step): expected \(wording.expected(failure)); got \(wording.observed(failure.got))"
                out +=
                    "::error \(location(step: failure.step)),title=\(escapeProperty("smtpcheck \(result.qualifiedID)"))::\(escapeData(message))\n"
            }
        case .error(let reason):
            let message = "\(scenario.title): \(wording.error(reason, transcript: result.transcript))"
            out +=
                "::error \(location(step: nil)),title=\(escapeProperty("smtpcheck \(result.qualifiedID) could not run"))::\(escapeData(message))\n"
        }
        // The transcript holds what the server said: workflow commands are
        // stopped around it, so that a reply cannot be taken for one.
        let token = "smtpcheck-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        out += "::group::\(escapeData("\(result.qualifiedID) transcript"))\n::stop-commands::\(token)\n"
        for line in text.details(result) { out += line + "\n" }
        if let transcript = result.transcript { for line in text.lines(transcript) { out += line + "\n" } }
        return out + "::\(token)::\n::endgroup::\n"
    }

    /// A workflow command's message: `%`, CR and LF escaped.
    static func escapeData(_ text: String) -> String {
        text.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(
            of: "\n", with: "%0A")
    }

    /// A workflow command's property value: also `:` and `,`.
    static func escapeProperty(_ text: String) -> String {
        escapeData(text).replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
    }
}
