// The anchors of `make bench` beside the capture comparison: start-up time,
// the seed battery against one swaks process per scenario, and `serve`
// against Postfix's smtp-sink under Postfix's smtp-source, all in one run
// on one machine, medians of several interleaved rounds after a warm-up.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A server started for a measurement, on an ephemeral loopback port,
/// stopped by its own PID.
struct ServerProcess {
    let process: Process
    let port: Int

    /// Starts `command`, with `{port}` in it replaced by a free loopback
    /// port, or reading the port from its first output line where it has
    /// none (`smtpcheck serve --listen 127.0.0.1:0`).
    static func start(_ command: [String]) throws -> ServerProcess {
        var port = 0
        var arguments = command
        if command.contains(where: { $0.contains("{port}") }) {
            port = try Self.freePort()
            arguments = command.map { $0.replacingOccurrences(of: "{port}", with: "\(port)") }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        if port == 0 {
            var text = ""
            while !text.contains("\n") {
                let data = out.fileHandleForReading.availableData
                guard !data.isEmpty else { break }
                text += String(decoding: data, as: UTF8.self)
            }
            guard let digits = text.split(separator: "127.0.0.1:").dropFirst().first?.prefix(while: \.isNumber), let read = Int(digits)
            else {
                process.terminate()
                throw BenchError("\(arguments[0]) said no port: \(text.prefix(200))")
            }
            port = read
        }
        // Drain what it writes from here on, so that it never blocks on a full pipe.
        let handle = out.fileHandleForReading
        handle.readabilityHandler = { handle in _ = handle.availableData }
        try Self.waitForListener(port)
        return ServerProcess(process: process, port: port)
    }

    /// Its peak resident size so far (VmHWM), in MiB.
    var peakMiB: Double {
        guard let status = try? String(contentsOfFile: "/proc/\(self.process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    func stop() {
        if self.process.isRunning { self.process.terminate() }
        self.process.waitUntilExit()
    }

    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(descriptor, socketAddress, length) == 0 && getsockname(descriptor, socketAddress, &length) == 0
            }
        }
        guard bound else { throw BenchError("bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Connects until the listener answers (at most five seconds).
    static func waitForListener(_ port: Int) throws {
        for _ in 0..<500 {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(descriptor)
            if connected { return }
            usleep(10_000)
        }
        throw BenchError("nothing listens on 127.0.0.1:\(port)")
    }
}

/// `smtpcheck --version` and `smtpcheck list`: start-up, target 50 ms each.
func startupTable(smtpcheck: String, runs: Int) throws -> String {
    var rows = [
        Comparison.Row(name: "smtpcheck --version", command: [smtpcheck, "--version"]),
        Comparison.Row(name: "smtpcheck list", command: [smtpcheck, "list"]),
    ]
    var measured = Comparison(rows: rows, runs: runs, megabytes: 0)
    try measured.measure()
    rows = measured.rows
    let lines = rows.map { row in
        [
            row.name, String(format: "%.1f", row.median * 1000),
            String(format: "%.1f-%.1f", (row.times.min() ?? 0) * 1000, (row.times.max() ?? 0) * 1000), String(format: "%.1f", row.peakMiB),
            row.median < 0.05 ? "yes" : "no",
        ]
    }
    return markdownTable(["start-up", "median ms", "spread ms", "peak MiB", "under 50 ms"], lines)
}

/// A seed scenario as swaks can say it: one session of EHLO, MAIL, RCPT
/// (and AUTH), quitting after the last step. Scenarios with other commands
/// are left out (counted).
struct SwaksCase {
    var id: String
    var arguments: [String]

    /// The seed scenarios of `folder` that swaks can run, and how many it cannot.
    static func load(_ folder: String) -> (cases: [SwaksCase], left: Int) {
        var cases: [SwaksCase] = []
        var left = 0
        let files = (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".yaml") }
            .sorted()
        for file in files {
            guard let text = try? String(contentsOfFile: folder + "/" + file, encoding: .utf8) else { continue }
            let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            guard lines.contains(where: { $0.hasPrefix("tags:") && $0.contains("seed") }),
                let id = lines.first(where: { $0.hasPrefix("id:") })?.dropFirst(3).trimmingCharacters(in: .whitespaces)
            else { continue }
            if let swaks = Self.swaks(lines.filter { $0.hasPrefix("- send:") }.map { $0.dropFirst(7).trimmingCharacters(in: .whitespaces) })
            {
                cases.append(SwaksCase(id: id, arguments: swaks))
            } else {
                left += 1
            }
        }
        return (cases, left)
    }

    static func swaks(_ sends: [String]) -> [String]? {
        var arguments: [String] = []
        var last = "CONNECT"
        for send in sends {
            let upper = send.uppercased()
            func value(after prefix: String) -> String {
                String(send.dropFirst(prefix.count)).trimmingCharacters(in: CharacterSet(charactersIn: "<> "))
                    .replacingOccurrences(of: "{local_domain}", with: "example.net")
            }
            if upper.hasPrefix("EHLO ") || upper.hasPrefix("HELO ") {
                guard !arguments.contains("--ehlo") else { return nil }
                arguments += ["--ehlo", value(after: "EHLO ")]
                last = "EHLO"
            } else if upper.hasPrefix("MAIL FROM:") {
                arguments += ["--from", value(after: "MAIL FROM:")]
                last = "MAIL"
            } else if upper.hasPrefix("RCPT TO:") {
                guard !arguments.contains("--to") else { return nil }
                arguments += ["--to", value(after: "RCPT TO:")]
                last = "RCPT"
            } else {
                return nil
            }
        }
        guard arguments.contains("--to") || last != "RCPT" else { return nil }
        if !arguments.contains("--to") { arguments += ["--to", "postmaster@example.net"] }
        if !arguments.contains("--from") { arguments += ["--from", "sender@client.example.org"] }
        let quit = ["CONNECT": "connect", "EHLO": "first-ehlo", "MAIL": "mail", "RCPT": "rcpt"][last] ?? "rcpt"
        return arguments + ["--quit-after", quit]
    }
}

/// The seed battery per case: `smtpcheck run` against `serve`, and one
/// swaks process per scenario, as a script would run them.
func suiteTable(smtpcheck: String, scenarios: String, runs: Int) throws -> String {
    guard let swaks = onPath("swaks") else { return "swaks is missing: the suite comparison is skipped\n" }
    // Every seed case runs, none skipped: the authenticated ones log in as
    // the server's user, the PROXY ones go to a second listener expecting
    // PROXY headers.
    setenv("SMTPCHECK_PASSWORD", "bench-\(getpid())-password", 1)
    let server = try ServerProcess.start(serveCommand(smtpcheck))
    defer { server.stop() }
    let proxy = try ServerProcess.start(serveCommand(smtpcheck) + ["--proxy-protocol"])
    defer { proxy.stop() }
    let target = "127.0.0.1:\(server.port)"
    let seeds = try listCount(smtpcheck, ["list", "--tag", "seed"])
    let (cases, left) = SwaksCase.load(scenarios)
    let seedRun = [
        smtpcheck, "run", "--target", target, "--proxy-target", "127.0.0.1:\(proxy.port)", "--user", "alice", "--password-env",
        "SMTPCHECK_PASSWORD", "--tag", "seed",
    ]
    let skipped = try skippedCount(seedRun + ["--format", "json"])
    guard skipped == 0 else { throw BenchError("\(skipped) of the \(seeds) seed cases were skipped against serve") }
    // Each row with the number of cases it runs, for the time per case.
    var rows: [(row: Comparison.Row, cases: Int)] = [
        (Comparison.Row(name: "smtpcheck run --tag seed --jobs 1 (\(seeds) cases)", command: seedRun + ["--jobs", "1"]), seeds),
        (Comparison.Row(name: "smtpcheck run --tag seed (\(seeds) cases, 4 jobs)", command: seedRun), seeds),
    ]
    // The swaks script: one process per case, one after the other.
    let script = cases.map { one in
        ([swaks, "--server", target, "--silent", "2", "--hide-all"] + one.arguments).map { "'\($0)'" }.joined(separator: " ") + " || true"
    }.joined(separator: "\n")
    let path = NSTemporaryDirectory() + "smtpcheck-bench-swaks-\(getpid()).sh"
    try script.write(toFile: path, atomically: true, encoding: .utf8)
    defer { unlink(path) }
    let anchor = rows.count
    rows.append((Comparison.Row(name: "swaks, a process per case (\(cases.count) cases)", command: ["/bin/sh", path]), cases.count))
    let battery = try listCount(smtpcheck, ["list"])
    rows.append((Comparison.Row(name: "smtpcheck run, in-process (\(battery) cases)", command: [smtpcheck, "run"]), battery))
    var measured = Comparison(rows: rows.map(\.row), runs: runs, megabytes: 0)
    try measured.measure()
    let perCase = zip(measured.rows, rows).map { $0.median / Double(max($1.cases, 1)) }
    let lines = measured.rows.enumerated().map { index, row in
        [
            row.name, String(format: "%.2f", row.median), String(format: "%.2f-%.2f", row.times.min() ?? 0, row.times.max() ?? 0),
            String(format: "%.2f", perCase[index] * 1000),
            index == anchor ? "1.0x" : String(format: "%.0fx", perCase[anchor] / max(perCase[index], 1e-9)),
            String(format: "%.1f", row.peakMiB),
        ]
    }
    return markdownTable(["suite", "median s", "spread s", "ms per case", "vs swaks", "peak MiB"], lines)
        + "(\(left) seed scenarios need commands swaks cannot send, and are left out of its script.)\n"
}

/// `smtp-source -s 20 -m MESSAGES` against `serve` and Postfix's
/// `smtp-sink`, each started afresh per run, and against Postfix's own
/// smtpd at `postfix` (HOST:PORT, a running Postfix: `make bench` starts
/// the conformance fixture's, which discards what it accepts) where given.
func serveTable(smtpcheck: String, messages: Int, runs: Int, postfix: String?) throws -> String {
    guard let source = postfixTool("smtp-source"), let sink = postfixTool("smtp-sink") else {
        return "Postfix's smtp-source and smtp-sink are missing: the server comparison is skipped\n"
    }
    struct Server {
        var name: String
        /// The command that starts it, or `nil` for one already listening at `address`.
        var command: [String]?
        var address: String?
        var times: [Double] = []
        var peak: Double?
    }
    var servers = [
        Server(name: "smtp-sink", command: sinkCommand(sink)),
        Server(name: "smtpcheck serve", command: serveCommand(smtpcheck)),
    ]
    if let postfix { servers.append(Server(name: "Postfix smtpd (\(postfix))", address: postfix)) }
    // Rounds of every server in turn (the first a warm-up): a slow spell of
    // the machine touches every row alike.
    for run in 0...runs {
        for index in servers.indices {
            let started = try servers[index].command.map { try ServerProcess.start($0) }
            defer { started?.stop() }
            let address = started.map { "127.0.0.1:\($0.port)" } ?? servers[index].address ?? ""
            let load = [
                source, "-s", "20", "-m", "\(messages)", "-M", "client.example.org", "-f", "sender@client.example.org", "-t",
                "postmaster@example.net", address,
            ]
            let measured = try Measurement.run(load)
            guard measured.status == 0 else { throw BenchError("smtp-source against \(servers[index].name) exited \(measured.status)") }
            if run > 0 { servers[index].times.append(measured.seconds) }
            if let started { servers[index].peak = max(servers[index].peak ?? 0, started.peakMiB) }
        }
    }
    let sinkRate = Double(messages) / Comparison.Row.median(servers[0].times)
    let lines = servers.map { server in
        let median = Comparison.Row.median(server.times)
        let rate = Double(messages) / median
        return [
            server.name, String(format: "%.2f", median),
            String(format: "%.2f-%.2f", server.times.min() ?? 0, server.times.max() ?? 0), String(format: "%.0f", rate),
            String(format: "%.2fx", rate / sinkRate), server.peak.map { String(format: "%.1f", $0) } ?? "-",
        ]
    }
    return markdownTable(
        ["smtp-source -s 20 -m \(messages)", "median s", "spread s", "sessions/s", "vs smtp-sink", "server peak MiB"], lines)
}

/// A Postfix program (`smtp-source`, `smtp-sink`), on PATH or in /usr/sbin.
func postfixTool(_ name: String) -> String? {
    onPath(name) ?? (access("/usr/sbin/\(name)", X_OK) == 0 ? "/usr/sbin/\(name)" : nil)
}

/// `smtp-sink` on a free loopback port. As root it must be told whom to
/// become once it listens.
func sinkCommand(_ sink: String) -> [String] {
    [sink] + (getuid() == 0 ? ["-u", "nobody"] : []) + ["127.0.0.1:{port}", "256"]
}

/// `smtpcheck serve` on a free loopback port, plain text, quiet.
func serveCommand(_ smtpcheck: String) -> [String] {
    [smtpcheck, "serve", "--listen", "127.0.0.1:0", "--tls", "none", "--log-format", "none"]
}

/// What `command` writes to standard output, run to its end.
func output(of command: [String]) throws -> Data {
    guard let program = command.first else { throw BenchError("no command") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = Array(command.dropFirst())
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return data
}

/// The number of cases `smtpcheck list ARGS` lists.
func listCount(_ smtpcheck: String, _ arguments: [String]) throws -> Int {
    let text = String(decoding: try output(of: [smtpcheck] + arguments), as: UTF8.self)
    guard let heading = text.split(separator: "\n").first, heading.hasPrefix("cases ("),
        let count = Int(heading.dropFirst("cases (".count).prefix(while: \.isNumber))
    else { throw BenchError("smtpcheck list said: \(text.prefix(100))") }
    return count
}

/// How many cases `smtpcheck ARGS --format json` skipped, from its summary line.
func skippedCount(_ arguments: [String]) throws -> Int {
    let data = try output(of: arguments)
    for line in data.split(separator: UInt8(ascii: "\n")).reversed() {
        guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any], object["type"] as? String == "summary"
        else { continue }
        guard let skipped = object["skipped"] as? Int else { break }
        return skipped
    }
    throw BenchError("\(arguments.joined(separator: " ")) wrote no summary")
}
