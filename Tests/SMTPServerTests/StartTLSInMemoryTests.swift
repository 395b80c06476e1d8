import NIOCore
import NIOEmbedded
import NIOSSL
import SMTPCodec
import SMTPPolicy
import SMTPServer
import SMTPTestSupport
import Testing

/// STARTTLS between an in-memory client and the reference server's pipeline:
/// no sockets, bytes moved by hand between two embedded channels.
@Suite struct StartTLSInMemoryTests {
    struct Pair {
        let client = EmbeddedChannel()
        let server = EmbeddedChannel()

        init(policy: Policy = .defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"]), faults: ServerFaults = []) throws {
            let identity = try TLSIdentity.selfSigned(hostname: policy.serverName)
            let configuration = ReferenceServer.Configuration(
                policy: policy, faults: faults, tls: .init(mode: .starttls, identity: identity))
            try SessionPipeline(configuration: configuration, store: try MessageStore(maildir: nil)).configure(self.server)
            _ = try self.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 25)).wait()
            _ = try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 25)).wait()
        }

        /// Passes bytes both ways until neither side has anything left to say.
        func interact() throws {
            var moved = true
            while moved {
                moved = false
                while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
                    try self.server.writeInbound(bytes)
                    moved = true
                }
                while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
                    try self.client.writeInbound(bytes)
                    moved = true
                }
            }
        }

        /// Everything the client has received (decrypted once TLS is up), as text.
        func received() throws -> String {
            var out = ""
            while var buffer = try self.client.readInbound(as: ByteBuffer.self) {
                out += buffer.readString(length: buffer.readableBytes) ?? ""
            }
            return out
        }

        func send(_ text: String) throws {
            try self.client.writeAndFlush(ByteBuffer(string: text)).wait()
            try self.interact()
        }

        func upgradeClient() throws {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            let handler = try NIOSSLClientHandler(
                context: try NIOSSLContext(configuration: configuration), serverHostname: "mx.example.net")
            try self.client.pipeline.syncOperations.addHandler(handler, position: .first)
            try self.interact()
        }
    }

    @Test func upgradeForgetsTheSessionAndHidesSTARTTLS() throws {
        let pair = try Pair()
        try pair.interact()
        #expect(try pair.received().hasPrefix("220 mx.example.net"))
        try pair.send("EHLO client.example.org\r\n")
        #expect(try pair.received().contains("250-STARTTLS\r\n"))
        try pair.send("STARTTLS\r\n")
        #expect(try pair.received() == "220 2.0.0 Ready to start TLS\r\n")
        try pair.upgradeClient()
        // Inside TLS the EHLO is forgotten: MAIL needs a new one.
        try pair.send("MAIL FROM:<a@client.example.org>\r\n")
        #expect(try pair.received() == "503 5.5.1 Error: send HELO/EHLO first\r\n")
        try pair.send("EHLO client.example.org\r\n")
        let ehlo = try pair.received()
        #expect(ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"))
        #expect(!ehlo.contains("STARTTLS"))
        try pair.send("STARTTLS\r\n")
        #expect(try pair.received() == "554 5.5.1 Error: TLS already active\r\n")
    }

    @Test func plaintextPipelinedBehindSTARTTLSIsDropped() throws {
        let pair = try Pair()
        try pair.interact()
        _ = try pair.received()
        try pair.send("EHLO client.example.org\r\nSTARTTLS\r\nEHLO injected.example.org\r\nMAIL FROM:<x@y.example>\r\n")
        let plain = try pair.received()
        #expect(plain.hasSuffix("250 CHUNKING\r\n220 2.0.0 Ready to start TLS\r\n"))
        try pair.upgradeClient()
        #expect(try pair.received().isEmpty)
        try pair.send("NOOP\r\n")
        #expect(try pair.received() == "250 2.0.0 Ok\r\n")
    }

    @Test func theInjectionFaultAnswersItInsideTLS() throws {
        let pair = try Pair(faults: .starttlsInjection)
        try pair.interact()
        _ = try pair.received()
        try pair.send("STARTTLS\r\nEHLO injected.example.org\r\n")
        #expect(try pair.received() == "220 2.0.0 Ready to start TLS\r\n")
        try pair.upgradeClient()
        #expect(try pair.received().hasPrefix("250-mx.example.net\r\n"))
    }

    @Test func tlsRequiredRefusesMailAndAuthBeforeSTARTTLS() throws {
        var policy = Policy.defaultSite(environment: ["SMTPCHECK_PASSWORD": "pw"])
        policy.tlsRequired = true
        policy.rules[.authTLSRequired] = RuleCatalogue.documented[.authTLSRequired]
        let pair = try Pair(policy: policy)
        try pair.interact()
        _ = try pair.received()
        try pair.send("EHLO client.example.org\r\n")
        #expect(!(try pair.received().contains("AUTH")))
        try pair.send("AUTH PLAIN AGFsaWNlAHB3\r\n")
        #expect(try pair.received() == "530 5.7.0 Must issue a STARTTLS command first\r\n")
        try pair.send("MAIL FROM:<a@client.example.org>\r\n")
        #expect(try pair.received() == "530 5.7.0 Must issue a STARTTLS command first\r\n")
        try pair.send("STARTTLS\r\n")
        _ = try pair.received()
        try pair.upgradeClient()
        try pair.send("EHLO client.example.org\r\n")
        #expect(try pair.received().contains("AUTH PLAIN LOGIN CRAM-MD5"))
        try pair.send("AUTH PLAIN AGFsaWNlAHB3\r\n")
        #expect(try pair.received() == "235 2.7.0 Authentication successful\r\n")
    }
}
