// Benchmarks for `make bench`: writes a synthetic capture of N SMTP sessions
// (a few open at a time, as on a busy MX), reads it back with the capture
// reader, and reports time, throughput and peak memory.
import Foundation
import SMTPCapture

func peakResidentMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return 0 }
    let kib = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    return kib / 1024
}

/// `write N FILE` makes the capture; `read N FILE` reads it in a process of
/// its own, so that its peak memory is the reader's alone.
let arguments = CommandLine.arguments
if arguments.count > 1 && arguments[1] == "load" {
    do {
        try await runLoad(LoadOptions(arguments.dropFirst(2)))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("smtpcheck-bench load: \(error)\n".utf8))
        exit(64)
    }
}
guard arguments.count == 4, ["write", "read"].contains(arguments[1]), let sessions = Int(arguments[2]) else {
    FileHandle.standardError.write(
        Data(
            "usage: smtpcheck-bench write|read SESSIONS FILE\n       smtpcheck-bench load --port P [--clients C] [--sessions N] [--sources K] [--pid SERVER]\n"
                .utf8))
    exit(64)
}
let path = arguments[3]
if arguments[1] == "write" {

    // Sessions overlap eight at a time; each has a 4 KiB body.
    guard FileManager.default.createFile(atPath: path, contents: nil) else { exit(73) }
    guard let file = FileHandle(forWritingAtPath: path) else { exit(73) }
    let body = String(repeating: "Lorem ipsum dolor sit amet, consectetur adipiscing.\r\n", count: 80)
    file.write(Data(PcapWriter.pcap([], linkType: SyntheticLink.ethernet.linkType)))
    var batch: [PcapWriter.Packet] = []
    for index in 0..<sessions {
        let client = Endpoint(
            address: [10, UInt8(index >> 16 & 0xFF), UInt8(index >> 8 & 0xFF), UInt8(index & 0xFF)], port: UInt16(1024 + index % 60_000))
        let c = SyntheticConnection.exampleSession(
            client: client, server: Endpoint(address: [192, 0, 2, 25], port: 25), start: 1_700_000_000 + Double(index) * 0.01,
            helo: "client\(index).example.org", body: body)
        batch += c.packets
        if batch.count > 50_000 || index == sessions - 1 {
            batch.sort { $0.timestamp < $1.timestamp }
            file.write(Data(PcapWriter.pcap(batch, linkType: SyntheticLink.ethernet.linkType).dropFirst(24)))
            batch.removeAll(keepingCapacity: true)
        }
    }
    try? file.close()
    exit(0)
}
let size = Double((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1_048_576
let beforeRead = peakResidentMiB()

let readStart = Date()
var found = 0
var exchanges = 0
let summary = try CaptureReader.read(path, options: CaptureOptions(keepSessions: false)) { session in
    found += 1
    exchanges += session.transcript.exchanges.count
}
let seconds = Date().timeIntervalSince(readStart)
print(
    String(
        format:
            "sessions %7d  file %7.1f MiB  packets %8d  read %6.2f s  %6.1f MiB/s  %8.0f sessions/s  peak RSS %6.1f MiB (%.1f before reading)",
        found, size, summary.packets, seconds, size / seconds, Double(found) / seconds, peakResidentMiB(), beforeRead))
guard found == sessions, exchanges == sessions * 7 else {
    print("expected \(sessions) sessions of 7 exchanges, found \(found) with \(exchanges) exchanges")
    exit(1)
}
try? FileManager.default.removeItem(atPath: path)
