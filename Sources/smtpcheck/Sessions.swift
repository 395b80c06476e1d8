import ArgumentParser
import Foundation
import SMTPCapture
import SMTPReport

struct CaptureInputOptions: ParsableArguments {
    @Option(name: .long, help: "A BPF filter applied while reading, e.g. 'port 587'.")
    var filter: String?

    @Option(name: .long, help: "Another port to take as an SMTP server port (besides 25, 465, 587, 2525).")
    var port: [UInt16] = []

    @Option(
        name: .customLong("read-jobs"),
        help: ArgumentHelp(
            "Threads that read a capture file, connections spread over them (default: one per core, at most 8); the output is the same for any number.",
            valueName: "n"))
    var readJobs: Int?

    func validate() throws {
        if let jobs = self.readJobs, jobs < 1 || jobs > 64 { throw ValidationError("--read-jobs must be from 1 to 64") }
    }

    /// Watches an interface until SIGINT or SIGTERM, handing out each
    /// session as it ends; the sessions still open then are handed out as
    /// they stand. An interface that cannot be opened exits 2 with the reason.
    func watch(_ interface: String, each: (CapturedSession) -> Void) throws -> CaptureSummary {
        let options = CaptureOptions(extraPorts: Set(self.port), filter: self.filter, keepSessions: false)
        let source: PcapLiveReader
        do {
            source = try PcapLiveReader(interface: interface, filter: self.filter)
        } catch {
            StandardStreams.err("smtpcheck: \(error)\n")
            throw ExitCode(ExitCodes.couldNotRun)
        }
        SignalSources.onTermination { source.stop() }
        let what = self.filter.map { " (filter '\($0)')" } ?? ""
        StandardStreams.err("smtpcheck: watching \(interface)\(what); Ctrl-C stops and writes the summary\n")
        do {
            return try CaptureReader.read(source, name: interface, options: options, session: each)
        } catch {
            StandardStreams.err("smtpcheck: \(error)\n")
            throw ExitCode(ExitCodes.couldNotRun)
        }
    }

    /// Reads a capture, every session kept in the summary (`run --capture`,
    /// `replay`); an unusable file prints its error and exits 65.
    func read(_ path: String) throws -> CaptureSummary {
        try self.reading(path) { options, workers, progress throws(CaptureError) in
            var keeping = options
            keeping.keepSessions = true
            return try CaptureReader.read(path, options: keeping, workers: workers, progress: progress)
        }
    }

    /// Reads a capture over `--read-jobs` threads: each session is prepared
    /// (judged, formatted) on them, and handed to `each` here, in order.
    func read<Prepared: Sendable>(
        _ path: String, prepare: @escaping @Sendable (CapturedSession) -> Prepared, each: (Prepared) -> Void
    ) throws -> CaptureSummary {
        try self.reading(path) { options, workers, progress throws(CaptureError) in
            try CaptureReader.read(path, options: options, workers: workers, prepare: prepare, each: each, progress: progress)
        }
    }

    /// A read with this command line's options: on a terminal a progress
    /// line on standard error follows it; an unusable file exits 65.
    private func reading(
        _ path: String,
        _ body: (CaptureOptions, Int, ((CaptureReader.Progress) -> Void)?) throws(CaptureError) -> CaptureSummary
    ) throws -> CaptureSummary {
        let options = CaptureOptions(extraPorts: Set(self.port), filter: self.filter, keepSessions: false)
        var meter = ProgressLine(path: path)
        defer { meter.clear() }
        do {
            return try body(options, self.readJobs ?? CaptureReader.defaultWorkers, meter.enabled ? { meter.show($0) } : nil)
        } catch {
            StandardStreams.err("smtpcheck: \(error)\n")
            throw ExitCode(ExitCodes.badInput)
        }
    }
}

extension SMTPCheck {
    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the SMTP sessions of a capture, each command paired with its reply.")

        /// The names run, check and replay give these formats; `text` is
        /// still read as `console`, the name it had.
        enum Format: String, ExpressibleByArgument, CaseIterable {
            case console, json

            init?(argument: String) {
                self.init(rawValue: argument == "text" ? "console" : argument)
            }
        }

        @Argument(help: "A pcap or pcapng file.", completion: .file(extensions: ["pcap", "pcapng", "cap"]))
        var capture: String

        @OptionGroup var input: CaptureInputOptions

        @Option(
            name: .long,
            help: "console (each session's exchanges, readable), or json (one JSON object per session); check judges them in every format.")
        var format: Format = .console

        @Option(name: .long, help: "Write the sessions to this file instead of standard output.", completion: .file())
        var output: String?

        func validate() throws {
            if let output = self.output, let problem = ReportOptions.unwritable(output) {
                throw ValidationError("--output \(output): \(problem)")
            }
        }

        func run() async throws {
            let format = self.format
            var sink: FileSink?
            if let output = self.output {
                guard FileManager.default.createFile(atPath: output, contents: nil), let handle = FileHandle(forWritingAtPath: output)
                else {
                    throw ValidationError("cannot write \(output)")
                }
                sink = FileSink(handle) { error in StandardStreams.err("smtpcheck: cannot write \(output): \(error)\n") }
            }
            func write(_ text: String) {
                if sink != nil { sink?.write(text) } else { StandardStreams.out(text) }
            }
            // Each session is formatted on the reading threads and printed as it ends, then let go.
            let summary = try self.input.read(self.capture, prepare: { session in Self.render(session, format) }) { text in
                write(text)
            }
            var closing = "\(summary.sessionCount) SMTP sessions in \(summary.packets) packets"
            if summary.otherFlows > 0 { closing += "; \(summary.otherFlows) other TCP connections" }
            let lines = [closing] + summary.notes
            if format == .console {
                write(lines.map { "# \($0)" }.joined(separator: "\n") + "\n")
            } else {
                StandardStreams.err((lines.joined(separator: "\n") + "\n"))
            }
        }

        static func render(_ session: CapturedSession, _ format: Format) -> String {
            switch format {
            case .console:
                return Self.text(session)
            case .json:
                var fields: [String: JSONLinesReporter.Field] = [
                    "type": "session", "number": .number(session.number), "client": .text(session.client.description),
                    "server": .text(session.server.description),
                ]
                if session.implicitTLS { fields["implicitTLS"] = .flag(true) }
                return JSONLinesReporter.encode(session.transcript, extra: fields, wording: .commandLine) + "\n"
            }
        }

        static func text(_ session: CapturedSession) -> String {
            var out = "session \(session.number): \(session.client) -> \(session.server)"
            if let start = session.transcript.startTime { out += ", \(TimeText.iso8601(sinceEpoch: start))" }
            out += ", \(session.transcript.exchanges.count) exchanges\n"
            let header = "# \(session.client)"
            for line in TranscriptText(wording: .commandLine).lines(session.transcript, timestamps: true) where !line.hasPrefix(header) {
                out += "  " + line + "\n"
            }
            return out + "\n"
        }
    }
}

/// "reading FILE: 45% (135.2 of 300.0 MB), 12345 sessions, 85.1 MB/s" on
/// standard error, four times a second at most, only on a terminal.
struct ProgressLine {
    let path: String
    let enabled: Bool
    let size: Double?
    let started = Date()
    private var last = Date.distantPast
    private var shown = false

    init(path: String) {
        self.path = path
        self.enabled = Self.wanted
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        self.size = bytes.flatMap { $0 > 0 ? Double($0) / 1_000_000 : nil }
    }

    /// A progress line belongs on a terminal's standard error, and not where
    /// SMTPCHECK_NO_PROGRESS is set.
    static var wanted: Bool { isatty(STDERR_FILENO) != 0 && ProcessInfo.processInfo.environment["SMTPCHECK_NO_PROGRESS"] == nil }

    mutating func show(_ progress: CaptureReader.Progress) {
        let now = Date()
        guard now.timeIntervalSince(self.last) >= 0.25 else { return }
        self.last = now
        let read = Double(progress.octets) / 1_000_000
        let rate = read / max(now.timeIntervalSince(self.started), 0.001)
        let part =
            self.size.map { String(format: "%.0f%% (%.1f of %.1f MB)", min(read / $0 * 100, 100), read, $0) }
            ?? String(format: "%.1f MB", read)
        let line = "reading \(self.path): \(part), \(progress.sessions) sessions, " + String(format: "%.1f MB/s", rate)
        StandardStreams.err("\r\u{1B}[K\(line)")
        self.shown = true
    }

    mutating func clear() {
        guard self.shown else { return }
        StandardStreams.err("\r\u{1B}[K")
        self.shown = false
    }
}
