import Foundation
import NIOCore
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPRunner
import SMTPScenarios
import SMTPServer
import SMTPTestSupport
import Testing

@testable import SMTPClient

/// TLS on real sockets: verification modes against a CA made at test time,
/// and other SMTP clients talking to the reference server.
@Suite struct TLSTests {
    static let credentials = Credentials(user: "alice", password: "tls-test-pw")
    static var policy: Policy { .defaultSite(environment: ["SMTPCHECK_PASSWORD": credentials.password]) }

    /// BoringSSL's error text, as an admin reads it: the alert the server sent
    /// (OpenSMTPD 6.8 on OpenSSL 3 sends internal_error), or plain text where
    /// TLS records were due.
    /// A server that never answers close_notify (seen: a 6 s run took 31 s
    /// under `--tls starttls`) holds each session up a second at most, not
    /// NIOSSL's default five.
    @Test func theWaitForCloseNotifyIsBounded() {
        #expect(SMTPClientConnection.tlsConfiguration.shutdownTimeout == .seconds(1))
    }

    @Test func handshakeErrorsAreSaidPlainly() {
        let alert =
            "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268436536 error:10000438:SSL routines:OPENSSL_internal:TLSV1_ALERT_INTERNAL_ERROR at tls_record.cc:491]))"
        #expect(SMTPClientConnection.readable(handshakeError: alert) == "the server sent the fatal TLS alert internal_error")
        let plain = "handshakeFailed(sslError([Error: 268435703 error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER]))"
        #expect(SMTPClientConnection.readable(handshakeError: plain) == "what came back was not a TLS record: the server did not start TLS")
        #expect(SMTPClientConnection.readable(handshakeError: "timed out") == "timed out")
    }

    func runStartTLSCase(identity: TLSIdentity, options: ClientTLSOptions) async throws -> CaseResult {
        let scenario = try #require(try battery().first { $0.id == "tls.starttls-auth-relay" })
        return try await withReferenceServer(policy: Self.policy, tls: .init(mode: .starttls, identity: identity)) { server in
            let result = try await ScenarioRunner(
                .init(
                    target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: Self.policy, credentials: Self.credentials,
                    tlsOptions: options)
            ).run([scenario])
            return try #require(result.cases.first)
        }
    }

    @Test func strictVerificationPassesWithTheRightCAAndName() async throws {
        let pki = try TestPKI()
        let caFile = try pki.writeCAFile()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let result = try await self.runStartTLSCase(
            identity: try pki.leaf(hostname: "mx.example.net"),
            options: ClientTLSOptions(verification: .strict, caFile: caFile, serverName: "mx.example.net"))
        #expect(result.verdict == .passed, "\(result.verdict)")
        let certificate = try #require(result.transcript?.tls?.certificate)
        #expect(certificate.verified)
        #expect(certificate.subject == "CN=mx.example.net")
        #expect(certificate.issuer == "CN=smtpcheck test CA")
        #expect(certificate.subjectAlternativeNames == ["DNS:mx.example.net"])
        #expect(certificate.sha256.split(separator: ":").count == 32)
    }

    @Test func strictVerificationRefusesAnUnknownCA() async throws {
        let pki = try TestPKI()
        let result = try await self.runStartTLSCase(
            identity: try pki.leaf(hostname: "mx.example.net"),
            options: ClientTLSOptions(verification: .strict, serverName: "mx.example.net"))
        guard case .error = result.verdict, let reason = result.reason else {
            Issue.record("expected an error, got \(result.verdict)")
            return
        }
        #expect(reason.contains("the server certificate was refused (strict verification)"), "\(reason)")
    }

    @Test func reportModeGoesOnAndSaysWhy() async throws {
        let pki = try TestPKI()
        let caFile = try pki.writeCAFile()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        // The right CA, the wrong name.
        let result = try await self.runStartTLSCase(
            identity: try pki.leaf(hostname: "mx.example.net"),
            options: ClientTLSOptions(verification: .report, caFile: caFile, serverName: "other.example.org"))
        #expect(result.verdict == .passed, "\(result.verdict)")
        let certificate = try #require(result.transcript?.tls?.certificate)
        #expect(!certificate.verified)
        #expect(certificate.verification.hasPrefix("failed"), "\(certificate.verification)")
    }

    @Test func expiredCertificateIsReported() async throws {
        let pki = try TestPKI()
        let caFile = try pki.writeCAFile()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let expired = try pki.leaf(hostname: "mx.example.net", validFor: 600, notBefore: Date().addingTimeInterval(-7200))
        let result = try await self.runStartTLSCase(
            identity: expired, options: ClientTLSOptions(verification: .report, caFile: caFile, serverName: "mx.example.net"))
        let certificate = try #require(result.transcript?.tls?.certificate)
        #expect(!certificate.verified)
        #expect(
            certificate.verification.lowercased().contains("expire") || certificate.verification.contains("notValidAfter"),
            "\(certificate.verification)")
    }

    @Test func offModeDoesNotVerifyButStillReports() async throws {
        let result = try await self.runStartTLSCase(
            identity: try TLSIdentity.selfSigned(hostname: "mx.example.net"), options: ClientTLSOptions(verification: .off))
        #expect(result.verdict == .passed)
        #expect(result.transcript?.tls?.certificate?.verification.hasPrefix("not checked") == true)
    }

    @Test func implicitTLSOnASocket() async throws {
        let identity = try TLSIdentity.selfSigned(hostname: "mx.example.net")
        try await withReferenceServer(policy: Self.policy, tls: .init(mode: .implicit, identity: identity)) { server in
            let scenarios = try battery().filter { $0.tls == .implicit }
            let result = try await ScenarioRunner(
                .init(
                    target: .live(TargetAddress(host: "127.0.0.1", port: server.port)), policy: Self.policy, credentials: Self.credentials,
                    tls: .implicit)
            ).run(scenarios)
            #expect(!result.cases.isEmpty)
            #expect(result.cases.allSatisfy { $0.verdict == .passed }, "\(summary(result))")
            #expect(result.cases.allSatisfy { $0.transcript?.tls?.version?.hasPrefix("TLSv1.") == true })
        }
    }

    /// Runs an external program; `nil` when it is not installed.
    static let smtplibScript = """
        import os, smtplib, ssl, sys
        port, mode = int(sys.argv[1]), sys.argv[2]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if mode == "implicit":
            client = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example.org", context=context, timeout=10)
        else:
            client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=10)
            client.ehlo()
            client.starttls(context=context)
        client.ehlo()
        client.login("alice", os.environ["SMTPCHECK_TEST_PW"])
        refused = client.sendmail("alice@example.net", ["someone@example.org"], "Subject: smtplib\\r\\n\\r\\nhello\\r\\n")
        client.quit()
        print("sent", refused)
        """

    /// Python's smtplib (starttls(), login(), which picks CRAM-MD5 first) against the reference server.
    @Test(arguments: [ReferenceServer.Configuration.TLS.Mode.starttls, .implicit])
    func pythonSmtplibTalksToTheReferenceServer(mode: ReferenceServer.Configuration.TLS.Mode) async throws {
        let identity = try TLSIdentity.selfSigned(hostname: "mx.example.net")
        try await withReferenceServer(policy: Self.policy, tls: .init(mode: mode, identity: identity)) { server in
            // Waited for off the cooperative pool: a client blocking one of its
            // threads for a second stalls every other test's sessions.
            let port = server.port
            guard
                let (status, output) = try await offThePool({
                    try ExternalTools.run(
                        "python3", ["-c", Self.smtplibScript, String(port), mode.rawValue],
                        environment: ["SMTPCHECK_TEST_PW": Self.credentials.password])
                })
            else {
                Issue.record("python3 is not installed")
                return
            }
            #expect(status == 0, "\(output)")
            #expect(output.contains("sent {}"), "\(output)")
            let message = try #require(server.store.all.last)
            #expect(message.message.recipients == ["someone@example.org"])
            #expect(message.message.authenticatedUser == "alice")
        }
    }

    static let swaksInstalled = ExternalTools.installed("swaks")

    /// swaks --tls with AUTH against the reference server (CI installs swaks).
    @Test(.enabled(if: swaksInstalled, "swaks is not installed (CI installs it)"))
    func swaksTalksToTheReferenceServer() async throws {
        let identity = try TLSIdentity.selfSigned(hostname: "mx.example.net")
        try await withReferenceServer(policy: Self.policy, tls: .init(mode: .starttls, identity: identity)) { server in
            let port = server.port
            for mechanism in ["PLAIN", "LOGIN", "CRAM-MD5"] {
                let result = try await offThePool {
                    try ExternalTools.run(
                        "swaks",
                        [
                            "--server", "127.0.0.1:\(port)", "--tls", "--auth", mechanism, "--auth-user", "alice", "--auth-password",
                            Self.credentials.password, "--helo", "client.example.org", "--from", "alice@example.net", "--to",
                            "someone@example.org",
                            "--timeout", "10",
                        ])
                }
                let (status, output) = try #require(result)
                #expect(status == 0, "\(mechanism): \(output)")
                #expect(output.contains("235 2.7.0 Authentication successful"), "\(mechanism): \(output)")
                #expect(output.contains("250 2.0.0 Ok: queued as"), "\(mechanism): \(output)")
            }
        }
    }
}
