import Foundation
import SMTPProtocol
import Testing

/// A sharded run's parts hold whole cases; what a client unit keeps behind a
/// redaction (for `--auth-from-capture`) never goes into them.
@Suite struct ClientUnitCodingTests {
    @Test func withheldOctetsAreNeverEncoded() throws {
        let secret = Array("AGFsaWNlAHNlY3JldA==".utf8)
        let unit = ClientUnit(
            payload: .saslResponse(mechanism: "PLAIN"), line: [], command: nil, octets: secret.count + 2, lineEnd: .crlf, withheld: secret)
        let data = try JSONEncoder().encode(unit)
        let text = String(decoding: data, as: UTF8.self)
        #expect(!text.contains("withheld"), "\(text)")
        #expect(!text.contains("\(secret[0]),\(secret[1])"), "\(text)")
        let back = try JSONDecoder().decode(ClientUnit.self, from: data)
        #expect(back.withheld == nil)
        #expect(back.octets == unit.octets)
        #expect(back.payload == unit.payload)
    }
}
