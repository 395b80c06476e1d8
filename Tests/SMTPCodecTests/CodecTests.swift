import NIOCore
import NIOEmbedded
import SMTPCodec
import SMTPProtocol
import Testing

@Suite struct CodecTests {
    static let wire = Array("220 mx.example.net ESMTP\r\n250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 1000\r\n554 5.7.1 no\r\n".utf8)

    /// Feeds `bytes` in slices of `chunk` octets, then checks the channel finishes clean.
    func replies(_ bytes: [UInt8], chunk: Int) throws -> [ServerResponse] {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LineFramingHandler())
        try channel.pipeline.syncOperations.addHandler(ReplyDecodingHandler())
        var out: [ServerResponse] = []
        var index = 0
        while index < bytes.count {
            try channel.writeInbound(ByteBuffer(bytes: bytes[index..<min(index + chunk, bytes.count)]))
            while let response = try channel.readInbound(as: ServerResponse.self) { out.append(response) }
            index += chunk
        }
        #expect(try channel.finish().isClean)
        return out
    }

    @Test(arguments: [1, 2, 3, 5, 13, 64, 4096])
    func repliesAreTheSameWhateverTheSegmentation(chunk: Int) throws {
        let responses = try self.replies(Self.wire, chunk: chunk)
        #expect(responses.map { $0.reply?.code.value } == [220, 250, 554])
        #expect(responses[1].reply?.lines == ["mx.example.net", "PIPELINING", "SIZE 1000"])
        #expect(responses[2].reply?.enhancedCode == EnhancedStatusCode(5, 7, 1))
    }

    @Test(arguments: [1, 7, 4096])
    func linesCarryTheirFindingsThroughTheHandler(chunk: Int) throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LineFramingHandler(maximumLength: 16))
        let input = Array("HELO a\nb\r\nNOOP \(String(repeating: "x", count: 40))\r\nQUIT\r\n".utf8)
        var lines: [LineFramer.Line] = []
        var index = 0
        while index < input.count {
            try channel.writeInbound(ByteBuffer(bytes: input[index..<min(index + chunk, input.count)]))
            while case .line(let line)? = try channel.readInbound(as: FramedInput.self) { lines.append(line) }
            index += chunk
        }
        #expect(lines.count == 3)
        #expect(lines[0].findings == .bareLF)
        #expect(lines[1].findings == .truncated)
        #expect(lines[1].length == 47)
        #expect(lines[2].bytes == Array("QUIT".utf8))
        #expect(try channel.finish().isClean)
    }

    @Test func discardReturnsWhatWasPipelinedBehind() throws {
        let framing = LineFramingHandler()
        let channel = EmbeddedChannel(handler: framing)
        try channel.writeInbound(ByteBuffer(string: "STARTTLS\r\nEHLO injected\r\n"))
        // The framer hands lines on as they complete; both lines are out already.
        #expect(try channel.readInbound(as: FramedInput.self) == .line(LineFramer.Line(bytes: Array("STARTTLS".utf8))))
        #expect(try channel.readInbound(as: FramedInput.self) == .line(LineFramer.Line(bytes: Array("EHLO injected".utf8))))
        try channel.writeInbound(ByteBuffer(string: "partial"))
        #expect(framing.unconsumed == Array("partial".utf8))
        #expect(framing.discardBuffered() == Array("partial".utf8))
        #expect(framing.unconsumed.isEmpty)
        #expect(try channel.finish().isClean)
    }

    /// Asks for a chunk the moment a BDAT line passes, as the server does.
    final class ChunkRequester: ChannelInboundHandler {
        typealias InboundIn = FramedInput
        typealias InboundOut = FramedInput
        let framing: LineFramingHandler
        init(_ framing: LineFramingHandler) { self.framing = framing }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .line(let line) = self.unwrapInboundIn(data), line.bytes.starts(with: Array("BDAT ".utf8)),
                let size = Int(String(decoding: line.bytes.dropFirst(5).prefix { $0 != 0x20 }, as: UTF8.self))
            {
                self.framing.expectChunk(size)
            }
            context.fireChannelRead(data)
        }
    }

    /// After a BDAT line, the chunk's octets pass as they are, CRLFs and all.
    @Test(arguments: [1, 3, 4096])
    func chunksPassUnframed(chunk: Int) throws {
        let framing = LineFramingHandler()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(framing)
        try channel.pipeline.syncOperations.addHandler(ChunkRequester(framing))
        let input = Array("BDAT 6 LAST\r\na\r\n.\r\nQUIT\r\n".utf8)
        var out: [FramedInput] = []
        var index = 0
        while index < input.count {
            try channel.writeInbound(ByteBuffer(bytes: input[index..<min(index + chunk, input.count)]))
            while let item = try channel.readInbound(as: FramedInput.self) { out.append(item) }
            index += chunk
        }
        let chunkBytes: [UInt8] = out.flatMap { item -> [UInt8] in
            if case .chunk(let bytes) = item { return bytes }
            return []
        }
        #expect(chunkBytes == Array("a\r\n.\r\n".utf8))
        #expect(out.last == .line(LineFramer.Line(bytes: Array("QUIT".utf8))))
        #expect(try channel.finish().isClean)
    }

    @Test func replyWireEncoding() {
        var buffer = ByteBuffer()
        SMTPReply(code: .ok, lines: ["a", "b"]).writeWire(into: &buffer)
        #expect(String(buffer: buffer) == "250-a\r\n250 b\r\n")
    }
}
