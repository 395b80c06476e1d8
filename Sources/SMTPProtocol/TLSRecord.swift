/// How TLS came up in a session and what the server presented.
public struct TLSRecord: Sendable, Hashable, Codable {
    public enum Mode: String, Sendable, Hashable, Codable {
        case starttls
        case implicit
    }

    public var mode: Mode
    /// Seconds from the start of the session.
    public var at: Double
    public var version: String?
    public var certificate: CertificateSummary?
    /// Plaintext the server sent after its 220 to STARTTLS and before the
    /// handshake, which the client dropped.
    public var droppedPlaintext: [UInt8]

    public init(mode: Mode, at: Double, version: String?, certificate: CertificateSummary?, droppedPlaintext: [UInt8] = []) {
        self.mode = mode
        self.at = at
        self.version = version
        self.certificate = certificate
        self.droppedPlaintext = droppedPlaintext
    }
}

/// What a TLS handshake showed.
public struct TLSOutcome: Sendable, Hashable, Codable {
    public var version: String?
    public var certificate: CertificateSummary?
    /// Plaintext received after the 220 to STARTTLS, dropped unread.
    public var droppedPlaintext: [UInt8]

    public init(version: String?, certificate: CertificateSummary?, droppedPlaintext: [UInt8]) {
        self.version = version
        self.certificate = certificate
        self.droppedPlaintext = droppedPlaintext
    }
}

/// The server's certificate as a report shows it.
public struct CertificateSummary: Sendable, Hashable, Codable {
    public var subject: String
    public var issuer: String
    public var subjectAlternativeNames: [String]
    public var notValidBefore: String
    public var notValidAfter: String
    /// SHA-256 of the DER certificate, colon-separated hex.
    public var sha256: String
    /// Whether the chain verified against the trust roots for the name asked for.
    public var verified: Bool
    /// `verified`, or why not.
    public var verification: String

    public init(
        subject: String, issuer: String, subjectAlternativeNames: [String], notValidBefore: String, notValidAfter: String, sha256: String,
        verified: Bool, verification: String
    ) {
        self.subject = subject
        self.issuer = issuer
        self.subjectAlternativeNames = subjectAlternativeNames
        self.notValidBefore = notValidBefore
        self.notValidAfter = notValidAfter
        self.sha256 = sha256
        self.verified = verified
        self.verification = verification
    }
}
