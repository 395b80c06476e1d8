import Foundation
import SMTPScenarios

/// The readable report: a line per case, details and the transcript for every
/// case that did not pass, and a summary.
public struct ConsoleReporter: Sendable {
    public var useColor: Bool
    /// Show transcripts of passing cases too.
    public var verbose: Bool
    public var wording: Wording

    public init(useColor: Bool, verbose: Bool = false, wording: Wording = Wording()) {
        self.useColor = useColor
        self.verbose = verbose
        self.wording = wording
    }

    private func paint(_ text: String, _ code: String) -> String {
        self.useColor ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    private func label(_ verdict: Verdict) -> String {
        let text = verdict.label.padding(toLength: 5, withPad: " ", startingAt: 0)
        switch verdict {
        case .passed: return self.paint(text, "32")
        case .failed: return self.paint(text, "31;1")
        case .error: return self.paint(text, "35")
        case .skipped: return self.paint(text, "33")
        }
    }

    public func render(_ run: RunResult) -> String {
        var out: [String] = []
        out.append("smtpcheck: \(run.cases.count) cases against \(run.target)")
        out.append("policy: \(run.policy) (profile \(run.profile.rawValue))")
        out.append("")
        let width = min(max(run.cases.map(\.scenario.id.count).max() ?? 0, 10), 40)
        let text = TranscriptText(wording: self.wording)
        let files = run.files
        var file: String?
        for result in run.cases {
            if files.count > 1, result.scenario.file != file {
                file = result.scenario.file
                out.append("== \(result.scenario.file)")
            }
            let id = result.scenario.id.padding(toLength: max(width, result.scenario.id.count), withPad: " ", startingAt: 0)
            out.append("\(self.label(result.verdict)) \(id)  \(result.scenario.title)")
            for line in text.details(result) { out.append("      " + line) }
            let showTranscript: Bool
            switch result.verdict {
            case .failed, .error: showTranscript = true
            case .passed, .skipped: showTranscript = self.verbose
            }
            if showTranscript, let transcript = result.transcript {
                out.append("      transcript:")
                for line in text.lines(transcript) { out.append("        " + line) }
            }
        }
        out.append("")
        out.append(Self.familySummary(run))
        if let relay = Self.relaySummary(run) { out.append(relay) }
        out.append(
            "\(run.count("PASS")) passed, \(run.count("FAIL")) failed, \(run.count("ERROR")) errors, \(run.count("SKIP")) skipped "
                + "in \(String(format: "%.2f", run.duration)) s")
        return out.joined(separator: "\n") + "\n"
    }

    /// "N of M relay attempts refused": relay cases whose foreign RCPT the
    /// server refused, by what it answered (any 4xx or 5xx), whatever the wording.
    static func relaySummary(_ run: RunResult) -> String? {
        let attempts = run.cases.filter {
            $0.scenario.tags.contains("relay") && !$0.scenario.tags.contains("accepted") && $0.scenario.identity == .external
                && $0.transcript != nil
        }
        .compactMap { result -> Bool? in
            let rcpts = result.transcript?.exchanges.filter { $0.command?.verb == .rcpt && $0.reply != nil } ?? []
            guard let last = rcpts.last?.reply else { return nil }
            return !last.code.isPositive
        }
        guard !attempts.isEmpty else { return nil }
        return "relay: \(attempts.filter { $0 }.count) of \(attempts.count) relay attempts refused"
    }

    /// Counts per family (the first tag of each case).
    static func familySummary(_ run: RunResult) -> String {
        var order: [String] = []
        var counts: [String: (passed: Int, total: Int)] = [:]
        for result in run.cases {
            let family = result.scenario.tags.first ?? "other"
            if counts[family] == nil { order.append(family) }
            var entry = counts[family] ?? (0, 0)
            entry.total += 1
            if result.verdict == .passed { entry.passed += 1 }
            counts[family] = entry
        }
        return "by family: " + order.map { "\($0) \(counts[$0]?.passed ?? 0)/\(counts[$0]?.total ?? 0)" }.joined(separator: ", ")
    }
}
