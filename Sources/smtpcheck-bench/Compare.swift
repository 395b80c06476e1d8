// `smtpcheck-bench compare FILE`: smtpcheck's capture commands against
// tshark's SMTP field extraction and tcpdump's read floor, on one file, in
// one run: medians of several interleaved rounds after a warm-up, their spread, peak
// memory and the ratios.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One program run to its end: wall time and its own peak resident size.
struct Measurement {
    var seconds: Double
    var peakKilobytes: Int
    var status: Int32

    /// The program is started through a small forking Python parent that
    /// reads `wait4`: Linux keeps, across exec, the peak of the memory a
    /// child was forked with, so a child spawned straight from this process
    /// would carry this process's size. Standard output goes to /dev/null.
    static let spawner = """
        import os, sys, time
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            fd = os.open("/dev/null", os.O_WRONLY)
            os.dup2(fd, 1)
            os.execvp(sys.argv[1], sys.argv[1:])
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.monotonic() - start
        sys.stderr.write("\\nbench-measured %f %d\\n" % (elapsed, usage.ru_maxrss))
        sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        """

    static func run(_ command: [String]) throws -> Measurement {
        let errorPath = NSTemporaryDirectory() + "smtpcheck-bench-\(getpid()).err"
        defer { unlink(errorPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let python = "/usr/bin/python3"
        let argv = ([python, "-c", Self.spawner] + command).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, python, &actions, nil, argv, environ)
        guard spawned == 0 else { throw BenchError("cannot start \(python): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw BenchError("waitpid: \(String(cString: strerror(errno)))") }
        }
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        guard let range = errors.range(of: "\nbench-measured ", options: .backwards) else {
            throw BenchError("\(command.joined(separator: " ")) did not run: \(errors.prefix(400))")
        }
        let fields = errors[range.upperBound...].split(whereSeparator: \.isWhitespace)
        guard fields.count >= 2, let seconds = Double(fields[0]), let peak = Int(fields[1]) else {
            throw BenchError("unreadable measurement: \(errors[range.upperBound...].prefix(100))")
        }
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        if code >= 2 && !(command.first?.hasSuffix("smtpcheck") == true && code == 1) {
            let said = errors[..<range.lowerBound].suffix(400)
            throw BenchError("\(command.joined(separator: " ")) exited \(code): \(said)")
        }
        return Measurement(seconds: seconds, peakKilobytes: peak, status: code)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs each command once to warm the page cache, then `runs` rounds of
/// every command in turn, and prints a row per command. Rounds, not a
/// command's runs back to back: on a shared machine a slow spell then
/// touches every row alike, and the ratios between rows hold.
struct Comparison {
    struct Row {
        var name: String
        var command: [String]
        var times: [Double] = []
        var peaks: [Int] = []

        var median: Double { Self.median(self.times) }
        var peakMiB: Double { Double(self.peaks.max() ?? 0) / 1024 }

        static func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return 0 }
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
    }

    var rows: [Row]
    var runs: Int
    var megabytes: Double

    mutating func measure() throws {
        for row in self.rows { _ = try Measurement.run(row.command) }
        for _ in 0..<self.runs {
            for index in self.rows.indices {
                let measured = try Measurement.run(self.rows[index].command)
                self.rows[index].times.append(measured.seconds)
                self.rows[index].peaks.append(measured.peakKilobytes)
            }
        }
    }

    func table(anchor: String, floor: String) -> String {
        let anchorTime = self.rows.first { $0.name == anchor }?.median
        let floorTime = self.rows.first { $0.name == floor }?.median
        let heading = ["command", "median s", "spread s", "MB/s", "peak MiB", "vs \(anchor)", "of \(floor)"]
        var lines: [[String]] = []
        for row in self.rows {
            lines.append([
                row.name, String(format: "%.2f", row.median),
                String(format: "%.2f-%.2f", row.times.min() ?? 0, row.times.max() ?? 0),
                String(format: "%.1f", self.megabytes / max(row.median, 1e-9)), String(format: "%.1f", row.peakMiB),
                anchorTime.map { String(format: "%.1fx", $0 / max(row.median, 1e-9)) } ?? "-",
                floorTime.map { String(format: "%.2f", $0 / max(row.median, 1e-9)) } ?? "-",
            ])
        }
        return markdownTable(heading, lines)
    }
}

/// Rows under a heading as a Markdown table, columns padded, all but the
/// first right-aligned: it reads in a terminal and pastes into the README.
func markdownTable(_ heading: [String], _ rows: [[String]]) -> String {
    let all = [heading] + rows
    let widths = heading.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
    func line(_ row: [String]) -> String {
        let cells = heading.indices.map { column in
            let cell = row.indices.contains(column) ? row[column] : ""
            let pad = String(repeating: " ", count: widths[column] - cell.count)
            return column == 0 ? cell + pad : pad + cell
        }
        return "| " + cells.joined(separator: " | ") + " |"
    }
    let rule =
        "|"
        + widths.enumerated().map { $0 == 0 ? String(repeating: "-", count: $1 + 2) : String(repeating: "-", count: $1 + 1) + ":" }
        .joined(separator: "|") + "|"
    return ([line(heading), rule] + rows.map(line)).joined(separator: "\n") + "\n"
}

/// Where a program is on PATH, if it is.
func onPath(_ name: String) -> String? {
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/sbin").split(separator: ":") {
        let candidate = "\(folder)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
