import Foundation
import SMTPScenarios

/// JUnit XML for CI test tabs: a failure is `<failure>`, a case that could not
/// run is `<error>`, a case that does not apply is `<skipped>`; the transcript
/// goes in `<system-out>`.
public enum JUnitReporter {
    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        var stream = JUnitStream(wording: wording)
        return stream.renderAll(run)
    }

    static func counts(_ tally: RunTally, time: Double) -> String {
        "tests=\"\(tally.total)\" failures=\"\(tally.count("FAIL"))\" errors=\"\(tally.count("ERROR"))\" skipped=\"\(tally.count("SKIP"))\" "
            + "time=\"\(String(format: "%.3f", time))\""
    }

    static func suiteHeader(name: String, _ tally: RunTally, time: Double, heading: RunHeading) -> String {
        var out = "  <testsuite name=\"\(escape(name))\" \(Self.counts(tally, time: time))>\n"
        out += "    <properties>\n"
        out += "      <property name=\"policy\" value=\"\(escape(heading.policy))\"/>\n"
        out += "      <property name=\"profile\" value=\"\(heading.profile.rawValue)\"/>\n"
        out += "    </properties>\n"
        return out
    }

    static func testcase(_ result: CaseResult, wording: Wording) -> String {
        let text = TranscriptText(wording: wording)
        let family = result.scenario.tags.first ?? "other"
        var out =
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

/// JUnit XML as cases come. The counts head each suite, so the testcases
/// wait in a temporary file, not in memory, and are copied behind their
/// suite's header at the end. Cases of several captures get a suite each.
public struct JUnitStream: ReportStream {
    let wording: Wording
    private var heading = RunHeading(target: "", policy: "", profile: .documented)
    private var spool: FileHandle?
    private var spoolPath: String?
    private var written: UInt64 = 0
    private var suites: [(name: String, tally: RunTally, duration: Double, start: UInt64, end: UInt64)] = []
    /// Testcases kept in memory when no temporary file could be made.
    private var fallback = ""

    public init(wording: Wording = Wording()) { self.wording = wording }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        self.heading = heading
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-junit-\(UUID().uuidString).xml").path
        if FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forUpdatingAtPath: path)
        {
            self.spool = handle
            self.spoolPath = path
        }
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        let name =
            self.heading.groupedByFile ? "smtpcheck against capture \(result.scenario.file)" : "smtpcheck against \(self.heading.target)"
        if self.suites.last?.name != name { self.suites.append((name, RunTally(), 0, self.written, self.written)) }
        let xml = Data(JUnitReporter.testcase(result, wording: self.wording).utf8)
        if let spool = self.spool { spool.write(xml) } else { self.fallback += String(decoding: xml, as: UTF8.self) }
        self.written += UInt64(xml.count)
        let last = self.suites.count - 1
        self.suites[last].tally.add(result)
        self.suites[last].duration += result.duration
        self.suites[last].end = self.written
    }

    public mutating func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        sink.write("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        sink.write("<testsuites name=\"smtpcheck\" \(JUnitReporter.counts(tally, time: duration))>\n")
        if self.suites.isEmpty {
            self.suites.append(("smtpcheck against \(self.heading.target)", RunTally(), 0, 0, 0))
        }
        let single = self.suites.count == 1
        for suite in self.suites {
            sink.write(
                JUnitReporter.suiteHeader(
                    name: suite.name, suite.tally, time: single ? duration : suite.duration, heading: self.heading))
            self.copy(from: suite.start, to: suite.end, into: &sink)
            sink.write("  </testsuite>\n")
        }
        sink.write("</testsuites>\n")
        try? self.spool?.close()
        if let path = self.spoolPath { try? FileManager.default.removeItem(atPath: path) }
        self.spool = nil
    }

    /// A suite's testcases, a megabyte at a time.
    private func copy(from start: UInt64, to end: UInt64, into sink: inout some ReportSink) {
        guard let spool = self.spool else {
            let bytes = Array(self.fallback.utf8)
            sink.write(String(decoding: bytes[Int(start)..<Int(end)], as: UTF8.self))
            return
        }
        try? spool.seek(toOffset: start)
        var left = end - start
        // Cut at line ends, so that no character is split between two pieces.
        var carry = Data()
        while left > 0 {
            let chunk = spool.readData(ofLength: Int(min(left, 1 << 20)))
            guard !chunk.isEmpty else { break }
            left -= UInt64(chunk.count)
            carry.append(chunk)
            guard let newline = carry.lastIndex(of: 0x0A) else { continue }
            sink.write(String(decoding: carry[..<(newline + 1)], as: UTF8.self))
            carry = Data(carry[(newline + 1)...])
        }
        if !carry.isEmpty { sink.write(String(decoding: carry, as: UTF8.self)) }
    }
}
