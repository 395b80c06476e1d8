import Foundation
import SMTPScenarios

/// The readable report: a line per case, details and the transcript for every
/// case that did not pass, and a summary.
public struct ConsoleReporter: Sendable, ReportStream {
    public var useColor: Bool
    /// Show transcripts of passing cases too.
    public var verbose: Bool
    public var wording: Wording
    /// Show only the cases that did not pass (and the summary).
    public var quiet = false

    public init(useColor: Bool, verbose: Bool = false, wording: Wording = Wording(), quiet: Bool = false) {
        self.useColor = useColor
        self.verbose = verbose
        self.wording = wording
        self.quiet = quiet
    }

    private func paint(_ text: String, _ code: String) -> String {
        self.useColor ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    /// `text` with spaces after it to `width` characters (never cut; Foundation's
    /// `padding` went through NSString for every case written).
    static func padded(_ text: String, to width: Int) -> String {
        let count = text.count
        return count >= width ? text : text + String(repeating: " ", count: width - count)
    }

    private func label(_ verdict: Verdict) -> String {
        let text = Self.padded(verdict.label, to: 5)
        switch verdict {
        case .passed: return self.paint(text, "32")
        case .failed: return self.paint(text, "31;1")
        case .error: return self.paint(text, "35")
        case .skipped: return self.paint(text, "33")
        }
    }

    public func render(_ run: RunResult) -> String {
        var stream = self
        return stream.renderAll(run)
    }

    /// Set by `begin`: the id column's width and the file the last case came from.
    private var width = 10
    private var groupedByFile = false
    private var file: String?

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        let what = heading.count.map { "\($0) cases against" } ?? "judging"
        sink.write("smtpcheck: \(what) \(heading.target)\npolicy: \(heading.policy) (profile \(heading.profile.rawValue))\n\n")
        self.width = min(max(heading.idWidth ?? 10, 10), 40)
        self.groupedByFile = heading.groupedByFile
        self.file = nil
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        self.add(result, rendered: self.details(result), to: &sink)
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let reporter = self
        return { reporter.details($0) }
    }

    public mutating func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        if self.quiet {
            switch result.verdict {
            case .passed, .skipped: return
            case .failed, .error: break
            }
        }
        var out = ""
        if self.groupedByFile, result.suiteName != self.file {
            self.file = result.suiteName
            out += "== \(result.suiteName)\n"
        }
        let id = Self.padded(result.scenario.id, to: self.width)
        sink.write(out + "\(self.label(result.verdict)) \(id)  \(result.scenario.title)\n" + rendered)
    }

    /// A case's lines under its heading: details, and the transcript where shown.
    /// Written into one string as it grows: a line costs no string of its
    /// own beyond what ``TranscriptText`` makes (most of a large capture's
    /// console report is these lines).
    private func details(_ result: CaseResult) -> String {
        var out = ""
        func add(_ indent: String, _ line: String) {
            out += indent
            out += TranscriptText.shorten(line, to: Self.lineLimit)
            out += "\n"
        }
        let text = TranscriptText(wording: self.wording)
        for line in text.details(result) { add("      ", line) }
        let showTranscript: Bool
        switch result.verdict {
        case .failed, .error: showTranscript = true
        case .passed, .skipped: showTranscript = self.verbose
        }
        if showTranscript, let transcript = result.transcript {
            let lines = text.lines(transcript)
            out.reserveCapacity(out.utf8.count + lines.reduce(0) { $0 + $1.utf8.count + 9 } + 23)
            add("      ", "transcript:")
            for line in lines { add("        ", line) }
        }
        return out
    }

    /// Characters of a line the console shows; the rest is counted.
    static let lineLimit = 200

    public func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        var out = ["", Self.familySummary(tally)]
        if tally.relay.attempts > 0 { out.append("relay: \(tally.relay.refused) of \(tally.relay.attempts) relay attempts refused") }
        out.append(
            "\(tally.count("PASS")) passed, \(tally.count("FAIL")) failed, \(tally.count("ERROR")) errors, \(tally.count("SKIP")) skipped "
                + "in \(String(format: "%.2f", duration)) s")
        sink.write(out.joined(separator: "\n") + "\n")
    }

    /// Counts per family (the first tag of each case).
    static func familySummary(_ tally: RunTally) -> String {
        "by family: "
            + tally.families.map { family in
                let counts = [
                    (family.passed, "passed"), (family.failed, "failed"), (family.errors, family.errors == 1 ? "error" : "errors"),
                    (family.skipped, "skipped"),
                ]
                return family.name + " " + counts.filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            }.joined(separator: "; ")
    }
}
