import Foundation
import SMTPCapture
import SMTPTestSupport
import Testing

/// A capture's secrets stay out of every output, whatever the server's
/// replies look like: redaction follows the client side.
@Suite struct CaptureLeakTests {
    static let password = "S3cret-Pa55word!"

    /// Every form the password could take in a report: as it is, in base64
    /// on its own (LOGIN) and inside PLAIN's `\0user\0password`, and as hex.
    static var encodings: [String] {
        let plain = Data("\u{0}alice\u{0}\(password)".utf8).base64EncodedString()
        return [
            password, Data(password.utf8).base64EncodedString(), plain,
            password.utf8.map { String(format: "%02x", $0) }.joined(), password.utf8.map { String(format: "%02X", $0) }.joined(),
        ]
    }

    /// AUTH LOGIN and AUTH PLAIN answered by a server whose replies cannot be
    /// parsed: the client's answers are SASL responses all the same.
    static func capture() -> String {
        let client = Endpoint(address: [192, 0, 2, 10], port: 40_000)
        let server = Endpoint(address: [192, 0, 2, 25], port: 25)
        let login = Data("alice".utf8).base64EncodedString()
        let secret = Data(password.utf8).base64EncodedString()
        let plain = Data("\u{0}alice\u{0}\(password)".utf8).base64EncodedString()
        var connection = SyntheticConnection.dialogue(
            client: client, server: server,
            [
                .server("220 mx.example.net ESMTP\r\n"), .client("EHLO client.example.org\r\n"),
                .server("250-mx.example.net\r\n250 AUTH LOGIN PLAIN\r\n"), .client("AUTH LOGIN\r\n"), .server("334 VXNlcm5hbWU6\r\n"),
                .client("\(login)\r\n"), .server("garbled reply\r\n"), .client("\(secret)\r\n"), .server("?? not SMTP\r\n"),
                .client("AUTH PLAIN\r\n"), .server("xx\r\n"), .client("\(plain)\r\n"), .server("535 5.7.8 no\r\n"),
                .client("QUIT\r\n"), .server("221 bye\r\n"),
            ])
        connection.close(at: 40)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-leak-\(UUID().uuidString).pcap").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(PcapWriter.pcap(connection.packets, linkType: 1)))
        return path
    }

    @Test func noOutputFormatShowsThePassword() async throws {
        let path = Self.capture()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var outputs: [(String, String)] = []
        let sessions = try await Tool.run("sessions", path)
        outputs.append(("sessions", sessions.stdout + sessions.stderr))
        for format in ["console", "json", "junit", "tap"] {
            let check = try await Tool.run("check", path, "--verbose", "--format", format)
            outputs.append(("check --format \(format)", check.stdout + check.stderr))
            let run = try await Tool.run("run", "--capture", path, "--format", format, "--verbose")
            outputs.append(("run --capture --format \(format)", run.stdout + run.stderr))
        }
        #expect(outputs[0].1.contains("redacted"), "\(outputs[0].1)")
        for (name, text) in outputs {
            for form in Self.encodings { #expect(!text.contains(form), "\(name) shows the password as \(form)") }
        }
    }
}
