import Foundation
import SMTPCapture
import SMTPTestSupport
import Testing

/// Issue 11, 9: a capture file is read from memory (mapped), and the pages
/// read are let go as the read goes on: the process's peak stays far below
/// the file's size.
@Suite struct CaptureMemoryTests {
    /// The packets written as a pcap file: its path and size.
    static func write(_ packets: [PcapWriter.Packet], name: String) -> (path: String, octets: Int) {
        let bytes = PcapWriter.pcap(packets, linkType: 1)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-\(name)-\(UUID().uuidString).pcap").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return (path, bytes.count)
    }

    /// One session carrying a 48 MB message.
    static func largeCapture() -> (path: String, octets: Int) {
        var connection = SyntheticConnection(
            client: Endpoint(address: [192, 0, 2, 10], port: 40_000), server: Endpoint(address: [192, 0, 2, 25], port: 25))
        connection.handshake(at: 1)
        var time = connection.talk(
            [
                .server("220 mx.example.net ESMTP\r\n"), .client("EHLO client.example.org\r\n"), .server("250 mx.example.net\r\n"),
                .client("MAIL FROM:<a@client.example.org>\r\n"), .server("250 2.1.0 Ok\r\n"),
                .client("RCPT TO:<postmaster@example.net>\r\n"), .server("250 2.1.5 Ok\r\n"), .client("DATA\r\n"),
                .server("354 End data with <CR><LF>.<CR><LF>\r\n"),
            ], from: 2)
        let line = Array(String(repeating: "x", count: 998).utf8) + [0x0D, 0x0A]
        let megabyte = Array([[UInt8]](repeating: line, count: 1_000).joined())
        for _ in 0..<48 {
            connection.replay(megabyte, fromClient: true, at: time)
            time += 1
        }
        time = connection.talk(
            [.client(".\r\n"), .server("250 2.0.0 Ok: queued\r\n"), .client("QUIT\r\n"), .server("221 2.0.0 Bye\r\n")], from: time)
        connection.close(at: time)
        return Self.write(connection.packets, name: "large")
    }

    /// Another program cuts the file short while it is mapped and read: the
    /// pages past its new end fault (SIGBUS), and the reader ends with a
    /// message naming the file and exit status 65, not a crash. Two thousand
    /// sessions print far more than a pipe holds, so with its output not yet
    /// read the reader stops early in the file, mapped, until the file is cut.
    /// (Not under a sanitizer, which keeps the fault handlers for itself.)
    @Test(.enabled(if: !TestEnvironment.sanitized))
    func aCaptureCutShortWhileMappedEndsWithAnError() async throws {
        let server = Endpoint(address: [192, 0, 2, 25], port: 25)
        let packets = (0..<2_000).flatMap { index in
            let client = Endpoint(address: [10, 0, UInt8(index / 250), UInt8(index % 250 + 1)], port: UInt16(20_000 + index))
            return SyntheticConnection.exampleSession(client: client, server: server, start: 1_000 + Double(index)).packets
        }
        let (path, _) = Self.write(packets, name: "cut")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (process, out, err) = Tool.process(["sessions", path])
        try process.run()
        let mapped = try await offThePool { () -> Bool in
            let maps = "/proc/\(process.processIdentifier)/maps"
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline && process.isRunning {
                if let text = try? String(contentsOfFile: maps, encoding: .utf8), text.contains(path) { return true }
                sched_yield()
            }
            return false
        }
        #expect(mapped, "the reader never mapped the file")
        #expect(truncate(path, 64 * 1024) == 0)
        let (_, errors) = try await offThePool {
            (out.fileHandleForReading.readDataToEndOfFile(), err.fileHandleForReading.readDataToEndOfFile())
        }
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "ended by signal \(process.terminationStatus)")
        #expect(process.terminationStatus == 65)
        #expect(String(decoding: errors, as: UTF8.self).contains("\(path): the capture file shrank while it was read"))
    }

    @Test func aLargeCaptureFileDoesNotStayInMemory() async throws {
        let (path, octets) = Self.largeCapture()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try await offThePool { try MeasuredProcess.run(Tool.path, ["sessions", path]) }
        #expect(run.status == 0, "\(run.output.suffix(500))")
        #expect(run.output.contains("DATA"), "\(run.output.prefix(500))")
        print("sessions on a \(octets / 1_000_000) MB capture: peak \(run.peakResidentKilobytes) KB")
        // Its own start-up takes some 32 MB; the file, had it stayed, 48 more.
        if !TestEnvironment.sanitized {
            #expect(run.peakResidentKilobytes < 32 * 1024 + octets / 1024 / 2, "peak \(run.peakResidentKilobytes) KB")
        }
    }
}
