import Foundation
import SMTPCapture
import SMTPProtocol

/// Captures written at test time.
enum Fixtures {
    static let client4 = Endpoint(address: [192, 0, 2, 10], port: 40_000)
    static let server4 = Endpoint(address: [192, 0, 2, 25], port: 25)
    static let client6 = Endpoint(address: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [0x10], port: 40_001)
    static let server6 = Endpoint(address: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [0x25], port: 587)

    static func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-\(UInt32.random(in: 0...UInt32.max))-\(name)").path
    }

    /// Writes packets as pcap (or pcapng) and returns the path.
    static func write(_ packets: [PcapWriter.Packet], link: SyntheticLink, pcapng: Bool = false, snapLength: UInt32 = 262_144) -> String {
        let path = self.path(pcapng ? "capture.pcapng" : "capture.pcap")
        let bytes =
            pcapng
            ? PcapWriter.pcapng(packets, linkType: UInt16(link.linkType), snapLength: snapLength)
            : PcapWriter.pcap(packets, linkType: link.linkType, snapLength: snapLength)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// Writes packets as a capture, reads it, and returns its first session.
    static func firstSession(_ packets: [PcapWriter.Packet], link: SyntheticLink) throws -> CapturedSession? {
        let path = self.write(packets, link: link)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try CaptureReader.read(path).sessions.first
    }

    /// A whole plain session: banner, EHLO, a pipelined transaction with a body, QUIT.
    static func conversation(
        client: Endpoint = client4, server: Endpoint = server4, link: SyntheticLink = .ethernet, start: Double = 1_700_000_000
    ) -> SyntheticConnection {
        SyntheticConnection.exampleSession(client: client, server: server, link: link, start: start)
    }

    /// Commands and reply codes of each exchange: `EHLO:250`, `body:250`, `banner:220`.
    /// The octets a unit shows, as text.
    static func text(_ unit: ClientUnit) -> String { String(decoding: unit.line, as: UTF8.self) }

    static func shape(_ transcript: Transcript) -> [String] {
        transcript.exchanges.map { exchange in
            let what: String
            switch exchange.kind {
            case .banner: what = "banner"
            case .body: what = "body"
            case .saslResponse: what = "sasl"
            case .unsolicited: what = "unsolicited"
            default: what = exchange.sent.map { String(Self.text($0).split(separator: " ").first ?? "").uppercased() } ?? "?"
            }
            return "\(what):\(exchange.reply.map { String($0.code.value) } ?? "-")"
        }
    }
}
