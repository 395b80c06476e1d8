import Foundation
import SMTPCapture
import SMTPTestSupport
import Testing

/// The real captures in ../shared/captures, read as they come. The expected
/// shapes were written by reading each capture once with tshark's SMTP
/// dissector and checking the differences by hand.
@Suite struct SharedCaptureTests {
    static let folder = Repository.sharedCaptures + "/suricata-verify"
    static let available = FileManager.default.fileExists(atPath: folder)

    struct Expectation: Sendable, CustomTestStringConvertible {
        var file: String
        var client: String
        var server: String
        var shape: [String]
        var testDescription: String { self.file }
    }

    static let expectations: [Expectation] = [
        Expectation(
            file: "smtp-attachment-md5", client: "192.168.92.1:39202", server: "172.16.92.2:25",
            shape: ["banner:220", "HELO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]),
        Expectation(
            file: "smtp-bdat-multichunk-inspection", client: "10.0.0.1:40000", server: "10.0.0.2:25",
            shape: [
                "banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "BDAT:250", "BDAT:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250",
                "QUIT:-",
            ]),
        Expectation(
            file: "smtp-ehlo-reset", client: "", server: "",
            shape: ["banner:220", "HELO:250", "MAIL:250", "EHLO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]),
        // The client answers the 334 username prompt with the octets "QUIT":
        // to the server that is a SASL response, and so it is here (redacted).
        Expectation(
            file: "smtp-long-command", client: "192.168.164.35:59096", server: "83.215.238.27:25",
            shape: ["banner:220", "EHLO:250", "AUTH:334", "sasl:334"]),
        Expectation(
            file: "smtp-multi-mail-accept", client: "", server: "",
            shape: [
                "banner:220", "HELO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250",
                "MAIL:250", "RCPT:250",
                "RCPT:250", "DATA:354", "body:250", "QUIT:221",
            ]),
        Expectation(file: "smtp-no-helo-quit", client: "", server: "", shape: ["banner:220", "QUIT:221"]),
        Expectation(
            file: "smtp-no-helo-rset-helo-mail", client: "", server: "",
            shape: ["banner:220", "RSET:250", "HELO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]),
        Expectation(
            file: "smtp-out-of-order-commands", client: "", server: "",
            shape: ["banner:220", "HELO:250", "RCPT:503", "DATA:503", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]),
        Expectation(
            file: "smtp-pipelined-rset-after-complete", client: "", server: "",
            shape: [
                "banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "RSET:250", "MAIL:250", "RCPT:250", "DATA:354",
                "body:250", "QUIT:221",
            ]),
        Expectation(
            file: "smtp-pipelining", client: "127.0.0.1:50287", server: "127.0.0.1:25",
            shape: ["banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250"]),
        // The server closes without a greeting; the client's QUIT gets a reset.
        Expectation(file: "smtp-quit", client: "10.127.0.202:58121", server: "41.225.70.195:25", shape: ["QUIT:-"]),
        Expectation(
            file: "smtp-rejected-ehlo-preserves-envelope", client: "", server: "",
            shape: ["banner:220", "HELO:250", "MAIL:250", "EHLO:501", "RCPT:250", "DATA:354", "body:250", "QUIT:221"]),
        Expectation(
            file: "smtp-rset", client: "", server: "",
            shape: [
                "banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "BDAT:250", "RSET:250", "MAIL:250", "RCPT:250", "BDAT:250", "QUIT:221",
            ]),
        Expectation(
            file: "smtp-startssl", client: "10.16.1.11:34634", server: "142.250.123.27:25",
            shape: ["banner:220", "EHLO:250", "STARTTLS:220"]),
    ]

    @Test(.enabled(if: available, "../shared/captures is not here: nothing to read"), arguments: expectations)
    func sharedCapture(_ expectation: Expectation) throws {
        let summary = try CaptureReader.read("\(Self.folder)/\(expectation.file).pcap")
        #expect(summary.sessions.count == 1, "\(summary.notes)")
        let session = try #require(summary.sessions.first)
        #expect(Fixtures.shape(session.transcript) == expectation.shape)
        if !expectation.client.isEmpty {
            #expect(session.client.description == expectation.client)
            #expect(session.server.description == expectation.server)
        }
    }

    @Test(.enabled(if: available, "../shared/captures is not here: nothing to read"))
    func everySharedCaptureIsReadAndExpected() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder).filter {
            $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng")
        }
        #expect(Set(files.map { String($0.split(separator: ".").first ?? "") }) == Set(Self.expectations.map(\.file)))
        for file in files { #expect(throws: Never.self) { _ = try CaptureReader.read("\(Self.folder)/\(file)") } }
    }

    @Test(.enabled(if: available, "../shared/captures is not here: nothing to read"))
    func startTLSSessionStopsAtTheUpgradeAndAUTHIsRedacted() throws {
        let tls = try #require(try CaptureReader.read("\(Self.folder)/smtp-startssl.pcap").sessions.first)
        #expect(tls.transcript.tls?.mode == .starttls)
        #expect(tls.transcript.notes.contains { if case .encrypted(implicit: false, _, _) = $0 { true } else { false } })
        let auth = try #require(try CaptureReader.read("\(Self.folder)/smtp-long-command.pcap").sessions.first)
        #expect(auth.transcript.exchanges.last?.sent?.isRedacted == true)
        #expect(auth.transcript.exchanges[1].sent?.octets ?? 0 > 1000)
    }
}

/// Broken files: a clear error where the file is unusable, notes where part is.
@Suite struct BadCaptureTests {
    func write(_ bytes: [UInt8]) -> String {
        let path = Fixtures.path("bad.pcap")
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    @Test func corruptHeaderIsAnError() {
        let path = self.write(Array("this is not a capture at all, just text\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: CaptureError.self) { try CaptureReader.read(path) }
        #expect(throws: CaptureError.self) { try CaptureReader.read("/nonexistent/capture.pcap") }
    }

    @Test func emptyFileIsAnError() {
        let path = self.write([])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: CaptureError.self) { try CaptureReader.read(path) }
    }

    @Test func truncatedFileKeepsWhatItHasAndSaysSo() throws {
        let whole = PcapWriter.pcap(Fixtures.conversation().packets, linkType: 1)
        let path = self.write(Array(whole.prefix(whole.count - 30)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try CaptureReader.read(path)
        #expect(summary.notes.contains { $0.contains("ends early") })
        #expect(summary.sessions.count == 1)
    }

    @Test func snapLengthCutsAreGaps() throws {
        let path = Fixtures.write(Fixtures.conversation().packets, link: .ethernet, snapLength: 90)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try CaptureReader.read(path)
        #expect(summary.notes.contains { $0.contains("cut by the snap length (90 octets)") })
        #expect(summary.sessions.count == 1)
    }

    @Test func captureWithoutSMTP() throws {
        var http = SyntheticConnection(client: Fixtures.client4, server: Endpoint(address: [192, 0, 2, 80], port: 80))
        http.handshake(at: 1)
        http.send("GET / HTTP/1.1\r\n\r\n", fromClient: true, at: 2)
        http.send("HTTP/1.1 200 OK\r\n\r\n", fromClient: false, at: 3)
        http.close(at: 4)
        let path = Fixtures.write(http.packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try CaptureReader.read(path)
        #expect(summary.sessions.isEmpty)
        #expect(summary.otherFlows == 1)
    }

    @Test func badFilterIsAnError() throws {
        let path = Fixtures.write(Fixtures.conversation().packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: CaptureError.self) { try CaptureReader.read(path, options: CaptureOptions(filter: "port port port")) }
    }
}
