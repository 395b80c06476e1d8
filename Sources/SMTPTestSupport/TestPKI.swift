import Crypto
import Foundation
import NIOSSL
import SMTPCodec
import X509

/// A certificate authority made at test time, and leaf certificates it signs.
/// No key or certificate is ever committed, so nothing in the suite expires.
public struct TestPKI: Sendable {
    private let caKey: Certificate.PrivateKey
    public let caCertificate: Certificate
    public let caPEM: String

    public init(name: String = "smtpcheck test CA") throws {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400), issuer: subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        self.caKey = Certificate.PrivateKey(key)
        self.caCertificate = certificate
        self.caPEM = try certificate.serializeAsPEM().pemString
    }

    /// The CA's certificate in a temporary PEM file, for `--ca`.
    public func writeCAFile() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-ca-\(UInt32.random(in: 0...UInt32.max)).pem")
            .path
        try self.caPEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A server identity for `hostname`, signed by this CA.
    public func leaf(hostname: String, validFor seconds: TimeInterval = 86_400, notBefore: Date = Date().addingTimeInterval(-3600)) throws
        -> TLSIdentity
    {
        let key = P256.Signing.PrivateKey()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: notBefore, notValidAfter: notBefore.addingTimeInterval(seconds), issuer: self.caCertificate.subject,
            subject: try DistinguishedName { CommonName(hostname) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName(hostname)])
            },
            issuerPrivateKey: self.caKey)
        let pem = try certificate.serializeAsPEM().pemString
        return TLSIdentity(
            certificateChain: [try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem)],
            privateKey: try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
    }
}
