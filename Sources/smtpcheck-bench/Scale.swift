// How time and memory grow with the work: `check` on 1x to 10x the
// sessions of the mixed capture, and `serve` (beside smtp-sink) under 100
// to 10,000 sessions of the load generator. A line per size, and the growth
// of time per unit against the first size, so that worse than linear shows.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `smtpcheck check FILE --format json` on the mixed capture at 1, 2, 5
/// and 10 times a number of sessions (batches of 64, about 5 MB each),
/// the largest about `megabytes` MB; each file removed once measured.
func captureScaleTable(smtpcheck: String, megabytes largest: Int, runs: Int, folder: String) throws -> String {
    let base = max(1, largest / 50)
    struct Size {
        var megabytes: Double
        var sessions: Int
        var row: Comparison.Row
    }
    var sizes: [Size] = []
    for multiple in [1, 2, 5, 10] {
        let path = folder + "/smtpcheck-bench-scale-\(multiple)x\(base).pcap"
        defer { unlink(path) }
        var generator = MixedCapture()
        let contents = try generator.write(.batches(base * multiple), to: path)
        let size = megabytes(path)
        var comparison = Comparison(
            rows: [Comparison.Row(name: "\(multiple)x", command: [smtpcheck, "check", path, "--format", "json"])], runs: runs,
            megabytes: size)
        try comparison.measure()
        sizes.append(Size(megabytes: size, sessions: contents.sessions, row: comparison.rows[0]))
    }
    guard let first = sizes.first else { return "" }
    let firstPerSession = first.row.median / Double(max(first.sessions, 1))
    let lines = sizes.map { size in
        let perSession = size.row.median / Double(max(size.sessions, 1))
        return [
            size.row.name, String(format: "%.1f", size.megabytes), "\(size.sessions)", String(format: "%.2f", size.row.median),
            String(format: "%.2f-%.2f", size.row.times.min() ?? 0, size.row.times.max() ?? 0),
            String(format: "%.1f", size.megabytes / max(size.row.median, 1e-9)), String(format: "%.1f", size.row.peakMiB),
            String(format: "%.2f", perSession / max(firstPerSession, 1e-12)),
        ]
    }
    return markdownTable(
        ["check --format json", "MB", "sessions", "median s", "spread s", "MB/s", "peak MiB", "time per session vs 1x"], lines)
}

/// The load generator (20 clients, a delivery per session) against
/// smtp-sink and `serve` at each of `sizes` sessions, a fresh server per
/// run: time, rate, latency and the server's peak memory.
func serveScaleTable(smtpcheck: String, sizes: [Int], runs: Int) throws -> String {
    var servers: [(name: String, command: [String])] = [("smtpcheck serve", serveCommand(smtpcheck))]
    let sink = postfixTool("smtp-sink")
    if let sink { servers.insert(("smtp-sink", sinkCommand(sink)), at: 0) }
    struct Cell {
        var times: [Double] = []
        var p50: [Double] = []
        var p99: [Double] = []
        var peak = 0.0
        var median: Double { Comparison.Row.median(self.times) }
    }
    var cells: [[Cell]] = servers.map { _ in sizes.map { _ in Cell() } }
    // Rounds of every server and size in turn (the first a warm-up).
    for run in 0...runs {
        for (serverIndex, server) in servers.enumerated() {
            for (sizeIndex, size) in sizes.enumerated() {
                let process = try ServerProcess.start(server.command)
                defer { process.stop() }
                var options = LoadOptions()
                options.port = process.port
                options.clients = 20
                options.sources = 20
                options.sessions = size
                options.pid = process.process.processIdentifier
                options.sampleEvery = Int.max
                let report = blockingLoad(options)
                guard report.failed == 0 else {
                    throw BenchError(
                        "\(server.name): \(report.failed) of \(size) sessions failed: \(report.failures.keys.sorted().prefix(3))")
                }
                guard run > 0 else { continue }
                cells[serverIndex][sizeIndex].times.append(report.seconds)
                cells[serverIndex][sizeIndex].p50.append(report.percentile(0.5))
                cells[serverIndex][sizeIndex].p99.append(report.percentile(0.99))
                cells[serverIndex][sizeIndex].peak = max(cells[serverIndex][sizeIndex].peak, report.serverPeakMiB ?? 0)
            }
        }
    }
    var lines: [[String]] = []
    for (serverIndex, server) in servers.enumerated() {
        let firstPerSession = cells[serverIndex][0].median / Double(max(sizes[0], 1))
        for (sizeIndex, size) in sizes.enumerated() {
            let cell = cells[serverIndex][sizeIndex]
            let sinkRate = sink == nil || serverIndex == 0 ? nil : Double(size) / max(cells[0][sizeIndex].median, 1e-9)
            let rate = Double(size) / max(cell.median, 1e-9)
            lines.append([
                server.name, "\(size)", String(format: "%.2f", cell.median),
                String(format: "%.2f-%.2f", cell.times.min() ?? 0, cell.times.max() ?? 0), String(format: "%.0f", rate),
                sinkRate.map { String(format: "%.2fx", rate / $0) } ?? "-", String(format: "%.1f", Comparison.Row.median(cell.p50)),
                String(format: "%.1f", Comparison.Row.median(cell.p99)), String(format: "%.1f", cell.peak),
                String(format: "%.2f", cell.median / Double(max(size, 1)) / max(firstPerSession, 1e-12)),
            ])
        }
    }
    return markdownTable(
        [
            "load, 20 clients", "sessions", "median s", "spread s", "sessions/s", "vs smtp-sink", "p50 ms", "p99 ms",
            "server peak MiB", "time per session vs \(sizes[0])",
        ], lines)
}

/// Runs the load generator from synchronous code: the servers are started
/// and stopped (`Process.waitUntilExit`) on this thread, outside the
/// concurrency pool, where waiting for a child process cannot starve it.
func blockingLoad(_ options: LoadOptions) -> LoadReport {
    final class Box: @unchecked Sendable {
        var report: LoadReport?
    }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        box.report = await runLoad(options)
        done.signal()
    }
    done.wait()
    return box.report ?? LoadReport(options: options, seconds: 0, latencies: [], failures: ["no report": 1], samples: [])
}
