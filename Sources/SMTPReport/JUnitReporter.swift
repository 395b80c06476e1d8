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
        var attributes = "name=\"\(escape(name))\" \(Self.counts(tally, time: time))"
        if let started = heading.started { attributes += " timestamp=\"\(Self.timestamp(started))\"" }
        if let hostname = heading.hostname { attributes += " hostname=\"\(escape(hostname))\"" }
        var out = "  <testsuite \(attributes)>\n"
        out += "    <properties>\n"
        if heading.started != nil { out += "      <property name=\"target\" value=\"\(escape(heading.target))\"/>\n" }
        out += "      <property name=\"policy\" value=\"\(escape(heading.policy))\"/>\n"
        out += "      <property name=\"profile\" value=\"\(heading.profile.rawValue)\"/>\n"
        if let version = heading.toolVersion { out += "      <property name=\"smtpcheck.version\" value=\"\(escape(version))\"/>\n" }
        out += "    </properties>\n"
        return out
    }

    /// JUnit's timestamp: ISO 8601, seconds, no zone (the schema's xs:dateTime, in UTC).
    static func timestamp(_ date: Date) -> String {
        String(TimeText.iso8601(sinceEpoch: date.timeIntervalSince1970).prefix(19))
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

/// JUnit XML as cases come. The counts head each suite, so a stream of
/// unknown length spools its testcases to a temporary file, not memory, and
/// copies them behind their suite's header at the end; a run whose cases are
/// all known (or where no file can be made) keeps them in memory. Cases of
/// several captures get a suite each.
public struct JUnitStream: ReportStream {
    struct Suite {
        var name: String
        var tally = RunTally()
        var duration = 0.0
        /// The testcases, when kept in memory.
        var body = ""
        /// Where they are in the spool.
        var start: UInt64
        var end: UInt64
    }

    let wording: Wording
    private var heading = RunHeading(target: "", policy: "", profile: .documented)
    private var spool: (handle: FileHandle, path: String)?
    private var written: UInt64 = 0
    private var suites: [Suite] = []

    public init(wording: Wording = Wording()) { self.wording = wording }

    /// The suite of a run's cases: `--junit-suite-name`, or what it ran against.
    private var runSuiteName: String { self.heading.suiteName ?? "smtpcheck against \(self.heading.target)" }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        self.heading = heading
        guard heading.count == nil else { return }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-junit-\(UUID().uuidString).xml").path
        if FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forUpdatingAtPath: path)
        {
            self.spool = (handle, path)
        }
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        self.add(result, rendered: JUnitReporter.testcase(result, wording: self.wording), to: &sink)
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let wording = self.wording
        return { JUnitReporter.testcase($0, wording: wording) }
    }

    public mutating func add(_ result: CaseResult, rendered xml: String, to sink: inout some ReportSink) {
        let name: String
        if !self.heading.groupedByFile {
            name = self.runSuiteName
        } else if let suite = result.suite {
            name = self.heading.suiteName.map { "\($0): \(suite)" } ?? "smtpcheck against \(suite)"
        } else {
            name = self.heading.suiteName.map { "\($0): \(result.scenario.file)" } ?? "smtpcheck against capture \(result.scenario.file)"
        }
        if self.suites.last?.name != name { self.suites.append(Suite(name: name, start: self.written, end: self.written)) }
        let last = self.suites.count - 1
        if let spool = self.spool {
            let data = Data(xml.utf8)
            spool.handle.write(data)
            self.written += UInt64(data.count)
            self.suites[last].end = self.written
        } else {
            self.suites[last].body += xml
        }
        self.suites[last].tally.add(result)
        self.suites[last].duration += result.duration
    }

    public mutating func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        sink.write("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        sink.write("<testsuites name=\"smtpcheck\" \(JUnitReporter.counts(tally, time: duration))>\n")
        if self.suites.isEmpty { self.suites.append(Suite(name: self.runSuiteName, start: 0, end: 0)) }
        let single = self.suites.count == 1
        for suite in self.suites {
            sink.write(
                JUnitReporter.suiteHeader(name: suite.name, suite.tally, time: single ? duration : suite.duration, heading: self.heading))
            if let spool = self.spool {
                Self.copy(spool.handle, from: suite.start, to: suite.end, into: &sink)
            } else {
                sink.write(suite.body)
            }
            sink.write("  </testsuite>\n")
        }
        sink.write("</testsuites>\n")
        if let spool = self.spool {
            try? spool.handle.close()
            try? FileManager.default.removeItem(atPath: spool.path)
        }
        self.spool = nil
    }

    /// A suite's testcases out of the spool, a megabyte at a time, cut at
    /// line ends so that no character is split between two pieces.
    private static func copy(_ spool: FileHandle, from start: UInt64, to end: UInt64, into sink: inout some ReportSink) {
        try? spool.seek(toOffset: start)
        var left = end - start
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
