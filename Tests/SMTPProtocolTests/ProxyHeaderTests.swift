import Testing

@testable import SMTPProtocol

@Suite struct ProxyHeaderTests {
    @Test func v1RoundTrip() {
        let header = ProxyHeader.v1(source: "192.0.2.25", destination: "127.0.0.1", sourcePort: 40_000, destinationPort: 25)
        #expect(String(decoding: header, as: UTF8.self) == "PROXY TCP4 192.0.2.25 127.0.0.1 40000 25\r\n")
        #expect(
            ProxyHeader.parse(header + Array("EHLO x\r\n".utf8))
                == .complete(
                    .init(
                        version: 1, source: "192.0.2.25", destination: "127.0.0.1", sourcePort: 40_000, destinationPort: 25,
                        length: header.count)))
    }

    @Test(arguments: ["192.0.2.25", "2001:db8::25"])
    func v2RoundTrip(source: String) {
        let destination = source.contains(":") ? "2001:db8::1" : "127.0.0.1"
        let header = ProxyHeader.v2(source: source, destination: destination, sourcePort: 1234, destinationPort: 587)
        guard case .complete(let parsed) = ProxyHeader.parse(header) else {
            Issue.record("v2 header did not parse")
            return
        }
        #expect(parsed.version == 2)
        #expect(
            parsed.source.flatMap { IPAddressText.ipv6($0) ?? IPAddressText.ipv4($0).map { $0.map(UInt16.init) } }
                == (IPAddressText.ipv6(source) ?? IPAddressText.ipv4(source).map { $0.map(UInt16.init) }))
        #expect(parsed.sourcePort == 1234)
        #expect(parsed.length == header.count)
    }

    @Test func partialHeadersWaitForMore() {
        let v1 = ProxyHeader.v1(source: "192.0.2.25", destination: "127.0.0.1", sourcePort: 1, destinationPort: 25)
        let v2 = ProxyHeader.v2(source: "192.0.2.25", destination: "127.0.0.1", sourcePort: 1, destinationPort: 25)
        for cut in [1, 5, 11, 14] {
            #expect(ProxyHeader.parse(v1.prefix(cut)) == .needMore)
            #expect(ProxyHeader.parse(v2.prefix(cut)) == .needMore)
        }
    }

    @Test(arguments: [
        "EHLO client.example.org\r\n", "PROXY TCP4 999.0.0.1 127.0.0.1 1 25\r\n", "PROXY TCP4 192.0.2.1 127.0.0.1 1\r\n",
        "PROXY TCP6 192.0.2.1 127.0.0.1 1 25\r\n", "PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n",
    ])
    func malformedHeadersAreRefused(text: String) {
        guard case .invalid = ProxyHeader.parse(Array(text.utf8)) else {
            Issue.record("\(text) should be invalid")
            return
        }
    }

    @Test func unknownAndLocalSpeakForThemselves() {
        #expect(
            ProxyHeader.parse(Array("PROXY UNKNOWN\r\n".utf8))
                == .complete(.init(version: 1, source: nil, destination: nil, sourcePort: nil, destinationPort: nil, length: 15)))
        let local: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00]
        #expect(
            ProxyHeader.parse(local)
                == .complete(.init(version: 2, source: nil, destination: nil, sourcePort: nil, destinationPort: nil, length: 16)))
    }
}
