import Crypto
import Foundation
import NIOCore
import NIOSSL
import SMTPProtocol
import X509

/// What the client does with the server's certificate.
public struct ClientTLSOptions: Sendable, Hashable {
    public enum Verification: String, Sendable, Hashable, CaseIterable {
        /// An unverifiable certificate fails the handshake.
        case strict
        /// Verify and report; go on whatever the result.
        case report
        /// Do not verify; still report the certificate.
        case off
    }

    public var verification: Verification
    /// PEM trust roots instead of the system's.
    public var caFile: String?
    /// The name sent as SNI and checked against the certificate.
    public var serverName: String?
    /// PEM trust roots given in memory (the in-process server's own certificate).
    public var trustedCertificatesPEM: String?

    public init(
        verification: Verification = .report, caFile: String? = nil, serverName: String? = nil, trustedCertificatesPEM: String? = nil
    ) {
        self.verification = verification
        self.caFile = caFile
        self.serverName = serverName
        self.trustedCertificatesPEM = trustedCertificatesPEM
    }
}

/// Reads and verifies a server's certificate chain with swift-certificates.
public enum CertificateInspector {
    public static func fingerprint(_ der: [UInt8]) -> String {
        SHA256.hash(data: der).map { byte in
            let hex = String(byte, radix: 16, uppercase: true)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// Summarises `chain` (leaf first) and verifies it for `hostname`.
    public static func inspect(chain: [NIOSSLCertificate], hostname: String?, options: ClientTLSOptions) async -> CertificateSummary? {
        let parsed = chain.compactMap { certificate -> (Certificate, [UInt8])? in
            guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
            return (parsed, der)
        }
        guard let (leaf, der) = parsed.first else { return nil }
        var names: [String] = []
        if let sans = try? leaf.extensions.subjectAlternativeNames {
            for name in sans {
                switch name {
                case .dnsName(let dns): names.append("DNS:\(dns)")
                case .ipAddress(let octets): names.append("IP:\(Array(octets.bytes).map(String.init).joined(separator: "."))")
                default: names.append("\(name)")
                }
            }
        }
        var verified = false
        var verification = "not checked (verification off)"
        if options.verification != .off {
            (verified, verification) = await self.verify(
                leaf: leaf, intermediates: parsed.dropFirst().map(\.0), hostname: hostname, caFile: options.caFile,
                pem: options.trustedCertificatesPEM)
        }
        return CertificateSummary(
            subject: leaf.subject.description, issuer: leaf.issuer.description, subjectAlternativeNames: names,
            notValidBefore: self.timestamp(leaf.notValidBefore), notValidAfter: self.timestamp(leaf.notValidAfter),
            sha256: self.fingerprint(der),
            verified: verified, verification: verification)
    }

    /// A verifier's reason without the certificate dump it carries.
    static func shorten(_ reason: String) -> String {
        var out = ""
        var rest = Substring(reason)
        while let start = rest.range(of: "Certificate(") {
            out += rest[..<start.lowerBound] + "certificate"
            var depth = 1
            var index = start.upperBound
            while index < rest.endIndex && depth > 0 {
                if rest[index] == "(" { depth += 1 } else if rest[index] == ")" { depth -= 1 }
                index = rest.index(after: index)
            }
            rest = rest[index...]
        }
        out += rest
        return out.count > 200 ? String(out.prefix(200)) + "..." : out
    }

    /// The certificates of a PEM text (other blocks are ignored).
    static func certificates(pem text: String) -> [Certificate] {
        let end = "-----END CERTIFICATE-----"
        let blocks = text.components(separatedBy: end).dropLast().map { $0 + end }
        return blocks.compactMap { block in
            guard let begin = block.range(of: "-----BEGIN CERTIFICATE-----") else { return nil }
            return try? Certificate(pemEncoded: String(block[begin.lowerBound...]))
        }
    }

    static func verify(leaf: Certificate, intermediates: [Certificate], hostname: String?, caFile: String?, pem: String?) async -> (
        Bool, String
    ) {
        let roots: CertificateStore
        if let caFile {
            guard let text = try? String(contentsOfFile: caFile, encoding: .utf8) else { return (false, "cannot read --ca \(caFile)") }
            let certificates = self.certificates(pem: text)
            guard !certificates.isEmpty else { return (false, "\(caFile) holds no PEM certificate") }
            roots = CertificateStore(certificates)
        } else if let pem {
            roots = CertificateStore(self.certificates(pem: pem))
        } else {
            roots = CertificateStore.systemTrustRoots
        }
        let ip = hostname.flatMap { IPAddressText.ipv4($0) != nil || IPAddressText.ipv6($0) != nil ? $0 : nil }
        let name = ip == nil ? hostname : nil
        var verifier = Verifier(rootCertificates: roots) {
            RFC5280Policy()
            ServerIdentityPolicy(serverHostname: name, serverIP: ip)
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates)) {
        case .validCertificate: return (true, "verified")
        case .couldNotValidate(let failures):
            let reasons = failures.map { self.shorten("\($0.policyFailureReason)") }
            return (false, "failed: " + (reasons.isEmpty ? "no chain to a trusted root" : Set(reasons).sorted().joined(separator: "; ")))
        }
    }
}
