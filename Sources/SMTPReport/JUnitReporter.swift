import Foundation
import SMTPScenarios

/// JUnit XML for CI test tabs: a failure is `<failure>`, a case that could not
/// run is `<error>`, a case that does not apply is `<skipped>`; the transcript
/// goes in `<system-out>`.
public enum JUnitReporter {
    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        let time = String(format: "%.3f", run.duration)
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuites name=\"smtpcheck\" \(Self.counts(run.cases, time: time))>\n"
        // A suite a capture, so that sessions of different files (all
        // numbered from 1) are never merged by a viewer.
        let files = run.files
        if files.count > 1 {
            for file in files {
                let cases = run.cases.filter { $0.scenario.file == file }
                let duration = String(format: "%.3f", cases.reduce(0) { $0 + $1.duration })
                out += Self.suite(name: "smtpcheck against capture \(file)", cases, time: duration, run: run, wording: wording)
            }
        } else {
            out += Self.suite(name: "smtpcheck against \(run.target)", run.cases, time: time, run: run, wording: wording)
        }
        out += "</testsuites>\n"
        return out
    }

    static func counts(_ cases: [CaseResult], time: String) -> String {
        let failures = cases.filter { $0.verdict.label == "FAIL" }.count
        let errors = cases.filter { $0.verdict.label == "ERROR" }.count
        let skipped = cases.filter { $0.verdict.label == "SKIP" }.count
        return "tests=\"\(cases.count)\" failures=\"\(failures)\" errors=\"\(errors)\" skipped=\"\(skipped)\" time=\"\(time)\""
    }

    static func suite(name: String, _ cases: [CaseResult], time: String, run: RunResult, wording: Wording) -> String {
        let text = TranscriptText(wording: wording)
        var out = "  <testsuite name=\"\(escape(name))\" \(Self.counts(cases, time: time))>\n"
        out += "    <properties>\n"
        out += "      <property name=\"policy\" value=\"\(escape(run.policy))\"/>\n"
        out += "      <property name=\"profile\" value=\"\(run.profile.rawValue)\"/>\n"
        out += "    </properties>\n"
        for result in cases {
            let family = result.scenario.tags.first ?? "other"
            out +=
                "    <testcase classname=\"smtpcheck.\(escape(family))\" name=\"\(escape("\(result.scenario.id): \(result.scenario.title)"))\" "
            out += "file=\"\(escape(result.scenario.file))\" time=\"\(String(format: "%.3f", result.duration))\">\n"
            let details = text.details(result).joined(separator: "\n")
            switch result.verdict {
            case .passed: break
            case .failed(let failures):
                let message = failures.first.map { "\($0.rule.map { "\($0): " } ?? "")expected \(wording.expected($0))" } ?? "failed"
                out += "      <failure message=\"\(escape(message))\" type=\"policy\">\(escape(details))</failure>\n"
            case .error(let reason):
                out +=
                    "      <error message=\"\(escape(wording.error(reason, transcript: result.transcript)))\" type=\"harness\">\(escape(details))</error>\n"
            case .skipped(let reason):
                out += "      <skipped message=\"\(escape(wording.skip(reason)))\"/>\n"
            }
            if let transcript = result.transcript {
                out += "      <system-out>\(escape(text.lines(transcript).joined(separator: "\n")))</system-out>\n"
            }
            out += "    </testcase>\n"
        }
        out += "  </testsuite>\n"
        return out
    }

    /// XML text: markup characters escaped; characters XML 1.0 forbids replaced.
    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || (0xFFFE...0xFFFF).contains(scalar.value) || (0xD800...0xDFFF).contains(scalar.value) {
                    out += "\\x" + String(scalar.value, radix: 16, uppercase: true)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
