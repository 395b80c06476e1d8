import Foundation
import SMTPCapture
import SMTPTestSupport
import Testing

/// Issue 11, 11. A long read shows its progress on a terminal's standard
/// error, and never when standard error is not a terminal.
@Suite struct ProgressLineTests {
    static let scriptInstalled = FileManager.default.isExecutableFile(atPath: "/usr/bin/script")

    static func bigCapture() -> String {
        var packets: [PcapWriter.Packet] = []
        for index in 0..<600 {
            let client = Endpoint(address: [10, 0, UInt8(index >> 8), UInt8(index & 0xFF)], port: UInt16(10_000 + index))
            packets +=
                SyntheticConnection.exampleSession(
                    client: client, server: Endpoint(address: [192, 0, 2, 25], port: 25), start: 1_700_000_000 + Double(index)
                ).packets
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-progress-\(UUID().uuidString).pcap").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(PcapWriter.pcap(packets, linkType: 1)))
        return path
    }

    @Test(.enabled(if: scriptInstalled, "needs script(1) for a terminal")) func progressOnlyOnATerminal() async throws {
        let path = Self.bigCapture()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let piped = try await Tool.run("sessions", path)
        #expect(piped.status == 0)
        #expect(!piped.stderr.contains("reading "), "\(piped.stderr)")
        // script(1) gives the command a terminal; its standard output is discarded, standard error shown.
        let script = Process()
        script.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        script.arguments = ["-qec", "'\(Tool.path)' sessions '\(path)' > /dev/null", "/dev/null"]
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "SMTPCHECK_NO_PROGRESS")
        script.environment = environment
        let out = Pipe()
        script.standardOutput = out
        script.standardError = FileHandle.nullDevice
        script.standardInput = FileHandle.nullDevice
        try script.run()
        let shown = try await offThePool { () -> String in
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            script.waitUntilExit()
            return text
        }
        #expect(shown.contains("reading \(path): "), "\(shown)")
        #expect(shown.contains(" sessions, "))
    }
}
