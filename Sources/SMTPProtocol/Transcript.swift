/// The ordered exchanges of one SMTP session: what the client sent, each with
/// the reply it got. Live runs, captures and replays all produce one; every
/// judgement is made on it and never on a socket.
///
/// Everything in it is typed: client units keep their octets and their
/// parsed command, notes and ends are enums. Only reporters make text of it.
/// A transcript never holds a secret: SASL responses are kept as their
/// length only (``ClientUnit/withheld`` aside, which no report reads).
public struct Transcript: Sendable, Hashable, Codable {
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

    /// An empty transcript of a session between these two ends (`ip:port`).
    public init(client: String? = nil, server: String? = nil) {
        self.client = client
        self.server = server
        self.exchanges = []
        self.notes = []
    }

    public struct Exchange: Sendable, Hashable, Codable {
        /// What an exchange is, from what was sent and whether a reply was asked for.
        public enum Kind: String, Sendable, Hashable, Codable {
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
        public enum Role: String, Sendable, Hashable, Codable {
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

    public enum End: Sendable, Hashable, Codable {
        case closedByServer(at: Double)
        case closedByClient(at: Double)
        /// One side reset the connection (a server that closes with unread
        /// input resets it, RFC 1122 4.2.2.13).
        case reset(by: Note.Side, at: Double)
        /// Time ran out waiting for a reply; octets that came without CRLF.
        case timedOut(at: Double, unconsumed: [UInt8])
        case failed(Failure, at: Double)

        /// Why a session ended in failure.
        public enum Failure: Sendable, Hashable, Codable {
            /// The connection failed under the client (reset, an I/O error): its cause.
            case channel(String)
            case tlsHandshake(String)
            /// The client refused the server's certificate (strict verification).
            case certificateRefused(String)
            case writeFailed(String)
            /// A capture ends before the connection closes.
            case captureEnded
            /// A capture shows no traffic for longer than its flow time-out.
            case captureSilent(seconds: Int)
            /// The session grew past a bound the harness keeps (reply lines, octets).
            case limitExceeded(String)
            /// Plain text came where only TLS records may: the server left TLS.
            case plaintextAfterTLS(octets: Int, preview: [UInt8])
        }
    }

    /// An observation about a session or an exchange.
    public enum Note: Sendable, Hashable, Codable {
        public enum Side: String, Sendable, Hashable, Codable {
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
        /// Client octets that are not SMTP (binary, or a TLS ClientHello
        /// where a command was due): how many, their start, and the hello's
        /// contents when they are one.
        case clientNotSMTP(octets: Int, preview: [UInt8], hello: TLSClientHello?)
        /// The server's last octets had no CRLF.
        case unterminatedServerOctets(Int)
        /// Lines ended by a bare LF, read as line ends (captures only: live framing stays strict).
        case bareLineEnds(Side, count: Int)
        /// A replay stopped before the captured exchange at this index.
        case replayStopped(ReplayStop, exchange: Int)
    }

    /// Why a replay stopped.
    public enum ReplayStop: Sendable, Hashable, Codable {
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

    public enum StepNotSent: Sendable, Hashable, Codable {
        /// The session had ended before the step.
        case sessionEnded
        /// A body needs a 354 to DATA, which did not come.
        case dataNotAccepted
    }
}
