import Foundation
import SMTPPolicy
import SMTPScenarios

/// Where a report goes, a piece at a time.
public protocol ReportSink {
    mutating func write(_ text: String)
}

/// A report kept in memory (the batch renderers, tests).
public struct StringSink: ReportSink {
    public private(set) var text = ""
    public init() {}
    public mutating func write(_ text: String) { self.text += text }
}

/// A report written to a file handle as it is made. A write that fails
/// (a pipe whose reader left, a full disk) goes to `failed` once, and the
/// rest is dropped: no trap.
public struct FileSink: ReportSink {
    let handle: FileHandle
    let failed: (any Error) -> Void
    private var broken = false

    public init(_ handle: FileHandle, failed: @escaping (any Error) -> Void = { _ in }) {
        self.handle = handle
        self.failed = failed
    }

    public mutating func write(_ text: String) {
        guard !self.broken else { return }
        do {
            try self.handle.write(contentsOf: Data(text.utf8))
        } catch {
            self.broken = true
            self.failed(error)
        }
    }
}

/// What a run is, for a report's header and summary.
public struct RunHeading: Sendable {
    public var target: String
    public var policy: String
    public var profile: Profile
    /// The number of cases, where it is known before they come.
    public var count: Int?
    /// Cases come grouped by input file (captures): each file is named.
    public var groupedByFile: Bool
    /// The widest case id, where it is known before the cases come.
    public var idWidth: Int?
    /// Where and when it ran and with what (JUnit's `timestamp`, `hostname`
    /// and properties); left out where not given (golden reports).
    public var started: Date?
    public var hostname: String?
    public var toolVersion: String?
    /// A name for the JUnit suite instead of "smtpcheck against TARGET".
    public var suiteName: String?
    /// This run is one part of a sharded run (`I/N`): its JSON Lines carry
    /// what `smtpcheck merge` needs to put the parts together.
    public var shard: String?

    public init(
        target: String, policy: String, profile: Profile, count: Int? = nil, groupedByFile: Bool = false, idWidth: Int? = nil
    ) {
        self.target = target
        self.policy = policy
        self.profile = profile
        self.count = count
        self.groupedByFile = groupedByFile
        self.idWidth = idWidth
    }

    /// The heading of a run whose cases are all known.
    public init(_ run: RunResult) {
        self.init(
            target: run.target, policy: run.policy, profile: run.profile, count: run.cases.count,
            groupedByFile: run.groupedByFile && Set(run.cases.map(\.scenario.file)).count > 1,
            idWidth: run.cases.map(\.scenario.id.count).max())
    }
}

/// A report written as cases come: a heading, each case, a summary. What
/// it keeps between cases is a tally, never the cases, so memory stays flat
/// however long the run.
public protocol ReportStream {
    mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink)
    mutating func add(_ result: CaseResult, to sink: inout some ReportSink)
    /// Makes the text of a case that depends on the case alone, on any
    /// thread: a capture's sessions are judged and rendered on the reading
    /// threads, then written in order through ``add(_:rendered:to:)``.
    /// `nil` where the format renders as it writes.
    var caseRenderer: (@Sendable (CaseResult) -> String)? { get }
    /// Writes a case whose text ``caseRenderer`` made.
    mutating func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink)
    mutating func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink)
}

extension ReportStream {
    public var caseRenderer: (@Sendable (CaseResult) -> String)? { nil }

    public mutating func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        self.add(result, to: &sink)
    }

    /// A whole run at once.
    public mutating func renderAll(_ run: RunResult) -> String {
        var sink = StringSink()
        self.begin(RunHeading(run), to: &sink)
        for result in run.cases { self.add(result, to: &sink) }
        self.end(run.tally, duration: run.duration, to: &sink)
        return sink.text
    }
}
