import Crypto
import Foundation
import NIOCore
import NIOSSL
import NIOTLS
import SMTPProtocol
import X509

/// A certificate chain and its private key, for a server.
public struct TLSIdentity: Sendable {
    public var certificateChain: [NIOSSLCertificate]
    public var privateKey: NIOSSLPrivateKey
    /// The chain in PEM, for clients that should trust it.
    public var certificatePEM: String

    public init(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.certificatePEM = certificateChain.compactMap { certificate in
            (try? certificate.toDERBytes()).map { der in
                let body = SASL.base64(der)
                let lines = stride(from: 0, to: body.count, by: 64).map { offset in
                    let start = body.index(body.startIndex, offsetBy: offset)
                    return String(body[start..<(body.index(start, offsetBy: 64, limitedBy: body.endIndex) ?? body.endIndex)])
                }
                return "-----BEGIN CERTIFICATE-----\n" + lines.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n"
            }
        }.joined()
    }

    /// PEM files: the certificate chain (leaf first) and its key.
    public static func load(certificateFile: String, keyFile: String) throws -> TLSIdentity {
        let chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        guard !chain.isEmpty else { throw TLSSetupError(message: "\(certificateFile) holds no PEM certificate") }
        return TLSIdentity(certificateChain: chain, privateKey: try NIOSSLPrivateKey(file: keyFile, format: .pem))
    }

    /// A self-signed certificate for `hostname` (and `localhost`), made now,
    /// valid from an hour ago for `days` days. Nothing is written to disk.
    public static func selfSigned(hostname: String, days: Int = 30) throws -> TLSIdentity {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName(hostname)
            OrganizationName("smtpcheck reference server")
        }
        let now = Date()
        let extensions = try Certificate.Extensions {
            // Its own trust anchor, so a client given it as --ca can verify it.
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames([.dnsName(hostname), .dnsName("localhost")])
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        let pem = try certificate.serializeAsPEM().pemString
        return TLSIdentity(
            certificateChain: [try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem)],
            privateKey: try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
    }

    /// SHA-256 of the leaf certificate, colon-separated upper-case hex.
    public var fingerprint: String {
        guard let leaf = self.certificateChain.first, let der = try? leaf.toDERBytes() else { return "unknown" }
        return CertificateInspector.fingerprint(der)
    }

    /// A server context: TLS 1.2 and later.
    public func serverContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: self.certificateChain.map { .certificate($0) }, privateKey: .privateKey(self.privateKey))
        configuration.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: configuration)
    }
}

public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { self.message }
}
