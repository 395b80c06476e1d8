// Benchmarks for `make bench`: writes the mixed capture, reads it in
// process, compares smtpcheck's capture commands with tshark and tcpdump on
// it; and `load`, the load generator of `make load`.
import Foundation
import SMTPCapture

func peakResidentMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return 0 }
    let kib = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    return kib / 1024
}

let arguments = CommandLine.arguments
if arguments.count > 1 && arguments[1] == "load" {
    do {
        let report = await runLoad(try LoadOptions(arguments.dropFirst(2)))
        report.print()
        exit(report.failed == 0 ? 0 : 1)
    } catch {
        FileHandle.standardError.write(Data("smtpcheck-bench load: \(error)\n".utf8))
        exit(64)
    }
}
let usage = """
    usage: smtpcheck-bench capture MEGABYTES FILE     write the mixed benchmark capture
           smtpcheck-bench read FILE [SESSIONS]       read it in this process: time, rate, peak memory (and the count checked)
           smtpcheck-bench compare FILE [RUNS]        smtpcheck against tshark and tcpdump on FILE
           smtpcheck-bench load --port P [--clients C] [--sessions N] [--sources K] [--pid SERVER]
           smtpcheck-bench startup [RUNS]             smtpcheck --version and list: start-up time
           smtpcheck-bench suite SCENARIOS [RUNS]     the seed battery against serve, and one swaks process per case
           smtpcheck-bench serve [MESSAGES] [RUNS]    smtp-source against serve and against smtp-sink (and a
                                                      running Postfix at $BENCH_POSTFIX, HOST:PORT)
           smtpcheck-bench scale-capture MEGABYTES FOLDER [RUNS]
                                                      check on 1x to 10x the sessions of a capture, 10x about MEGABYTES
           smtpcheck-bench scale-serve [LARGEST] [RUNS]
                                                      100 to LARGEST (10,000) sessions against serve and smtp-sink

    """
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("smtpcheck-bench: \(message)\n".utf8))
    exit(code)
}
/// The smtpcheck it times: `$SMTPCHECK_BENCH_BINARY` (`make bench` names
/// the static build, the binary `make install` installs), or the one built
/// beside this benchmark.
let smtpcheckBinary =
    ProcessInfo.processInfo.environment["SMTPCHECK_BENCH_BINARY"]
    ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("smtpcheck").path

func megabytes(_ path: String) -> Double {
    Double((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1_000_000
}

switch (arguments.dropFirst().first, arguments.count) {
case ("capture", 4):
    guard let size = Int(arguments[2]), size > 0 else { fail("MEGABYTES must be a positive number", code: 64) }
    var generator = MixedCapture()
    do {
        let contents = try generator.write(.megabytes(size), to: arguments[3])
        print(
            "wrote \(arguments[3]): \(contents.sessions) sessions, \(contents.packets) packets, "
                + String(format: "%.1f MB", Double(contents.octets) / 1_000_000))
    } catch {
        fail("cannot write \(arguments[3]): \(error)", code: 73)
    }
case ("read", 3), ("read", 4):
    let path = arguments[2]
    let expected = arguments.count == 4 ? Int(arguments[3]) : nil
    let beforeRead = peakResidentMiB()
    let readStart = Date()
    var exchanges = 0
    let summary: CaptureSummary
    do {
        summary = try CaptureReader.read(path, options: CaptureOptions(keepSessions: false)) { session in
            exchanges += session.transcript.exchanges.count
        }
    } catch {
        fail("\(error)", code: 65)
    }
    let seconds = Date().timeIntervalSince(readStart)
    print(
        String(
            format:
                "sessions %7d  exchanges %8d  file %7.1f MB  packets %8d  read %6.2f s  %6.1f MB/s  peak RSS %6.1f MiB (%.1f before reading)",
            summary.sessionCount, exchanges, megabytes(path), summary.packets, seconds, megabytes(path) / seconds, peakResidentMiB(),
            beforeRead))
    if let expected, summary.sessionCount != expected {
        fail("\(path) holds \(expected) sessions; the reader found \(summary.sessionCount)")
    }
case ("compare", 3), ("compare", 4):
    let path = arguments[2]
    let runs = arguments.count == 4 ? Int(arguments[3]) ?? 5 : 5
    let smtpcheck = smtpcheckBinary
    var rows: [Comparison.Row] = []
    if let tcpdump = onPath("tcpdump") {
        rows.append(Comparison.Row(name: "tcpdump -r FILE -w /dev/null", command: [tcpdump, "-r", path, "-w", "/dev/null"]))
    }
    if let tshark = onPath("tshark") {
        rows.append(
            Comparison.Row(
                name: "tshark (SMTP fields)",
                command: [
                    tshark, "-n", "-r", path, "-Y", "smtp", "-T", "fields", "-e", "tcp.stream", "-e", "smtp.req.command", "-e",
                    "smtp.req.parameter", "-e", "smtp.response.code",
                ]))
    }
    rows += [
        Comparison.Row(name: "smtpcheck sessions", command: [smtpcheck, "sessions", path]),
        Comparison.Row(name: "smtpcheck sessions --format json", command: [smtpcheck, "sessions", path, "--format", "json"]),
        Comparison.Row(name: "smtpcheck check", command: [smtpcheck, "check", path]),
        Comparison.Row(name: "smtpcheck check --format json", command: [smtpcheck, "check", path, "--format", "json"]),
    ]
    var comparison = Comparison(rows: rows, runs: max(1, runs), megabytes: megabytes(path))
    do {
        try comparison.measure()
    } catch {
        fail("\(error)")
    }
    print(
        "\(path): " + String(format: "%.1f MB", megabytes(path))
            + ", median of \(runs) interleaved rounds after a warm-up, \(ProcessInfo.processInfo.activeProcessorCount) cores")
    print(comparison.table(anchor: "tshark (SMTP fields)", floor: "tcpdump -r FILE -w /dev/null"))
case ("startup", 2), ("startup", 3):
    let runs = arguments.count == 3 ? Int(arguments[2]) ?? 10 : 10
    do {
        print(try startupTable(smtpcheck: smtpcheckBinary, runs: max(1, runs)))
    } catch {
        fail("\(error)")
    }
case ("suite", 3), ("suite", 4):
    let runs = arguments.count == 4 ? Int(arguments[3]) ?? 5 : 5
    do {
        print(try suiteTable(smtpcheck: smtpcheckBinary, scenarios: arguments[2], runs: max(1, runs)))
    } catch {
        fail("\(error)")
    }
case ("serve", 2), ("serve", 3), ("serve", 4):
    let messages = arguments.count >= 3 ? Int(arguments[2]) ?? 20_000 : 20_000
    let runs = arguments.count == 4 ? Int(arguments[3]) ?? 5 : 5
    do {
        print(
            try serveTable(
                smtpcheck: smtpcheckBinary, messages: max(20, messages), runs: max(1, runs),
                postfix: ProcessInfo.processInfo.environment["BENCH_POSTFIX"].flatMap { $0.isEmpty ? nil : $0 }))
    } catch {
        fail("\(error)")
    }
case ("scale-capture", 4), ("scale-capture", 5):
    guard let largest = Int(arguments[2]), largest > 0 else { fail("MEGABYTES must be a positive number", code: 64) }
    let runs = arguments.count == 5 ? Int(arguments[4]) ?? 5 : 5
    do {
        print(try captureScaleTable(smtpcheck: smtpcheckBinary, megabytes: largest, runs: max(1, runs), folder: arguments[3]))
    } catch {
        fail("\(error)")
    }
case ("scale-serve", 2), ("scale-serve", 3), ("scale-serve", 4):
    let largest = arguments.count >= 3 ? Int(arguments[2]) ?? 10_000 : 10_000
    let runs = arguments.count == 4 ? Int(arguments[3]) ?? 5 : 5
    let sizes = [100, 1_000, 10_000].filter { $0 <= max(largest, 100) }
    do {
        print(try serveScaleTable(smtpcheck: smtpcheckBinary, sizes: sizes, runs: max(1, runs)))
    } catch {
        fail("\(error)")
    }
default:
    fail("bad arguments\n" + usage, code: 64)
}
