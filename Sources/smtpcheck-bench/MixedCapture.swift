// The benchmark's capture: SMTP traffic mixed like a busy MX's, written by
// the benchmark itself so that every run reads the same octets.
import Foundation
import SMTPCapture

/// A small deterministic generator (SplitMix64): the same seed, the same file.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(self.next() % UInt64(bound)) }
}

/// Writes a capture of about `megabytes` MB: deliveries (pipelined and not,
/// bodies from 2 KB to 2 MB, one in twenty over 200 KB), refusals at the
/// greeting and at RCPT, AUTH LOGIN on 587, STARTTLS and TLS on 465, BDAT
/// chunks, greylisting with RSET; 64 connections open at a time, their
/// packets interleaved by time; MSS-sized body segments, every second one
/// acknowledged by a bare ACK.
struct MixedCapture {
    /// What the file holds, for checking a read against.
    struct Contents {
        var sessions = 0
        var packets = 0
        var octets = 0
    }

    private var random = SplitMix64(state: 25)
    /// Lines of message text to cut bodies from: 72 characters and CRLF,
    /// one in forty starting with a dot (stuffed on the wire).
    private let text: [UInt8]
    private let lineLength = 74
    private static let server = Endpoint(address: [192, 0, 2, 25], port: 25)
    private static let submission = Endpoint(address: [192, 0, 2, 25], port: 587)
    private static let smtps = Endpoint(address: [192, 0, 2, 25], port: 465)

    init() {
        var random = SplitMix64(state: 7)
        let words = ["the", "message", "of", "mail", "server", "lorem", "ipsum", "relay", "queue", "and", "delivery", "a", "to", "report"]
        var text: [UInt8] = []
        for line in 0..<40_000 {
            var current: [UInt8] = line % 40 == 0 ? Array("..".utf8) : []
            while current.count < 72 {
                current += Array(words[random.below(words.count)].utf8) + [0x20]
            }
            text += current.prefix(72) + [0x0D, 0x0A]
        }
        self.text = text
    }

    /// How much to write: about so many MB, or so many batches of 64
    /// sessions (the first batches of any larger file: the generator is
    /// deterministic).
    enum Size {
        case megabytes(Int)
        case batches(Int)
    }

    mutating func write(_ size: Size, to path: String) throws -> Contents {
        guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteNoPermission)
        }
        defer { try? file.close() }
        var contents = Contents()
        try file.write(contentsOf: PcapWriter.pcap([], linkType: SyntheticLink.ethernet.linkType))
        contents.octets = 24
        var index = 0
        var clock = 1_700_000_000.0
        func more() -> Bool {
            switch size {
            case .megabytes(let megabytes): contents.octets < megabytes * 1_000_000
            case .batches(let batches): index < batches * 64
            }
        }
        while more() {
            var batch: [PcapWriter.Packet] = []
            for _ in 0..<64 {
                batch += self.session(index, start: clock + Double(self.random.below(1000)) / 1000).packets
                index += 1
            }
            clock += 1
            batch.sort { $0.timestamp < $1.timestamp }
            let octets = PcapWriter.pcap(batch, linkType: SyntheticLink.ethernet.linkType).dropFirst(24)
            try file.write(contentsOf: octets)
            contents.octets += octets.count
            contents.packets += batch.count
        }
        contents.sessions = index
        return contents
    }

    private mutating func body(octets: Int) -> [UInt8] {
        let lines = max(1, octets / self.lineLength)
        let first = self.random.below(40_000 - min(lines, 39_999))
        var body = Array("From: <a@client.example.org>\r\nTo: <b@example.net>\r\nSubject: bench\r\n\r\n".utf8)
        var remaining = lines
        var line = first
        while remaining > 0 {
            let take = min(remaining, 40_000 - line)
            body += self.text[(line * self.lineLength)..<((line + take) * self.lineLength)]
            remaining -= take
            line = 0
        }
        return body + Array(".\r\n".utf8)
    }

    private mutating func bodySize() -> Int {
        self.random.below(20) == 0 ? 200_000 + self.random.below(1_800_000) : 2_000 + self.random.below(38_000)
    }

    private mutating func session(_ index: Int, start: Double) -> SyntheticConnection {
        let client = Endpoint(
            address: [10, UInt8(index >> 16 & 0xFF), UInt8(index >> 8 & 0xFF), UInt8(index & 0xFF)], port: UInt16(1024 + index % 60_000))
        let kind = index % 20
        let server = kind == 19 ? Self.smtps : (12...13).contains(kind) ? Self.submission : Self.server
        var c = SyntheticConnection(
            client: client, server: server, clientISN: UInt32(truncatingIfNeeded: self.random.next()),
            serverISN: UInt32(truncatingIfNeeded: self.random.next()))
        var time = start
        func step(_ text: String, client: Bool) {
            time += 0.001
            c.send(text, fromClient: client, at: time)
        }
        func stream(_ bytes: [UInt8], client: Bool) {
            var offset = 0
            var segments = 0
            while offset < bytes.count {
                let end = min(offset + 1448, bytes.count)
                time += 0.0001
                c.send(Array(bytes[offset..<end]), fromClient: client, at: time)
                offset = end
                // The receiver acknowledges every second segment, as TCP's delayed ACK does.
                segments += 1
                if segments % 2 == 0 { c.acknowledge(fromClient: !client, at: time + 0.00005) }
            }
        }
        c.handshake(at: time)
        if kind == 19 {
            // Implicit TLS: records both ways.
            stream(self.random.bytes(517, first: 0x16), client: true)
            stream(self.random.bytes(4000 + self.random.below(8000), first: 0x16), client: false)
            stream(self.random.bytes(self.bodySize(), first: 0x17), client: true)
            stream(self.random.bytes(200, first: 0x17), client: false)
            c.close(at: time + 0.001)
            return c
        }
        if kind == 16 {
            step("554 5.7.1 mx.example.net Service unavailable; client host [\(client.addressText)] blocked\r\n", client: false)
            step("QUIT\r\n", client: true)
            step("221 2.0.0 Bye\r\n", client: false)
            c.close(at: time + 0.001)
            return c
        }
        step("220 mx.example.net ESMTP\r\n", client: false)
        step("EHLO client\(index).example.org\r\n", client: true)
        step(
            "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
            client: false)
        switch kind {
        case 10, 11:
            step("MAIL FROM:<spam\(index)@bulk.example.com>\r\n", client: true)
            step("250 2.1.0 Ok\r\n", client: false)
            step("RCPT TO:<victim@elsewhere.example>\r\n", client: true)
            step("554 5.7.1 <victim@elsewhere.example>: Relay access denied\r\n", client: false)
            step("DATA\r\n", client: true)
            step("554 5.5.1 Error: no valid recipients\r\n", client: false)
        case 12, 13:
            step("AUTH LOGIN\r\n", client: true)
            step("334 VXNlcm5hbWU6\r\n", client: false)
            step("dXNlckBleGFtcGxlLm5ldA==\r\n", client: true)
            step("334 UGFzc3dvcmQ6\r\n", client: false)
            step("c2VjcmV0\r\n", client: true)
            step("235 2.7.0 Authentication successful\r\n", client: false)
            step("MAIL FROM:<user@example.net>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\n", client: true)
            step("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n", client: false)
            stream(self.body(octets: self.bodySize()), client: true)
            step("250 2.0.0 Ok: queued as \(index)\r\n", client: false)
        case 14, 15:
            step("STARTTLS\r\n", client: true)
            step("220 2.0.0 Ready to start TLS\r\n", client: false)
            stream(self.random.bytes(517, first: 0x16), client: true)
            stream(self.random.bytes(4000 + self.random.below(4000), first: 0x16), client: false)
            stream(self.random.bytes(self.bodySize(), first: 0x17), client: true)
            stream(self.random.bytes(300, first: 0x17), client: false)
            c.close(at: time + 0.001)
            return c
        case 17:
            let size = self.bodySize()
            let chunk = self.body(octets: size).dropLast(3)
            let half = chunk.count / 2
            step("MAIL FROM:<a@client.example.org> BODY=BINARYMIME\r\n", client: true)
            step("250 2.1.0 Ok\r\n", client: false)
            step("RCPT TO:<b@example.net>\r\n", client: true)
            step("250 2.1.5 Ok\r\n", client: false)
            stream(Array("BDAT \(half)\r\n".utf8) + chunk.prefix(half), client: true)
            step("250 2.0.0 \(half) octets received\r\n", client: false)
            stream(Array("BDAT \(chunk.count - half) LAST\r\n".utf8) + chunk.dropFirst(half), client: true)
            step("250 2.0.0 Ok: queued as \(index)\r\n", client: false)
        case 18:
            step("MAIL FROM:<a@client.example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n", client: true)
            step("250 2.1.0 Ok\r\n450 4.2.0 <b@example.net>: Recipient address rejected: Greylisted\r\n250 2.1.5 Ok\r\n", client: false)
            step("RSET\r\n", client: true)
            step("250 2.0.0 Ok\r\n", client: false)
            step("MAIL FROM:<a@client.example.org>\r\n", client: true)
            step("250 2.1.0 Ok\r\n", client: false)
            step("RCPT TO:<c@example.net>\r\n", client: true)
            step("250 2.1.5 Ok\r\n", client: false)
            step("DATA\r\n", client: true)
            step("354 End data with <CR><LF>.<CR><LF>\r\n", client: false)
            stream(self.body(octets: self.bodySize()), client: true)
            step("250 2.0.0 Ok: queued as \(index)\r\n", client: false)
        default:
            // A delivery: pipelined for most clients, one command a time for some.
            let recipients = 1 + self.random.below(3)
            let envelope =
                ["MAIL FROM:<sender\(index)@client.example.org> SIZE=40000"] + (0..<recipients).map { "RCPT TO:<user\($0)@example.net>" }
            if kind % 3 == 0 {
                for command in envelope {
                    step(command + "\r\n", client: true)
                    step(command.hasPrefix("MAIL") ? "250 2.1.0 Ok\r\n" : "250 2.1.5 Ok\r\n", client: false)
                }
                step("DATA\r\n", client: true)
                step("354 End data with <CR><LF>.<CR><LF>\r\n", client: false)
            } else {
                step((envelope + ["DATA"]).joined(separator: "\r\n") + "\r\n", client: true)
                step("250 2.1.0 Ok\r\n" + String(repeating: "250 2.1.5 Ok\r\n", count: recipients) + "354 End data\r\n", client: false)
            }
            stream(self.body(octets: self.bodySize()), client: true)
            step("250 2.0.0 Ok: queued as \(index)\r\n", client: false)
        }
        step("QUIT\r\n", client: true)
        step("221 2.0.0 Bye\r\n", client: false)
        c.close(at: time + 0.001)
        return c
    }
}

extension SplitMix64 {
    /// `count` octets that look like TLS records of type `first`.
    mutating func bytes(_ count: Int, first: UInt8) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            let value = self.next()
            for shift in stride(from: 0, to: 64, by: 8) where index < count {
                out[index] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
                index += 1
            }
        }
        if count >= 3 {
            out[0] = first
            out[1] = 3
            out[2] = 3
        }
        return out
    }
}
