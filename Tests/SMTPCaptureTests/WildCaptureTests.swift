import Foundation
import SMTPCapture
import SMTPProtocol
import SMTPTestSupport
import Testing

/// Captures of attack traffic, scripts and broken clients: the reader shows
/// what went over the wire and survives whatever numbers it holds.
@Suite struct WildCaptureTests {
    static func session(_ turns: [Turn], server: Endpoint = Fixtures.server4) throws -> CapturedSession {
        let connection = SyntheticConnection.dialogue(client: Fixtures.client4, server: server, turns, start: 1_700_000_000)
        let path = Fixtures.write(connection.packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try #require(try CaptureReader.read(path).sessions.first)
    }

    /// Issue 11, 4. A client and server that end lines with a bare LF: the
    /// conversation is read, with one note a side.
    @Test func bareLineEndsAreReadAndNotedOnce() throws {
        let session = try Self.session([
            .server("220 mx ESMTP\n"), .client("EHLO a.example\n"), .server("250 mx\n"),
            .client("MAIL FROM:<a@b.example>\n"), .server("250 ok\n"), .client("QUIT\n"), .server("221 bye\n"),
        ])
        #expect(Fixtures.shape(session.transcript) == ["banner:220", "EHLO:250", "MAIL:250", "QUIT:221"])
        #expect(session.transcript.notes.contains(.bareLineEnds(.client, count: 3)))
        #expect(session.transcript.notes.contains(.bareLineEnds(.server, count: 4)))
        #expect(session.transcript.exchanges[1].sent?.lineEnd == .lf)
    }

    /// A body whose client speaks CRLF ends only at CRLF.CRLF: a bare `\n.\n` inside it is text.
    @Test func aCRLFClientsBodyEndsOnlyAtCRLFDotCRLF() throws {
        let session = try Self.session([
            .server("220 mx ESMTP\r\n"), .client("EHLO a.example\r\n"), .server("250 mx\r\n"), .client("MAIL FROM:<a@b.example>\r\n"),
            .server("250 ok\r\n"), .client("RCPT TO:<c@d.example>\r\n"), .server("250 ok\r\n"), .client("DATA\r\n"), .server("354 go\r\n"),
            .client("one\n.\ntwo\r\n.\r\n"), .server("250 queued\r\n"), .client("QUIT\r\n"), .server("221 bye\r\n"),
        ])
        #expect(
            Fixtures.shape(session.transcript) == ["banner:220", "EHLO:250", "MAIL:250", "RCPT:250", "DATA:354", "body:250", "QUIT:221"])
    }

    /// Issue 11, 5. Octets that are not SMTP are shown: their size, and a
    /// ClientHello's record version, SNI and ALPN.
    @Test func clientOctetsThatAreNotSMTPAreShown() throws {
        var binaryConnection = SyntheticConnection(client: Fixtures.client4, server: Fixtures.server4)
        binaryConnection.handshake(at: 1)
        binaryConnection.send(Array("220 mx ESMTP\r\n".utf8), fromClient: false, at: 2)
        binaryConnection.send((0..<1024).map { UInt8($0 % 256) }, fromClient: true, at: 3)
        binaryConnection.close(at: 4)
        let binaryPath = Fixtures.write(binaryConnection.packets, link: .ethernet)
        defer { try? FileManager.default.removeItem(atPath: binaryPath) }
        let binary = try #require(try CaptureReader.read(binaryPath).sessions.first)
        let note = try #require(binary.transcript.notes.first { if case .clientNotSMTP = $0 { true } else { false } })
        guard case .clientNotSMTP(let octets, _, let hello) = note else { return }
        #expect(octets == 1024 && hello == nil)
        let implicit = Endpoint(address: [192, 0, 2, 25], port: 465)
        var connection = SyntheticConnection(client: Fixtures.client4, server: implicit)
        connection.handshake(at: 1)
        connection.send(Self.clientHello(name: "mx.example.net", protocols: ["smtp", "h2"]), fromClient: true, at: 2)
        connection.close(at: 3)
        let session = try #require(try Fixtures.firstSession(connection.packets, link: .ethernet))
        let expected = TLSClientHello(recordVersion: "TLS 1.0", serverName: "mx.example.net", protocols: ["smtp", "h2"])
        #expect(session.transcript.notes.contains { if case .clientNotSMTP(_, _, expected) = $0 { true } else { false } })
    }

    /// Issue 11, 3 and 6. `BDAT -5000`, `BDAT -9` and `BDAT 5 X` announce no
    /// chunk (RFC 3030): the commands after them are read as commands.
    @Test func bdatWithoutASizeAnnouncesNothing() throws {
        let session = try Self.session([
            .server("220 mx ESMTP\r\n"), .client("EHLO a.example\r\n"), .server("250 mx\r\n"), .client("BDAT -5000\r\n"),
            .server("501 bad\r\n"), .client("BDAT -9\r\n"), .server("501 bad\r\n"), .client("BDAT 5 X\r\n"), .server("521 no\r\n"),
            .client("QUIT\r\n"), .server("221 bye\r\n"),
        ])
        #expect(Fixtures.shape(session.transcript) == ["banner:220", "EHLO:250", "BDAT:501", "BDAT:501", "BDAT:521", "QUIT:221"])
    }

    /// A ClientHello with these extensions.
    static func clientHello(name: String, protocols: [String]) -> [UInt8] {
        func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
        let host = Array(name.utf8)
        let sni = u16(0) + u16(host.count + 5) + u16(host.count + 3) + [0] + u16(host.count) + host
        let list = protocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        let alpn = u16(16) + u16(list.count + 2) + u16(list.count) + list
        let extensions = sni + alpn
        let body =
            [3, 3] + [UInt8](repeating: 0x11, count: 32) + [0] + u16(2) + [0x13, 0x01] + [1, 0] + u16(extensions.count) + extensions
        let handshake = [1, 0] + u16(body.count) + body
        return [0x16, 3, 1] + u16(handshake.count) + handshake
    }

    /// Lengths in a hello are the peer's: read as given, every cut or
    /// overstated one is survived, never trusted.
    @Test func aClientHelloIsReadWithEveryLengthChecked() {
        let hello = Self.clientHello(name: "mx.example.net", protocols: ["smtp"])
        #expect(TLSClientHello(hello)?.serverName == "mx.example.net")
        for cut in 0..<hello.count { _ = TLSClientHello(Array(hello.prefix(cut))) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var mangled = hello
            for _ in 0..<3 { mangled[Int.random(in: 5..<mangled.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = TLSClientHello(mangled)
        }
        #expect(TLSClientHello(Array("EHLO a.example\r\n".utf8)) == nil)
    }
}
