import ArgumentParser
import Foundation
import NIOCore
import SMTPCapture
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPScenarios
import SMTPServer

extension SMTPCheck {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run scenarios against the in-process reference server or a live server.")

        @OptionGroup var selection: ScenarioSelection
        @OptionGroup var policyOptions: PolicyOptions

        @Option(name: .long, help: "A live server, HOST[:PORT] (IPv4, [IPv6]:port, or a name; port 25 by default).")
        var target: String?

        @Option(
            name: .long,
            help: ArgumentHelp(
                "A file of live servers, HOST[:PORT] a line ('#' starts a comment): each is tested and reported as a suite of its own.",
                valueName: "file"),
            completion: .file())
        var targets: String?

        @Option(
            name: .long, help: "Judge the cases on the sessions of this capture instead of running them (pcap or pcapng).",
            completion: .file(extensions: ["pcap", "pcapng", "cap"]))
        var capture: String?

        @OptionGroup var captureInput: CaptureInputOptions

        @Option(name: .long, help: "The AUTH user for authenticated cases.")
        var user: String?

        @Option(name: .customLong("password-env"), help: "The environment variable that holds the AUTH password.")
        var passwordEnv: String?

        @OptionGroup var tlsArguments: TLSArguments

        @Option(name: .customLong("oauth-token-env"), help: "The environment variable that holds an OAuth bearer token, for XOAUTH2 cases.")
        var oauthTokenEnv: String?

        @Option(
            name: .customLong("proxy-target"),
            help: "A listener of the target that expects PROXY headers, HOST:PORT, for the proxy identities.")
        var proxyTarget: String?

        @Option(name: .long, help: "A source address in a trusted network, for trusted cases.")
        var source: String?

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Cases run in parallel (default: 4 against a server, 16 against the in-process one).", valueName: "jobs"))
        var jobs: Int?

        @Option(name: .long, help: "Seconds each case may take, connect to QUIT.")
        var timeout: Int = 30

        @Option(
            name: .long, help: ArgumentHelp(ServerFaults.helpText, valueName: "fault"),
            completion: .list(ServerFaults.catalogue.map(\.name)))
        var fault: [String] = []

        @Option(
            name: .long,
            help: """
                Also write every session's traffic to this pcap file, as the client saw it on the wire. It holds the \
                AUTH exchanges, credentials included (base64): it is written readable by its owner only (mode 0600).
                """,
            completion: .file(extensions: ["pcap"]))
        var record: String?

        @OptionGroup var sharding: ShardOption
        @OptionGroup var report: ReportOptions

        func validate() throws {
            try self.sharding.validate(format: self.report.format)
            if self.targets != nil && (self.target != nil || self.capture != nil || !self.fault.isEmpty || self.record != nil) {
                throw ValidationError("--targets names the servers: it goes with neither --target, --capture, --fault nor --record")
            }
            if let file = self.targets, !FileManager.default.isReadableFile(atPath: file) {
                throw ValidationError("cannot read --targets \(file)")
            }
            if let jobs = self.jobs, jobs < 1 || jobs > 256 { throw ValidationError("--jobs must be from 1 to 256") }
            if self.timeout < 1 || self.timeout > 3600 { throw ValidationError("--timeout must be from 1 to 3600 seconds") }
            if let target = self.target, TargetAddress(target) == nil {
                throw ValidationError("--target '\(target)' is not HOST[:PORT]")
            }
            if self.capture != nil && (self.target != nil || !self.fault.isEmpty || self.record != nil) {
                throw ValidationError("--capture judges recorded sessions: it goes with neither --target, --fault nor --record")
            }
            if let proxy = self.proxyTarget, TargetAddress(proxy) == nil {
                throw ValidationError("--proxy-target '\(proxy)' is not HOST:PORT")
            }
            if self.target != nil && !self.fault.isEmpty {
                throw ValidationError("--fault applies to the in-process server, not to --target")
            }
            if (self.user == nil) != (self.passwordEnv == nil) { throw ValidationError("--user and --password-env go together") }
            for (flag, variable) in [("--password-env", self.passwordEnv), ("--oauth-token-env", self.oauthTokenEnv)] {
                if let variable, ProcessInfo.processInfo.environment[variable] == nil {
                    throw ValidationError("the environment variable \(variable) (from \(flag)) is not set")
                }
            }
            if self.oauthTokenEnv != nil && self.user == nil { throw ValidationError("--oauth-token-env needs --user") }
            if let record = self.record, let problem = ReportOptions.unwritable(record) {
                throw ValidationError("--record \(record): \(problem)")
            }
            if let source = self.source, let problem = Self.unbindable(source) { throw ValidationError("--source \(source): \(problem)") }
            _ = try ServerFaults.parse(self.fault)
        }

        func run() async throws {
            let policy = try self.policyOptions.load()
            let scenarios = try self.selection.load()
            var credentials: Credentials?
            if let user = self.user, let variable = self.passwordEnv, let password = ProcessInfo.processInfo.environment[variable] {
                credentials = Credentials(
                    user: user, password: password, oauthToken: self.oauthTokenEnv.flatMap { ProcessInfo.processInfo.environment[$0] })
            }
            let shard = self.sharding.shard
            let places = Dictionary(scenarios.enumerated().map { ($0.element.id, $0.offset) }, uniquingKeysWith: { first, _ in first })
            if let capture = self.capture {
                let sessions = try self.captureInput.read(capture).sessions.map(\.recorded)
                var result = await CaptureMatch(policy: policy, credentials: credentials).run(
                    shard?.part(scenarios) ?? scenarios, sessions: sessions, file: capture)
                for index in result.cases.indices {
                    result.cases[index].place = CaseResult.Place(suite: 0, item: places[result.cases[index].scenario.id] ?? -1)
                }
                var heading = RunHeading(result)
                heading.shard = shard?.description
                var writer = try self.report.writer(heading, started: Date(timeIntervalSinceNow: -result.duration))
                for one in result.cases { writer.add(one) }
                writer.finish(duration: result.duration)
                ReportOptions.warnIfNothingTested(result)
                if result.exitCode != 0 { throw ExitCode(result.exitCode) }
                return
            }
            var targets: [ScenarioRunner.Target]
            if let file = self.targets {
                targets = try Self.loadTargets(file, defaultPort: self.tlsArguments.defaultPort).map { .live($0) }
            } else if let text = self.target, let address = TargetAddress(text, defaultPort: self.tlsArguments.defaultPort) {
                targets = [.live(address)]
            } else {
                targets = [.reference(faults: try ServerFaults.parse(self.fault))]
            }
            let runners = targets.map { target in
                // A server elsewhere sees at most 4 of our connections at once
                // by default; the in-process one is ours to load, and 16 lets
                // the pausing cases wait beside the others.
                let jobs: Int
                if case .reference = target { jobs = self.jobs ?? 16 } else { jobs = self.jobs ?? 4 }
                return ScenarioRunner(
                    .init(
                        target: target, policy: policy, credentials: credentials, trustedSource: self.source, jobs: jobs,
                        caseTimeout: .seconds(Int64(self.timeout)), tls: self.tlsArguments.tls, tlsOptions: self.tlsArguments.options,
                        recordTo: self.record,
                        proxyTarget: self.proxyTarget.flatMap { TargetAddress($0) }))
            }
            // The (target, case) pairs, dealt to the shards round-robin.
            let work = runners.indices.map { target in
                scenarios.indices.filter { shard?.takes(target * scenarios.count + $0) ?? true }.map { scenarios[$0] }
            }
            let total = work.map(\.count).reduce(0, +)
            let several = runners.count > 1
            // Each case is written as it ends; Ctrl-C or SIGTERM ends the run
            // with the cases so far, a valid partial report, exit 130.
            var heading = RunHeading(
                target: several ? "\(runners.count) targets from \(self.targets ?? "")" : runners[0].targetDescription,
                policy: policy.source, profile: policy.profile, count: total, groupedByFile: several,
                idWidth: scenarios.map(\.id.count).max())
            heading.shard = shard?.description
            let report = self.report
            let live = LiveReport(total: total, progress: ProgressLine.wanted) { try report.writer(heading) }
            SignalSources.onTermination { live.interrupt() }
            guard several || shard != nil else { return try await self.runOne(runners[0], scenarios, live: live) }
            let started = Date()
            for (index, runner) in runners.enumerated() where !work[index].isEmpty {
                let suite = several ? runner.targetDescription : nil
                let place = { @Sendable (result: CaseResult) -> CaseResult in
                    var result = result
                    result.suite = suite
                    result.place = CaseResult.Place(suite: index, item: places[result.scenario.id] ?? -1)
                    return result
                }
                let result = try await runner.run(work[index]) { live.add(place($0)) }
                if let reason = result.unreachable {
                    // Said once; the report holds each case's error.
                    StandardStreams.err("smtpcheck: cannot test \(result.target): \(reason)\n")
                    for one in result.cases { live.add(place(one)) }
                }
            }
            try live.finish(duration: Date().timeIntervalSince(started))
            ReportOptions.warnIfNothingTested(live.tally)
            if live.tally.exitCode != 0 { throw ExitCode(live.tally.exitCode) }
        }

        /// One target, the whole battery: an unreachable target is said once, exit 2.
        private func runOne(_ runner: ScenarioRunner, _ scenarios: [Scenario], live: LiveReport) async throws {
            let result = try await runner.run(scenarios) { live.add($0) }
            if let reason = result.unreachable {
                // Said once, not as a hundred identical errors; a report
                // file or a machine format still gets every case's error.
                StandardStreams.err("smtpcheck: cannot test \(result.target): \(reason)\n")
                if self.report.output != nil || self.report.format != .console { try self.report.emit(result) }
                throw ExitCode(ExitCodes.couldNotRun)
            }
            try live.finish(duration: result.duration)
            ReportOptions.warnIfNothingTested(result)
            if result.exitCode != 0 { throw ExitCode(result.exitCode) }
        }
    }
}

extension SMTPCheck.Run {
    /// The servers of a `--targets` file: HOST[:PORT] a line, `#` comments,
    /// blank lines. A bad line names the file and line and exits 65.
    static func loadTargets(_ path: String, defaultPort: Int) throws -> [TargetAddress] {
        func bad(_ message: String) -> ExitCode {
            StandardStreams.err("smtpcheck: \(message)\n")
            return ExitCode(ExitCodes.badInput)
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("\(path): cannot be read") }
        guard let text = String(data: data, encoding: .utf8) else { throw bad("\(path): not UTF-8 text") }
        var targets: [TargetAddress] = []
        var lines: [String: Int] = [:]
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.prefix { $0 != "#" }.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty else { continue }
            let number = offset + 1
            guard let address = TargetAddress(line, defaultPort: defaultPort) else {
                throw bad("\(path):\(number): '\(Printable.escape(Array(line.utf8).prefix(200)))' is not HOST[:PORT]")
            }
            if let first = lines[address.description] {
                throw bad("\(path):\(number): \(address) is on line \(first) already")
            }
            guard targets.count < 10_000 else { throw bad("\(path):\(number): more than 10000 targets: shard the file instead") }
            lines[address.description] = number
            targets.append(address)
        }
        guard !targets.isEmpty else { throw bad("\(path): no target in it (HOST[:PORT] a line)") }
        return targets
    }

    /// Why no socket can be bound to `address` here (it is not this
    /// host's), checked before anything runs; `nil` when one can.
    static func unbindable(_ address: String) -> String? {
        guard let socketAddress = try? SocketAddress(ipAddress: address, port: 0) else { return "not an IP address" }
        let descriptor = socket(Int32(socketAddress.protocol.rawValue), Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return String(cString: strerror(errno)) }
        defer { close(descriptor) }
        let bound = socketAddress.withSockAddr { bind(descriptor, $0, socklen_t($1)) }
        return bound == 0 ? nil : "cannot bind it (\(String(cString: strerror(errno)))): it is not an address of this host"
    }
}

/// TLS for every session a command opens (run, replay).
struct TLSArguments: ParsableArguments {
    @Option(name: .long, help: "TLS for every session: none, starttls (upgrade before the steps), implicit (port 465 by default).")
    var tls: ScenarioRunner.TransportTLS = .none

    @Option(name: .customLong("tls-verify"), help: "The server certificate: strict (must verify), report (default), off.")
    var tlsVerify: ClientTLSOptions.Verification = .report

    @Option(
        name: .long, help: "PEM trust roots for verifying the server, instead of the system's.",
        completion: .file(extensions: ["pem", "crt"]))
    var ca: String?

    @Option(name: .long, help: "The name to send as SNI and check the certificate against (default: the target's host name).")
    var sni: String?

    func validate() throws {
        if let ca = self.ca, !FileManager.default.isReadableFile(atPath: ca) { throw ValidationError("cannot read --ca \(ca)") }
    }

    var options: ClientTLSOptions { ClientTLSOptions(verification: self.tlsVerify, caFile: self.ca, serverName: self.sni) }

    /// The port a target without one gets: 465 for implicit TLS (RFC 8314), else 25.
    var defaultPort: Int { self.tls == .implicit ? 465 : 25 }
}

extension ScenarioRunner.TransportTLS: ExpressibleByArgument {}
extension ClientTLSOptions.Verification: ExpressibleByArgument {}

struct ReportOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case console, json, junit, tap, github, markdown, html
    }

    @Option(
        name: .long,
        help:
            "Report format: console, json (JSON Lines), junit, tap, github (annotations on each failing scenario's file and line, and a job summary in $GITHUB_STEP_SUMMARY when it is set), markdown, html (one file that opens offline, with a diagram of each session; give --output)."
    )
    var format: Format = .console

    @Option(name: .long, help: "Write the report to this file instead of standard output.", completion: .file())
    var output: String?

    @Flag(name: .long, help: "Show the transcript of every case, not only of those that did not pass.")
    var verbose = false

    @Option(name: .customLong("junit-suite-name"), help: "The JUnit test suite's name (default: smtpcheck against TARGET).")
    var junitSuiteName: String?

    @Flag(name: .long, help: "Console: show only the cases that did not pass, and the summary.")
    var quiet = false

    func validate() throws {
        if let output = self.output, let problem = Self.unwritable(output) { throw ValidationError("--output \(output): \(problem)") }
    }

    /// Why a file could not be written there, checked before anything runs
    /// (so a long run never ends with its report lost); `nil` when it can.
    static func unwritable(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return "is a folder" }
            return FileManager.default.isWritableFile(atPath: path) ? nil : "cannot be written (permissions)"
        }
        let folder = (path as NSString).deletingLastPathComponent
        let parent = folder.isEmpty ? "." : folder
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "the folder \(parent) does not exist"
        }
        return FileManager.default.isWritableFile(atPath: parent) ? nil : "the folder \(parent) cannot be written (permissions)"
    }

    /// Writes the report where it was asked to go.
    func emit(_ result: RunResult) throws {
        var writer = try self.writer(RunHeading(result), started: Date(timeIntervalSinceNow: -result.duration))
        for one in result.cases { writer.add(one) }
        writer.finish(duration: result.duration)
    }

    /// A run that tested nothing says so, with the main reasons, on standard error.
    static func warnIfNothingTested(_ result: RunResult) {
        self.warnIfNothingTested(result.tally)
    }

    static func warnIfNothingTested(_ tally: RunTally) {
        guard tally.nothingTested, tally.count("ERROR") == 0 else { return }
        var lines = ["smtpcheck: nothing was tested: \(tally.total) cases, none passed or failed"]
        for (reason, count) in tally.skipReasons.prefix(3) { lines.append("  \(count) skipped: \(Wording.commandLine.skip(reason))") }
        StandardStreams.err((lines.joined(separator: "\n") + "\n"))
    }

    /// A report written as the cases come, to standard output or `--output`.
    func writer(_ heading: RunHeading, started: Date = Date()) throws -> ReportWriter {
        var heading = heading
        heading.started = started
        heading.hostname = ProcessInfo.processInfo.hostName
        heading.toolVersion = SMTPCheck.configuration.version
        heading.suiteName = self.junitSuiteName
        let wording = Wording.commandLine
        let stream: any ReportStream
        switch self.format {
        case .console:
            let color = self.output == nil && isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            stream = ConsoleReporter(useColor: color, verbose: self.verbose, wording: wording, quiet: self.quiet)
        case .json: stream = JSONLinesStream(wording: wording)
        case .junit: stream = JUnitStream(wording: wording)
        case .tap: stream = TAPStream(wording: wording)
        case .github:
            let summary = ProcessInfo.processInfo.environment["GITHUB_STEP_SUMMARY"].flatMap { $0.isEmpty ? nil : $0 }
            stream = GitHubStream(wording: wording, summaryFile: summary)
        case .markdown: stream = MarkdownStream(wording: wording)
        case .html: stream = HTMLStream(wording: wording)
        }
        var handle = FileHandle.standardOutput
        if let output = self.output {
            guard FileManager.default.createFile(atPath: output, contents: nil), let file = FileHandle(forWritingAtPath: output) else {
                throw ValidationError("cannot write \(output)")
            }
            handle = file
        }
        let output = self.output
        let sink = FileSink(handle) { error in
            // The reader of standard output left: end quietly, as other tools do.
            guard let output else { StandardStreams.closed() }
            StandardStreams.err("smtpcheck: cannot write the report to \(output): \(error)\n")
        }
        return ReportWriter(stream: stream, sink: sink, heading: heading, output: self.output)
    }
}

/// A report written while the run goes: each case as it ends, a live line
/// on a terminal (done of total, failures so far, rate), and on SIGINT or
/// SIGTERM the summary of the cases so far and exit 130. The writer is made
/// at the first case, so that a run that never starts writes nothing.
final class LiveReport: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private let progress: Bool
    private let makeWriter: () throws -> ReportWriter
    private var writer: ReportWriter?
    private var done = 0
    private var failed = 0
    private var finished = false
    private let started = Date()
    /// The live line is on the terminal (and must be cleared before a case is written).
    private var lineShown = false

    init(total: Int, progress: Bool, makeWriter: @escaping () throws -> ReportWriter) {
        self.total = total
        self.progress = progress
        self.makeWriter = makeWriter
    }

    func add(_ result: CaseResult) {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard !self.finished, self.ensureWriter() else { return }
        self.clearLine()
        self.writer?.add(result)
        self.done += 1
        if result.verdict.isFailure { self.failed += 1 }
        self.showLine()
    }

    /// The counts so far.
    var tally: RunTally {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.writer?.tally ?? RunTally()
    }

    func finish(duration: Double) throws {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard !self.finished else { return }
        self.finished = true
        self.clearLine()
        if self.writer == nil { self.writer = try self.makeWriter() }
        self.writer?.finish(duration: duration)
    }

    /// Ctrl-C: the cases so far, summed up in a complete report; exit 130.
    func interrupt() {
        self.lock.lock()
        guard !self.finished else {
            self.lock.unlock()
            return
        }
        self.finished = true
        self.clearLine()
        if self.writer == nil { self.writer = try? self.makeWriter() }
        self.writer?.finish(duration: Date().timeIntervalSince(self.started))
        StandardStreams.err("smtpcheck: interrupted after \(self.done) of \(self.total) cases: the report holds those\n")
        self.lock.unlock()
        exit(130)
    }

    /// Whether there is a writer to add to, made now if need be.
    private func ensureWriter() -> Bool {
        if self.writer == nil {
            do {
                self.writer = try self.makeWriter()
            } catch {
                StandardStreams.err("smtpcheck: \(error)\n")
            }
        }
        return self.writer != nil
    }

    private func clearLine() {
        guard self.lineShown else { return }
        StandardStreams.err("\r\u{1B}[K")
        self.lineShown = false
    }

    private func showLine() {
        guard self.progress else { return }
        let elapsed = max(Date().timeIntervalSince(self.started), 0.001)
        self.lineShown = true
        let rate = String(format: "%.1f", Double(self.done) / elapsed)
        StandardStreams.err("[\(self.done)/\(self.total)] \(self.failed) failed, \(rate) cases/s")
    }
}

/// A case with its text made ahead of its turn (`nil`: made as it is written).
struct RenderedCase: Sendable {
    var result: CaseResult
    var text: String?
}

/// Writes a report case by case and keeps only the tally.
struct ReportWriter {
    var stream: any ReportStream
    var sink: FileSink
    let output: String?
    private(set) var tally = RunTally()

    init(stream: any ReportStream, sink: FileSink, heading: RunHeading, output: String?) {
        self.stream = stream
        self.sink = sink
        self.output = output
        self.stream.begin(heading, to: &self.sink)
    }

    mutating func add(_ result: CaseResult) {
        self.stream.add(result, to: &self.sink)
        self.tally.add(result)
    }

    /// Makes a case's text on any thread, where the format can (see ``add(_:)``).
    var renderer: @Sendable (CaseResult) -> RenderedCase {
        let render = self.stream.caseRenderer
        return { RenderedCase(result: $0, text: render?($0)) }
    }

    /// Writes a case ``renderer`` made.
    mutating func add(_ rendered: RenderedCase) {
        if let text = rendered.text {
            self.stream.add(rendered.result, rendered: text, to: &self.sink)
            self.tally.add(rendered.result)
        } else {
            self.add(rendered.result)
        }
    }

    mutating func finish(duration: Double) {
        self.stream.end(self.tally, duration: duration, to: &self.sink)
        guard let output else { return }
        let tally = self.tally
        let summary =
            "\(tally.count("PASS")) passed, \(tally.count("FAIL")) failed, \(tally.count("ERROR")) errors, \(tally.count("SKIP")) skipped"
        StandardStreams.err("smtpcheck: \(summary); report written to \(output)\n")
    }
}
