import NIOCore
import NIOEmbedded
import SMTPCapture
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPScenarios
import SMTPServer

/// What each fuzz target runs on one input. The targets (`fuzz-*`) hold only
/// their `LLVMFuzzerTestOneInput`; the work is here, so that the regression
/// tests run every crash input the fuzzers found through the same code.
///
/// Each checks, besides "no crash", the invariants its code promises: a
/// parser's memory stays within its bound whatever the input.
public enum FuzzHarness {
    public enum Target: String, CaseIterable, Sendable {
        case replies, commands, addresses, capture, scenario, policy, server
    }

    public static func run(_ target: Target, _ input: UnsafeBufferPointer<UInt8>) {
        switch target {
        case .replies: Self.replies(input)
        case .commands: Self.commands(input)
        case .addresses: Self.addresses(input)
        case .capture: Self.capture(input)
        case .scenario: Self.scenario(input)
        case .policy: Self.policy(input)
        case .server: Self.server(input)
        }
    }

    /// Invariants broken stop the fuzzer as a crash does.
    static func require(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("invariant broken: \(message())") }
    }

    /// Server octets through strict framing and the reply parser, and again
    /// through the capture framing (a bare LF ends a line).
    public static func replies(_ input: UnsafeBufferPointer<UInt8>) {
        for bareLF in [false, true] {
            var framer = LineFramer(maximumLength: 8192, bareLFEndsLine: bareLF)
            var parser = ReplyParser()
            framer.append(input)
            while let line = framer.next() {
                Self.require(line.bytes.count <= 8190, "a line past the framer's maximum")
                switch parser.feed(line) {
                case .reply(let reply):
                    _ = reply.description
                    _ = reply.wireFormat
                    Self.require(!reply.lines.isEmpty, "a reply without lines")
                case .malformed(let malformed):
                    _ = malformed.description
                case nil:
                    break
                }
                Self.require(parser.pending.count < ReplyParser.maximumLines, "the parser holds \(parser.pending.count) lines")
            }
        }
    }

    /// Client octets as the server frames them: lines, commands, and BDAT
    /// sizes taken as chunk lengths.
    public static func commands(_ input: UnsafeBufferPointer<UInt8>) {
        var framer = LineFramer(maximumLength: 4096)
        framer.append(input)
        while let line = framer.next() {
            let command = SMTPCommand(line: line.bytes)
            _ = command.verb
            _ = ClientUnit.command(line.bytes).leadingCommand
            if command.verb == .bdat, let token = command.argument.split(separator: " ").first, let size = Int(token), size >= 0 {
                let before = framer.unconsumedCount
                let chunk = framer.takeRaw(upTo: size)
                Self.require(chunk.count <= size && chunk.count <= before, "a chunk of \(chunk.count) for \(size)")
            }
        }
        _ = Printable.escape(Array(input))
    }

    /// The domain and mailbox grammar on any text.
    public static func addresses(_ input: UnsafeBufferPointer<UInt8>) {
        let text = String(decoding: input, as: UTF8.self)
        _ = DomainName.isValid(text)
        _ = AddressLiteral.parse(text)
        _ = IPAddressText.ipv4(text)
        _ = IPAddressText.ipv6(text)
        _ = IPAddressText.ipv6(text, rfc5321: true)
        if case .success(let mailbox) = Mailbox.parse(text) { _ = mailbox.description }
        if case .success(let path) = MailPath.parse(text) { _ = path.description }
        _ = SMTPCommand(line: Array("MAIL FROM:\(text)".utf8))
    }

    /// Octets as a classic pcap file: the packet decoder, the TCP
    /// reassembler and the session builder, to the sessions' transcripts.
    /// Returns how many sessions the input held.
    @discardableResult
    public static func capture(_ input: UnsafeBufferPointer<UInt8>) -> Int {
        let source = MemoryPcap(Array(input))
        var sessions = 0
        _ = try? CaptureReader.read(source, name: "fuzz.pcap", options: CaptureOptions(keepSessions: false)) { session in
            sessions += 1
            _ = TranscriptText().lines(session.transcript, timestamps: true)
        }
        return sessions
    }

    public static func scenario(_ input: UnsafeBufferPointer<UInt8>) {
        let text = String(decoding: input, as: UTF8.self)
        if let scenario = try? Scenario.parse(text, file: "fuzz.yaml") {
            _ = scenario.steps.count
        }
    }

    public static func policy(_ input: UnsafeBufferPointer<UInt8>) {
        let text = String(decoding: input, as: UTF8.self)
        _ = try? Policy.parse(text, file: "/nonexistent/fuzz/policy.yaml", environment: [:])
    }

    /// A whole client byte stream into the reference server's pipeline on
    /// an embedded channel: framing, the state machine, the replies. The
    /// first octet picks the server's faults; time passes between pieces.
    /// Returns the octets the server wrote.
    @discardableResult
    public static func server(_ input: UnsafeBufferPointer<UInt8>) -> Int {
        guard let first = input.first else { return 0 }
        var faults: ServerFaults = []
        for (index, entry) in ServerFaults.catalogue.prefix(8).enumerated() where first & (1 << UInt8(index)) != 0 {
            faults.insert(entry.fault)
        }
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        guard let store = try? MessageStore(maildir: nil),
            let pipeline = try? SessionPipeline(configuration: .init(policy: .defaultSite(), faults: faults), store: store),
            (try? pipeline.configure(channel)) != nil,
            (try? channel.connect(to: SocketAddress(ipAddress: "192.0.2.10", port: 40_000)).wait()) != nil
        else { return 0 }
        var written = 0
        func drain() {
            while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { written += buffer.readableBytes }
        }
        drain()
        // Pieces split at 0xFF octets, so the fuzzer controls read boundaries.
        for piece in input.dropFirst().split(separator: 0xFF, omittingEmptySubsequences: false) {
            guard channel.isActive else { break }
            _ = try? channel.writeInbound(ByteBuffer(bytes: piece))
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
            drain()
        }
        return written
    }
}

/// A classic pcap file in memory, read with its own range checks: the
/// fuzzer's packet source (libpcap reads files; this reads the fuzzer's octets).
struct MemoryPcap: PacketSource {
    let octets: [UInt8]
    let linkType: Int32
    let snapLength: Int
    let bigEndian: Bool
    let nanoseconds: Bool
    private let cursor = Cursor()

    final class Cursor {
        var offset = 24
    }

    init(_ octets: [UInt8]) {
        self.octets = octets
        let magic = Self.word(octets, 0, bigEndian: false) ?? 0
        self.bigEndian = magic == 0xD4C3_B2A1 || magic == 0x4D3C_B2A1
        self.nanoseconds = magic == 0xA1B2_3C4D || magic == 0x4D3C_B2A1
        self.snapLength = Int(Self.word(octets, 16, bigEndian: self.bigEndian) ?? 0)
        self.linkType = Int32(truncatingIfNeeded: Self.word(octets, 20, bigEndian: self.bigEndian) ?? 1)
    }

    static func word(_ octets: [UInt8], _ at: Int, bigEndian: Bool) -> UInt32? {
        guard at >= 0, at + 4 <= octets.count else { return nil }
        let bytes = octets[at..<at + 4].map(UInt32.init)
        return bigEndian
            ? bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3]
            : bytes[3] << 24 | bytes[2] << 16 | bytes[1] << 8 | bytes[0]
    }

    func next() throws(CaptureError) -> CapturedPacket? {
        let at = self.cursor.offset
        guard let seconds = Self.word(self.octets, at, bigEndian: self.bigEndian),
            let fraction = Self.word(self.octets, at + 4, bigEndian: self.bigEndian),
            let captured = Self.word(self.octets, at + 8, bigEndian: self.bigEndian),
            let original = Self.word(self.octets, at + 12, bigEndian: self.bigEndian)
        else { return nil }
        let start = at + 16
        guard captured <= 262_144, Int(captured) <= self.octets.count - start else {
            throw CaptureError(file: "fuzz.pcap", message: "a record of \(captured) octets past the end")
        }
        let end = start + Int(captured)
        self.cursor.offset = end
        let timestamp = Double(seconds) + Double(fraction) / (self.nanoseconds ? 1e9 : 1e6)
        return CapturedPacket(
            timestamp: timestamp, data: Array(self.octets[start..<end]), originalLength: Int(original), linkType: self.linkType)
    }
}
