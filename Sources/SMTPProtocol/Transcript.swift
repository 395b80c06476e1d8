/// The ordered exchanges of one SMTP session: what the client sent, each with
/// the reply it got. Live runs, captures and replays all produce one; every
/// judgement is made on it and never on a socket.
///
/// Everything in it is typed: client units keep their octets and their
/// parsed command, notes and ends are enums. Only reporters make text of it.
/// A transcript never holds a secret: SASL responses are kept as their
/// length only (``ClientUnit/withheld`` aside, which no report reads).
public struct Transcript: Sendable, Hashable {
    public var client: String?
    public var server: String?
    public var exchanges: [Exchange]
    public var end: End?
    /// Observations about the session that belong to no one exchange.
    public var notes: [Note]
    /// TLS as it was set up in this session, if it was.
    public var tls: TLSRecord?
    /// When the session began, in seconds since the epoch (captures), if known.
    public var startTime: Double?

    public init(client: String? = nil, server: String? = nil, exchanges: [Exchange] = [], end: End? = nil, notes: [Note] = []) {
        self.client = client
        self.server = server
        self.exchanges = exchanges
        self.end = end
        self.notes = notes
    }

    public struct Exchange: Sendable, Hashable {
        /// What an exchange is, from what was sent and whether a reply was asked for.
        public enum Kind: String, Sendable, Hashable {
            /// The greeting; nothing was sent.
            case banner
            case command
            /// A DATA message body and its terminator.
            case body
            /// A client's SASL response inside AUTH.
            case saslResponse
            /// Octets sent as they are (a raw step), or a further reply to them.
            case raw
            /// A reply that came when no command was waiting for one.
            case unsolicited
        }

        /// Whose turn the exchange was.
        public enum Role: String, Sendable, Hashable {
            case greeting
            /// The reply to `sent`, or (with no `sent`) a further reply to the unit before.
            case answer
            /// A reply that came when no command was waiting for one.
            case unsolicited
        }

        public var role: Role
        /// The scenario step (0-based) this exchange belongs to.
        public var step: Int?
        public var sent: ClientUnit?
        /// `nil` when no reply came (the connection closed, or time ran out).
        public var response: ServerResponse?
        /// Seconds from the start of the session.
        public var sentAt: Double?
        public var repliedAt: Double?
        /// Units sent together, without waiting for a reply between them,
        /// share a group number (RFC 2920 pipelining).
        public var pipelineGroup: Int?
        /// Sent and answered inside TLS.
        public var encrypted = false
        /// What is uncertain about this exchange (octets missing before it, say).
        public var notes: [Note] = []

        public init(
            role: Role, step: Int? = nil, sent: ClientUnit? = nil, response: ServerResponse? = nil, sentAt: Double? = nil,
            repliedAt: Double? = nil, pipelineGroup: Int? = nil
        ) {
            self.role = role
            self.step = step
            self.sent = sent
            self.response = response
            self.sentAt = sentAt
            self.repliedAt = repliedAt
            self.pipelineGroup = pipelineGroup
        }

        public var kind: Kind {
            switch self.role {
            case .greeting: return .banner
            case .unsolicited: return .unsolicited
            case .answer:
                guard let sent = self.sent else { return .raw }
                switch sent.payload {
                case .command, .bdatChunk: return .command
                case .messageBody: return .body
                case .saslResponse: return sent.command == nil ? .saslResponse : .command
                case .raw: return .raw
                }
            }
        }

        public var reply: SMTPReply? { self.response?.reply }

        /// The command sent, when this exchange answers one.
        public var command: SMTPCommand? { self.sent?.command }

        /// The capture lost octets before this exchange: what follows cannot be paired with certainty.
        public var followsMissingData: Bool {
            self.notes.contains { if case .missingData = $0 { true } else { false } }
        }
    }

    public enum End: Sendable, Hashable {
        case closedByServer(at: Double)
        case closedByClient(at: Double)
        /// Time ran out waiting for a reply; octets that came without CRLF.
        case timedOut(at: Double, unconsumed: [UInt8])
        case failed(Failure, at: Double)

        /// Why a session ended in failure.
        public enum Failure: Sendable, Hashable {
            /// The connection failed under the client (reset, an I/O error): its cause.
            case channel(String)
            case tlsHandshake(String)
            case writeFailed(String)
            case connectionReset
            /// A capture ends before the connection closes.
            case captureEnded
            /// A capture shows no traffic for longer than its flow time-out.
            case captureSilent(seconds: Int)
            /// The session grew past a bound the harness keeps (reply lines, octets).
            case limitExceeded(String)
        }
    }

    /// An observation about a session or an exchange.
    public enum Note: Sendable, Hashable {
        public enum Side: String, Sendable, Hashable {
            case client
            case server
        }

        /// The capture lost `octets` of one side before this point.
        case missingData(Side, octets: Int)
        /// Octets of one side's stream arrived twice with different contents (the first copy was kept).
        case conflictingOverlap(Side, offset: Int64, octets: Int)
        /// The capture starts after the connection was opened.
        case noHandshake
        /// The client sent plaintext behind STARTTLS, in the segment of the command or before the 220.
        case plaintextBehindSTARTTLS(octets: Int, preview: [UInt8])
        /// The server sent plaintext after its 220 to STARTTLS; the client dropped it.
        case serverPlaintextAfterSTARTTLS(octets: Int, preview: [UInt8])
        /// A PROXY protocol header named the client before the session.
        case proxyHeader(version: Int, client: String?, octets: Int)
        /// The server closed with octets that no CRLF ended.
        case closedWithUnterminatedOctets([UInt8])
        /// The server had closed when the client wrote these octets.
        case serverClosedBeforeWrite(octets: Int)
        /// A scenario step was not sent.
        case stepNotSent(step: Int, because: StepNotSent)
        /// The session ended inside a message body.
        case endedInsideMessage(octets: Int)
        /// After STARTTLS (or from the first octet) the rest is encrypted: octets not readable.
        case encrypted(implicit: Bool, client: Int, server: Int)
        /// A client line longer than the reader keeps, with no CRLF.
        case unterminatedClientLine(octets: Int)
        /// The server's last octets had no CRLF.
        case unterminatedServerOctets(Int)
        /// Lines ended by a bare LF, read as line ends (captures only: live framing stays strict).
        case bareLineEnds(Side, count: Int)
        /// A replay stopped before the captured exchange at this index.
        case replayStopped(ReplayStop, exchange: Int)
    }

    /// Why a replay stopped.
    public enum ReplayStop: Sendable, Hashable {
        /// A SASL response, replayed only when asked to.
        case secretNotReplayed
        /// CRAM-MD5 answers a one-time challenge: it cannot be replayed.
        case oneTimeChallenge
        /// STARTTLS was accepted: the rest of the captured session is encrypted.
        case startTLS
        /// The server refused the DATA whose body came next.
        case dataRefused
        /// The server stopped answering.
        case serverStopped
    }

    public enum StepNotSent: Sendable, Hashable {
        /// The session had ended before the step.
        case sessionEnded
        /// A body needs a 354 to DATA, which did not come.
        case dataNotAccepted
    }
}

/// One unit the client sent: a command line, a message body, a BDAT chunk,
/// a SASL response or raw octets. It keeps the octets that may be shown and
/// the command parsed from them; the octets of bodies, chunks and secrets
/// are only counted.
public struct ClientUnit: Sendable, Hashable {
    public enum Payload: Sendable, Hashable {
        /// A command line.
        case command
        /// A message body after 354, terminator included.
        case messageBody
        /// A BDAT command line and the chunk of `size` octets after it.
        case bdatChunk(size: Int)
        /// A SASL response (or AUTH with an initial response): redacted.
        case saslResponse(mechanism: String?)
        /// Octets sent exactly as they are.
        case raw
    }

    /// How the client ended the line.
    public enum LineEnd: Sendable, Hashable {
        case crlf
        /// A bare LF (read so in captures only).
        case lf
        /// No line end (raw octets, a body).
        case none
    }

    public var payload: Payload
    /// The octets that may be shown, without the line end: the command line;
    /// for AUTH with an initial response `AUTH MECHANISM`; `*` for a
    /// cancelled SASL exchange; nothing for a body or a secret; the raw octets.
    public var line: [UInt8]
    /// The command read from `line`, for commands, BDAT and AUTH.
    public var command: SMTPCommand?
    /// Every octet on the wire, line end (and chunk) included.
    public var octets: Int
    public var lineEnd: LineEnd
    /// The octets behind a redaction, kept in memory only where a capture is
    /// replayed with `--auth-from-capture` or matched against a scenario.
    /// No report ever reads them.
    public var withheld: [UInt8]?

    public init(payload: Payload, line: [UInt8], command: SMTPCommand?, octets: Int, lineEnd: LineEnd, withheld: [UInt8]? = nil) {
        self.payload = payload
        self.line = line
        self.command = command
        self.octets = octets
        self.lineEnd = lineEnd
        self.withheld = withheld
    }

    /// A command line (without its line end).
    public static func command(_ line: [UInt8], lineEnd: LineEnd = .crlf) -> ClientUnit {
        ClientUnit(
            payload: .command, line: line, command: SMTPCommand(line: line), octets: line.count + lineEnd.octets, lineEnd: lineEnd)
    }

    /// A message body of `octets`, dot-stuffing and terminator included.
    public static func messageBody(octets: Int) -> ClientUnit {
        ClientUnit(payload: .messageBody, line: [], command: nil, octets: octets, lineEnd: .none)
    }

    /// `BDAT size [LAST]` and its chunk.
    public static func bdat(_ line: [UInt8], chunk: Int, lineEnd: LineEnd = .crlf) -> ClientUnit {
        ClientUnit(
            payload: .bdatChunk(size: chunk), line: line, command: SMTPCommand(line: line), octets: line.count + lineEnd.octets + chunk,
            lineEnd: lineEnd)
    }

    /// A SASL response line of `octets` (line end included), redacted; `*` (a cancel) is shown.
    public static func saslResponse(_ bytes: [UInt8], mechanism: String?, lineEnd: LineEnd = .crlf, keep: Bool = false) -> ClientUnit {
        if bytes == [UInt8(ascii: "*")] {
            return ClientUnit(
                payload: .saslResponse(mechanism: mechanism), line: bytes, command: nil, octets: bytes.count + lineEnd.octets,
                lineEnd: lineEnd)
        }
        return ClientUnit(
            payload: .saslResponse(mechanism: mechanism), line: [], command: nil, octets: bytes.count + lineEnd.octets, lineEnd: lineEnd,
            withheld: keep ? bytes : nil)
    }

    /// `AUTH MECHANISM initial-response`, the response redacted.
    public static func auth(mechanism: String, verb: String = "AUTH", _ bytes: [UInt8], lineEnd: LineEnd = .crlf, keep: Bool = false)
        -> ClientUnit
    {
        let visible = Array("\(verb) \(mechanism)".utf8)
        return ClientUnit(
            payload: .saslResponse(mechanism: mechanism.uppercased()), line: visible, command: SMTPCommand(line: visible),
            octets: bytes.count + lineEnd.octets, lineEnd: lineEnd, withheld: keep ? bytes : nil)
    }

    /// Octets exactly as sent.
    public static func raw(_ bytes: [UInt8]) -> ClientUnit {
        ClientUnit(payload: .raw, line: bytes, command: nil, octets: bytes.count, lineEnd: .none)
    }

    /// Whether octets are hidden (a SASL response or an initial response).
    public var isRedacted: Bool {
        if case .saslResponse = self.payload { return self.octets > self.line.count + self.lineEnd.octets }
        return false
    }

    /// Octets the redaction hides.
    public var redactedOctets: Int {
        guard self.isRedacted else { return 0 }
        let shown = self.command == nil ? 0 : self.line.count + 1
        return max(self.octets - shown - self.lineEnd.octets, 0)
    }

    /// What the client would send again: the line and its end, or the raw
    /// octets. Bodies, chunks and redacted units have no such octets.
    public var replayableOctets: [UInt8]? {
        switch self.payload {
        case .command: return self.line + self.lineEnd.bytes
        case .raw: return self.line
        case .saslResponse: return self.isRedacted ? self.withheld.map { $0 + self.lineEnd.bytes } : self.line + self.lineEnd.bytes
        case .messageBody, .bdatChunk: return nil
        }
    }
}

extension ClientUnit.LineEnd {
    public var octets: Int { self.bytes.count }

    public var bytes: [UInt8] {
        switch self {
        case .crlf: [0x0D, 0x0A]
        case .lf: [0x0A]
        case .none: []
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

/// What a TLS handshake showed.
public struct TLSOutcome: Sendable, Hashable {
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
public struct CertificateSummary: Sendable, Hashable {
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
