import SMTPScenarios

/// TAP version 14: `ok`/`not ok` per case, a YAML diagnostic block for every
/// case that did not pass, `# SKIP` for cases that do not apply, and
/// `Bail out!` when no case could run at all.
public enum TAPReporter {
    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        let text = TranscriptText(wording: wording)
        var out = ["TAP version 14", "1..\(run.cases.count)"]
        for (index, result) in run.cases.enumerated() {
            let name = "\(result.scenario.id) - \(sanitize(result.scenario.title))"
            switch result.verdict {
            case .passed:
                out.append("ok \(index + 1) - \(name)")
            case .skipped(let reason):
                out.append("ok \(index + 1) - \(name) # SKIP \(sanitize(wording.skip(reason)))")
            case .failed, .error:
                out.append("not ok \(index + 1) - \(name)")
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
        }
        if !run.cases.isEmpty, run.cases.allSatisfy({ if case .error = $0.verdict { true } else { false } }),
            case .error(let reason) = run.cases[0].verdict
        {
            out.append("Bail out! \(sanitize(wording.error(reason)))")
        }
        return out.joined(separator: "\n") + "\n"
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
