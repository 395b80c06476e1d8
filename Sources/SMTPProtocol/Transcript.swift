/// The ordered exchanges of one SMTP session: what the client sent, each with
/// the reply it got. Live runs and (later) captures both produce one; every
/// judgement is made on it and never on a socket.
///
/// A transcript never holds a secret: SASL responses are stored redacted,
/// as their length only.
public struct Transcript: Sendable, Hashable {
    public var client: String?
    public var server: String?
    public var exchanges: [Exchange]
    public var end: End?
    /// Observations about the session that belong to no one exchange.
    public var notes: [String]
    /// TLS as it was set up in this session, if it was.
    public var tls: TLSRecord?
    /// When the session began, in seconds since the epoch (captures), if known.
    public var startTime: Double?

    public init(client: String? = nil, server: String? = nil, exchanges: [Exchange] = [], end: End? = nil, notes: [String] = []) {
        self.client = client
        self.server = server
        self.exchanges = exchanges
        self.end = end
        self.notes = notes
    }

    public struct Exchange: Sendable, Hashable {
        public enum Kind: String, Sendable, Hashable {
            /// The greeting; nothing was sent.
            case banner
            case command
            /// A DATA message body and its terminator.
            case body
            /// A client's SASL response inside AUTH.
            case saslResponse
            /// Octets sent by a raw step.
            case raw
            /// A reply that came when no command was waiting for one.
            case unsolicited
        }

        public var kind: Kind
        /// The scenario step (0-based) this exchange belongs to.
        public var step: Int?
        public var sent: Sent?
        /// `nil` when no reply came (the connection closed, or time ran out).
        public var response: ServerResponse?
        /// Seconds from the start of the session.
        public var sentAt: Double?
        public var repliedAt: Double?
        /// Exchanges sent in one write share a group number.
        public var pipelineGroup: Int?
        /// Sent and answered inside TLS.
        public var encrypted = false
        /// What is uncertain about this exchange (data missing before it, say).
        public var notes: [String] = []

        /// The words of a note that says the capture lost octets before this exchange.
        public static let missingDataNote = "missing from the capture"

        /// The capture lost octets before this exchange: what follows cannot be paired with certainty.
        public var followsMissingData: Bool { self.notes.contains { $0.contains(Self.missingDataNote) } }

        public init(
            kind: Kind, step: Int? = nil, sent: Sent? = nil, response: ServerResponse? = nil, sentAt: Double? = nil,
            repliedAt: Double? = nil, pipelineGroup: Int? = nil
        ) {
            self.kind = kind
            self.step = step
            self.sent = sent
            self.response = response
            self.sentAt = sentAt
            self.repliedAt = repliedAt
            self.pipelineGroup = pipelineGroup
        }

        public var reply: SMTPReply? { self.response?.reply }
    }

    /// What the client sent, in printable form.
    public struct Sent: Sendable, Hashable, CustomStringConvertible {
        /// The octets escaped by ``Printable/escape(_:)`` without the final CRLF,
        /// or a redaction marker.
        public var text: String
        public var octets: Int
        public var redacted: Bool
        /// The octets behind a redaction, kept in memory only where a capture
        /// is replayed with `--auth-from-capture`. No report ever writes them.
        public var withheld: [UInt8]?

        public init(bytes: [UInt8]) {
            let body = bytes.count >= 2 && bytes.suffix(2) == [0x0D, 0x0A] ? Array(bytes.dropLast(2)) : bytes
            self.text = Printable.escape(body)
            self.octets = bytes.count
            self.redacted = false
        }

        /// Keeps only what may be shown: `prefix` (say `AUTH PLAIN`) and the length of the rest.
        public init(redacting bytes: [UInt8], visiblePrefix prefix: String = "") {
            let hidden = bytes.count - prefix.utf8.count - 2
            self.text = prefix + "<redacted \(max(hidden, 0)) octets>"
            self.octets = bytes.count
            self.redacted = true
        }

        public var description: String { self.text }
    }

    public enum End: Sendable, Hashable, CustomStringConvertible {
        case closedByServer(at: Double)
        case closedByClient(at: Double)
        case timedOut(waitingFor: String, at: Double, unconsumed: [UInt8])
        case failed(String, at: Double)

        public var description: String {
            switch self {
            case .closedByServer: "the server closed the connection"
            case .closedByClient: "the client closed the connection"
            case .timedOut(let what, _, let unconsumed):
                "timed out waiting for \(what)"
                    + (unconsumed.isEmpty
                        ? "" : "; \(unconsumed.count) octets held without CRLF: \(Printable.escape(unconsumed.prefix(200)))")
            case .failed(let message, _): message
            }
        }
    }
}

/// How TLS came up in a session and what the server presented.
public struct TLSRecord: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable {
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

/// The server's certificate as a report shows it.
public struct CertificateSummary: Sendable, Hashable, CustomStringConvertible {
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

    public var description: String {
        "subject \(self.subject); SANs \(self.subjectAlternativeNames.joined(separator: ", ")); issuer \(self.issuer); "
            + "valid \(self.notValidBefore) to \(self.notValidAfter); SHA-256 \(self.sha256); verification: \(self.verification)"
    }
}
