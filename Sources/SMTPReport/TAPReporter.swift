import SMTPScenarios

/// TAP version 14: `ok`/`not ok` per case, a YAML diagnostic block for every
/// case that did not pass, `# SKIP` for cases that do not apply, and
/// `Bail out!` when no case could run at all.
public enum TAPReporter {
    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        var stream = TAPStream(wording: wording)
        return stream.renderAll(run)
    }

    static func lines(_ result: CaseResult, number: Int, wording: Wording) -> [String] {
        let text = TranscriptText(wording: wording)
        let name = "\(sanitize(result.qualifiedID)) - \(sanitize(result.scenario.title))"
        var out: [String] = []
        switch result.verdict {
        case .passed:
            out.append("ok \(number) - \(name)")
        case .skipped(let reason):
            out.append("ok \(number) - \(name) # SKIP \(sanitize(wording.skip(reason)))")
        case .failed, .error:
            out.append("not ok \(number) - \(name)")
            out.append("  ---")
            if case .error(let reason) = result.verdict {
                out.append("  severity: error")
                out.append("  message: \(quote(wording.error(reason, transcript: result.transcript)))")
            } else {
                out.append("  severity: fail")
            }
            if case .failed(let failures) = result.verdict {
                out.append("  failures:")
                for failure in failures {
                    out.append("    - step: \(failure.step.map { String($0 + 1) } ?? "null")")
                    out.append("      rule: \(failure.rule.map { quote($0.rawValue) } ?? "null")")
                    out.append("      expected: \(quote(wording.expected(failure)))")
                    out.append("      got: \(quote(wording.observed(failure.got)))")
                }
            }
            if let transcript = result.transcript {
                out.append("  transcript: |")
                for line in text.lines(transcript) { out.append("    " + line) }
            }
            out.append("  ...")
        }
        return out
    }

    /// A description on one line, without `#` (which would start a directive).
    static func sanitize(_ text: String) -> String {
        text.map { $0 == "\n" || $0 == "\r" ? " " : $0 == "#" ? "\\#" : String($0) }.joined()
    }

    /// A YAML double-quoted scalar.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += "\\x" + String(scalar.value, radix: 16) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

/// TAP as cases come: the plan first where the number of cases is known,
/// else last (TAP 14 allows either).
public struct TAPStream: ReportStream {
    let wording: Wording
    private var number = 0
    private var planned = false

    public init(wording: Wording = Wording()) { self.wording = wording }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        self.number = 0
        self.planned = heading.count != nil
        sink.write("TAP version 14\n" + (heading.count.map { "1..\($0)\n" } ?? ""))
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        self.number += 1
        sink.write(TAPReporter.lines(result, number: self.number, wording: self.wording).joined(separator: "\n") + "\n")
    }

    public func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        if !self.planned { sink.write("1..\(self.number)\n") }
        if let reason = tally.onlyErrors { sink.write("Bail out! \(TAPReporter.sanitize(self.wording.error(reason)))\n") }
    }
}
