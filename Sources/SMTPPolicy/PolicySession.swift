import SMTPProtocol

/// One SMTP session as the policy runs it: a pure state machine from lines
/// to replies. The reference server carries out its ``Response``s on a socket;
/// the scenario runner feeds it a scenario's steps to learn what the policy
/// expects, step by step, without any I/O.
public struct PolicySession: Sendable {
    /// Deliberate defects, to prove the battery can fail.
    public struct Faults: OptionSet, Sendable, Hashable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Any client may relay.
        public static let openRelay = Faults(rawValue: 1 << 0)
        /// HELO/EHLO names are not checked.
        public static let noHeloChecks = Faults(rawValue: 1 << 1)
        /// AUTH accepts any password of a known user.
        public static let acceptAnyPassword = Faults(rawValue: 1 << 2)
        /// Commands pipelined behind STARTTLS in plaintext are answered inside
        /// TLS (the CVE-2011-0411 class of bug).
        public static let starttlsInjection = Faults(rawValue: 1 << 3)
        /// A bare LF or CR ends a line in message data, so `\n.\n` ends the
        /// message (SMTP smuggling, CVE-2023-51764 and its kin).
        public static let smuggling = Faults(rawValue: 1 << 4)
        /// No command line, recipient or size limits; VRFY and EXPN answer;
        /// commands after QUIT are answered.
        public static let laxProtocol = Faults(rawValue: 1 << 5)
        /// XCLIENT and PROXY headers are accepted but the policy judges the
        /// proxy's own address, not the client it names.
        public static let ignoreClientIdentity = Faults(rawValue: 1 << 6)

        public static let byName: [String: Faults] = [
            "open-relay": .openRelay, "no-helo-checks": .noHeloChecks, "accept-any-password": .acceptAnyPassword,
            "starttls-injection": .starttlsInjection, "smuggling": .smuggling, "lax-protocol": .laxProtocol,
            "ignore-client-identity": .ignoreClientIdentity,
        ]
    }

    /// One reply and, where a rule decided it, which.
    public struct Reply: Sendable, Hashable {
        public var reply: SMTPReply
        /// The rule whose refusal this is.
        public var rule: RuleID?
        /// A HELO rule broken here whose refusal the policy delays until RCPT.
        public var deferredRule: RuleID?

        public init(reply: SMTPReply, rule: RuleID? = nil, deferredRule: RuleID? = nil) {
            self.reply = reply
            self.rule = rule
            self.deferredRule = deferredRule
        }
    }

    /// What the connection offers: plaintext only, STARTTLS, or TLS from the start.
    public enum TLSAvailability: Sendable, Hashable {
        case none
        case starttls
        case implicit
    }

    public struct Response: Sendable {
        public var replies: [Reply] = []
        /// Close the connection after writing the replies.
        public var close = false
        /// Start the TLS handshake after writing the replies.
        public var startTLS = false
        /// The next octets are a BDAT chunk of this size, for ``receiveChunk(_:)``.
        public var readChunk: Int?
        /// A message accepted by this response.
        public var message: ReceivedMessage?
    }

    public enum Mode: Sendable, Hashable {
        case command
        case data
        case authPlain
        case authLoginUser
        case authLoginPassword(user: String)
        case authCRAMMD5(challenge: [UInt8])
        /// After a refused XOAUTH2 token: the client's empty line ends it (RFC 7628 3.2.3).
        case authXOAUTH2Error
        /// Inside a BDAT chunk: octets still to come, whether it is the last, and
        /// the refusal due once it is read (RFC 3030: a refused chunk is still read).
        case chunk(remaining: Int, size: Int, last: Bool, refusal: RuleID?)
    }

    public let oracle: PolicyOracle
    public let faults: Faults
    public private(set) var mode: Mode = .command
    public private(set) var errorCount = 0
    /// The client as the policy sees it: the socket's peer, or whom XCLIENT
    /// or a PROXY header speaks for.
    public private(set) var clientAddress: String?
    public private(set) var clientIsTrusted: Bool
    /// The peer may use XCLIENT (its own address, not an impersonated one).
    private let peerMayUseXCLIENT: Bool
    public let tlsAvailability: TLSAvailability
    public private(set) var tlsActive: Bool

    private var heloName: String?
    private var deferredRefusal: (rule: RuleID, reply: SMTPReply)?
    private var authenticatedUser: String?
    private var transaction: Transaction?
    private var body: [UInt8] = []
    private var bodyOctets = 0
    private var queueCounter = 0
    /// A BDAT message is being received.
    private var chunking = false
    /// The client sent ahead of time where it may not (before the greeting,
    /// or pipelined without EHLO's PIPELINING): refused at DATA.
    private var unauthorisedPipelining = false
    /// An EHLO reply of this session offered PIPELINING. As Postfix's
    /// `reject_unauth_pipelining` reads it, a later HELO or STARTTLS does not
    /// take that back: only a client never told is refused.
    private var pipeliningOffered = false

    /// The client spoke before the greeting (the server's greet pause caught it).
    public mutating func clientTalkedEarly() {
        if !self.faults.contains(.laxProtocol) { self.unauthorisedPipelining = true }
    }
    /// The last command and whether this session accepted it, for ``follow(_:)``.
    private var lastCommand: SMTPCommand?
    private var lastAccepted = false
    private var transactionBeforeLast = false

    private struct Transaction {
        var sender: String
        var recipients: [String] = []
        var attempted = 0
    }

    private var policy: Policy { self.oracle.policy }

    /// `peer`: the socket's own peer when `clientAddress` came from a PROXY header.
    public init(policy: Policy, clientAddress: String?, faults: Faults = [], tls: TLSAvailability = .none, peer: String? = nil) {
        self.oracle = PolicyOracle(policy: policy)
        self.faults = faults
        self.clientAddress = clientAddress
        self.clientIsTrusted = clientAddress.map(policy.isTrusted(address:)) ?? false
        self.peerMayUseXCLIENT =
            (peer ?? clientAddress).map { address in policy.xclientHosts.contains { $0.contains(address: address) } } ?? false
        self.tlsAvailability = tls
        self.tlsActive = tls == .implicit
    }

    /// The handshake after STARTTLS completed: everything learnt before it is
    /// forgotten (RFC 3207 4.2), HELO included.
    public mutating func tlsEstablished() {
        self.tlsActive = true
        self.heloName = nil
        self.deferredRefusal = nil
        self.authenticatedUser = nil
        self.transaction = nil
        self.mode = .command
    }

    /// TLS is required and not yet active.
    private var needsTLS: Bool { self.policy.tlsRequired && !self.tlsActive && self.policy.isEnabled(.authTLSRequired) }

    public var greeting: SMTPReply { SMTPReply(code: .serviceReady, lines: ["\(self.policy.serverName) ESMTP smtpcheck"]) }

    /// The EHLO reply: the server name and its extensions.
    public var ehloReply: SMTPReply {
        var lines = [self.policy.serverName, "PIPELINING", "SIZE \(self.policy.limits.messageSize)"]
        if self.tlsAvailability == .starttls && !self.tlsActive { lines.append("STARTTLS") }
        if !self.needsTLS { lines.append("AUTH " + self.mechanisms.joined(separator: " ")) }
        if self.peerMayUseXCLIENT { lines.append("XCLIENT NAME ADDR PROTO HELO LOGIN") }
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING"]
        return SMTPReply(code: .ok, lines: lines)
    }

    /// The SASL mechanisms offered: XOAUTH2 only when some user has a token.
    public var mechanisms: [String] {
        ["PLAIN", "LOGIN", "CRAM-MD5"] + (self.policy.authUsers.contains { $0.oauthToken != nil } ? ["XOAUTH2"] : [])
    }

    /// What the server says when the client stays silent too long.
    public mutating func idleTimeout() -> Response {
        var response = Response()
        response.replies.append(Reply(reply: self.oracle.refusal(.idleTimeout), rule: .idleTimeout))
        response.close = true
        return response
    }

    /// Feeds one line from the client; `followed`: another line was already
    /// waiting behind it, sent without waiting for this one's reply.
    public mutating func receive(_ line: LineFramer.Line, followed: Bool) -> Response {
        if followed, case .command = self.mode, !self.pipeliningOffered, !self.faults.contains(.laxProtocol) {
            self.unauthorisedPipelining = true
        }
        return self.receive(line)
    }

    /// Feeds one line from the client.
    public mutating func receive(_ line: LineFramer.Line) -> Response {
        var response: Response
        switch self.mode {
        case .data where self.faults.contains(.smuggling) && !line.findings.isDisjoint(with: [.bareCR, .bareLF]):
            return self.receiveSplitting(line)
        case .data:
            return self.receiveBody(line)
        case .chunk:
            return self.refuse(.commandSyntax, ["verb": "BDAT chunk-size [LAST]"])
        case .authPlain, .authLoginUser, .authLoginPassword, .authCRAMMD5, .authXOAUTH2Error:
            response = self.receiveSASL(line)
        case .command:
            response = self.receiveCommand(line)
            self.lastAccepted = response.replies.first?.reply.code.isPositive ?? false
        }
        let refused = response.replies.contains { !$0.reply.code.isPositive }
        if refused && !response.close {
            self.errorCount += 1
            if self.errorCount >= self.policy.limits.errorLimit && self.policy.isEnabled(.tooManyErrors) {
                response.replies.append(Reply(reply: self.oracle.refusal(.tooManyErrors), rule: .tooManyErrors))
                response.close = true
            }
        }
        return response
    }

    private func refuse(_ rule: RuleID, _ values: [String: String] = [:]) -> Response {
        var response = Response()
        response.replies.append(Reply(reply: self.oracle.refusal(rule, values), rule: rule))
        return response
    }

    private func accept(_ reply: SMTPReply, deferring rule: RuleID? = nil) -> Response {
        var response = Response()
        response.replies.append(Reply(reply: reply, deferredRule: rule))
        return response
    }

    private mutating func receiveCommand(_ line: LineFramer.Line) -> Response {
        if !line.findings.isDisjoint(with: [.bareCR, .bareLF]) { return self.refuse(.bareLineBreak) }
        let command = SMTPCommand(line: line.bytes)
        self.lastCommand = command
        self.transactionBeforeLast = self.transaction != nil
        let lax = self.faults.contains(.laxProtocol)
        if !lax && command.verb != .auth && (line.length > self.policy.limits.commandLineLength || line.findings.contains(.truncated)) {
            return self.refuse(.lineTooLong)
        }
        switch command.verb {
        case .helo, .ehlo:
            return self.hello(command)
        case .mail:
            return self.mail(command)
        case .rcpt:
            return self.rcpt(command)
        case .data:
            guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "DATA"]) }
            guard let transaction = self.transaction else { return self.refuse(.needRcpt) }
            guard !transaction.recipients.isEmpty else { return self.refuse(.noRecipients) }
            if self.unauthorisedPipelining && self.policy.isEnabled(.unauthPipelining) { return self.refuse(.unauthPipelining) }
            self.mode = .data
            self.body.removeAll()
            self.bodyOctets = 0
            return self.accept(AcceptedReplies.data)
        case .rset:
            guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "RSET"]) }
            self.transaction = nil
            return self.accept(AcceptedReplies.ok)
        case .noop:
            return self.accept(AcceptedReplies.ok)
        case .quit:
            var response = self.accept(AcceptedReplies.bye)
            response.close = !lax
            return response
        case .vrfy where lax, .expn where lax:
            return self.accept(SMTPReply(.cannotVerify, EnhancedStatusCode(2, 0, 0), command.argument))
        case .vrfy:
            return self.refuse(.vrfyDisabled)
        case .auth:
            return self.auth(command)
        case .starttls:
            guard self.tlsAvailability != .none else { return self.refuse(.tlsNotAvailable) }
            guard !self.tlsActive else { return self.refuse(.tlsAlreadyActive) }
            guard command.argument.isEmpty else { return self.refuse(.commandSyntax, ["verb": "STARTTLS"]) }
            var response = self.accept(AcceptedReplies.startTLS)
            response.startTLS = true
            return response
        case .xclient:
            return self.xclient(command)
        case .bdat:
            return self.bdat(command)
        case .expn, .help, nil:
            return self.refuse(.unknownCommand)
        }
    }

    /// XCLIENT (Postfix): an authorised proxy names the client it speaks for;
    /// the session starts again, greeting included, as that client's.
    private mutating func xclient(_ command: SMTPCommand) -> Response {
        guard self.peerMayUseXCLIENT else { return self.refuse(.xclientDenied) }
        guard self.transaction == nil else { return self.refuse(.authInTransaction) }
        var attributes: [String: String] = [:]
        for pair in command.argument.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return self.refuse(.commandSyntax, ["verb": "XCLIENT attribute=value ..."]) }
            attributes[parts[0].uppercased()] = String(parts[1])
        }
        guard !attributes.isEmpty else { return self.refuse(.commandSyntax, ["verb": "XCLIENT attribute=value ..."]) }
        if let address = attributes["ADDR"], !self.faults.contains(.ignoreClientIdentity) {
            let plain = address.hasPrefix("IPV6:") || address.hasPrefix("IPv6:") ? String(address.dropFirst(5)) : address
            guard plain == "[UNAVAILABLE]" || IPAddressText.ipv4(plain) != nil || IPAddressText.ipv6(plain) != nil else {
                return self.refuse(.commandSyntax, ["verb": "XCLIENT ADDR=address"])
            }
            self.clientAddress = plain == "[UNAVAILABLE]" ? nil : plain
            self.clientIsTrusted = self.clientAddress.map(self.policy.isTrusted(address:)) ?? false
        }
        self.heloName = attributes["HELO"].flatMap { $0 == "[UNAVAILABLE]" ? nil : $0 }
        self.deferredRefusal = nil
        self.pipeliningOffered = false  // as after a new connection
        self.authenticatedUser = attributes["LOGIN"].flatMap { $0 == "[UNAVAILABLE]" ? nil : $0 }
        return self.accept(self.greeting)
    }

    private mutating func hello(_ command: SMTPCommand) -> Response {
        let verb = command.verb == .ehlo ? "EHLO" : "HELO"
        let name = command.argument.trimmingSpaces()
        // A refused HELO/EHLO leaves the session as it was (RFC 5321 4.1.4:
        // "MUST stay in the same state"), so an earlier greeting still holds.
        guard !name.isEmpty else { return self.refuse(.heloSyntax, ["verb": verb]) }
        let rule = self.faults.contains(.noHeloChecks) ? nil : self.oracle.heloRule(for: name)
        if let rule, self.policy.timing(of: rule) == .atCommand { return self.refuse(rule, ["helo": name]) }
        // An accepted one resets the session (RFC 5321 4.1.4).
        self.heloName = nil
        self.deferredRefusal = nil
        self.transaction = nil
        if command.verb == .ehlo { self.pipeliningOffered = true }
        let reply = command.verb == .ehlo ? self.ehloReply : SMTPReply(code: .ok, lines: [self.policy.serverName])
        if let rule {
            let values = ["helo": name]
            self.heloName = name
            self.deferredRefusal = (rule, self.oracle.refusal(rule, values))
            return self.accept(reply, deferring: rule)
        }
        self.heloName = name
        return self.accept(reply)
    }

    private mutating func mail(_ command: SMTPCommand) -> Response {
        guard self.heloName != nil else { return self.refuse(.heloRequired) }
        guard !self.needsTLS else { return self.refuse(.authTLSRequired) }
        guard self.transaction == nil else { return self.refuse(.nestedMail) }
        switch EnvelopeArgument.parseMail(command.argument) {
        case .failure(.missingKeyword):
            return self.refuse(.mailSyntax)
        case .failure(.badPath):
            return self.refuse(.badSenderAddress)
        case .failure(.badParameter(let text)):
            return self.refuse(.mailBadParameter, ["param": text])
        case .success(let (path, parameters)):
            for parameter in parameters {
                switch parameter.keyword.uppercased() {
                case "SIZE":
                    guard let text = parameter.value, let size = Int(text), size >= 0 else {
                        return self.refuse(.mailBadParameter, ["param": parameter.description])
                    }
                    if size > self.policy.limits.messageSize && !self.faults.contains(.laxProtocol) { return self.refuse(.mailTooBig) }
                case "BODY":
                    guard let value = parameter.value?.uppercased(), value == "7BIT" || value == "8BITMIME" else {
                        return self.refuse(.mailBadParameter, ["param": parameter.description])
                    }
                case "AUTH":
                    break
                default:
                    return self.refuse(.mailBadParameter, ["param": parameter.description])
                }
            }
            self.transaction = Transaction(sender: path.map { $0.mailbox.description } ?? "")
            return self.accept(AcceptedReplies.mail)
        }
    }

    private mutating func rcpt(_ command: SMTPCommand) -> Response {
        guard self.transaction != nil else { return self.refuse(.needMail) }
        let parsed = EnvelopeArgument.parseRcpt(command.argument)
        if case .failure(.missingKeyword) = parsed { return self.refuse(.rcptSyntax) }
        let written = Self.addressText(command.argument)
        // What the relay check sees (nil for `<Postmaster>`, which every
        // server takes), and the address as replies name it.
        let recipient: PolicyOracle.Recipient?
        var address = written
        switch self.policy.addressSyntax {
        case .postfix:
            guard let reading = PolicyOracle.Recipient(postfixReading: written, policy: self.policy) else {
                return self.refuse(.badRecipientAddress)
            }
            recipient = reading
            address = reading.displayed ?? written
        case .strict:
            guard case .success(let (path, _)) = parsed else { return self.refuse(.badRecipientAddress) }
            recipient = PolicyOracle.Recipient(path, policy: self.policy)
        }
        if let deferred = self.deferredRefusal {
            var response = Response()
            response.replies.append(Reply(reply: deferred.reply, rule: deferred.rule))
            return response
        }
        if (self.transaction?.recipients.count ?? 0) >= self.policy.limits.maxRecipients && !self.faults.contains(.laxProtocol) {
            return self.refuse(.tooManyRecipients)
        }
        let mayRelay = self.clientIsTrusted || self.authenticatedUser != nil || self.faults.contains(.openRelay)
        if let recipient, let rule = self.oracle.recipientRule(for: recipient, mayRelay: mayRelay) {
            return self.refuse(rule, ["rcpt": address])
        }
        self.transaction?.recipients.append(address)
        return self.accept(AcceptedReplies.rcpt)
    }

    /// The recipient as written between the angle brackets, for `{rcpt}`.
    static func addressText(_ argument: String) -> String {
        guard let open = argument.firstIndex(of: "<") else { return argument }
        let rest = argument[argument.index(after: open)...]
        guard let close = rest.lastIndex(of: ">") else { return String(rest) }
        return String(rest[..<close])
    }

    /// BDAT size [LAST] (RFC 3030): the chunk that follows is read whatever
    /// the verdict, which comes once it is in.
    private mutating func bdat(_ command: SMTPCommand) -> Response {
        let parts = command.argument.split(separator: " ")
        guard let first = parts.first, let size = Int(first), size >= 0, parts.count <= 2,
            parts.count == 1 || parts[1].uppercased() == "LAST"
        else { return self.refuse(.commandSyntax, ["verb": "BDAT chunk-size [LAST]"]) }
        let last = parts.count == 2
        var refusal: RuleID?
        if self.transaction == nil {
            refusal = .needMail
        } else if self.transaction?.recipients.isEmpty == true {
            refusal = .noRecipients
        }
        if !self.chunking {
            self.body.removeAll()
            self.bodyOctets = 0
            self.chunking = true
        }
        self.mode = .chunk(remaining: size, size: size, last: last, refusal: refusal)
        var response = Response()
        response.readChunk = size
        if size == 0 { return self.receiveChunk([]) }
        return response
    }

    /// Octets of the BDAT chunk in progress.
    public mutating func receiveChunk(_ bytes: [UInt8]) -> Response {
        guard case .chunk(let remaining, let size, let last, let refusal) = self.mode else { return Response() }
        let left = remaining - bytes.count
        if refusal == nil {
            self.bodyOctets += bytes.count
            if self.bodyOctets <= self.policy.limits.messageSize || self.faults.contains(.smuggling) { self.body += bytes }
        }
        guard left <= 0 else {
            self.mode = .chunk(remaining: left, size: size, last: last, refusal: refusal)
            return Response()
        }
        self.mode = .command
        if let refusal {
            self.chunking = false
            self.transaction = last ? nil : self.transaction
            return self.refuse(refusal)
        }
        if self.faults.contains(.smuggling) && last {
            // A server that turns BDAT into DATA reads the chunk as DATA lines,
            // so an end-of-data line inside it ends the message early.
            let chunk = self.body
            self.body.removeAll()
            self.bodyOctets = 0
            self.chunking = false
            self.mode = .data
            var combined = self.receiveSplitting(LineFramer.Line(bytes: chunk))
            if self.mode == .data { combined.replies += self.receiveBody(LineFramer.Line(bytes: [UInt8(ascii: ".")])).replies }
            return combined
        }
        guard last else { return self.accept(SMTPReply(.ok, EnhancedStatusCode(2, 0, 0), "Ok: \(size) bytes")) }
        self.chunking = false
        self.mode = .data
        return self.receiveBody(LineFramer.Line(bytes: [UInt8(ascii: ".")]), chunked: true)
    }

    /// What a server that ends lines at a bare CR or LF in message data does:
    /// the pieces are lines, `.` alone ends the message, and what follows is
    /// read as commands (the smuggled transaction).
    private mutating func receiveSplitting(_ line: LineFramer.Line) -> Response {
        var pieces: [[UInt8]] = [[]]
        var previousCR = false
        for byte in line.bytes {
            if byte == 0x0A && previousCR {
                previousCR = false
                continue
            }
            previousCR = byte == 0x0D
            if byte == 0x0D || byte == 0x0A { pieces.append([]) } else { pieces[pieces.count - 1].append(byte) }
        }
        var combined = Response()
        for piece in pieces {
            let response = self.receive(LineFramer.Line(bytes: piece))
            combined.replies += response.replies
            combined.message = response.message ?? combined.message
            if response.close {
                combined.close = true
                break
            }
        }
        return combined
    }

    /// `chunked`: the end of a BDAT message, acknowledged with its size as Postfix does.
    private mutating func receiveBody(_ line: LineFramer.Line, chunked: Bool = false) -> Response {
        guard let stripped = DotStuffing.decodeLine(line.bytes) else {
            self.mode = .command
            let transaction = self.transaction
            self.transaction = nil
            if self.bodyOctets > self.policy.limits.messageSize {
                self.errorCount += 1
                return self.refuse(.messageTooBig)
            }
            self.queueCounter += 1
            let queueID = Self.queueID(self.queueCounter)
            var response = self.accept(AcceptedReplies.queued(queueID, octets: chunked ? self.bodyOctets : nil))
            response.message = ReceivedMessage(
                queueID: queueID, sender: transaction?.sender ?? "", recipients: transaction?.recipients ?? [], data: self.body,
                heloName: self.heloName, clientAddress: self.clientAddress, authenticatedUser: self.authenticatedUser)
            self.body.removeAll()
            return response
        }
        self.bodyOctets += stripped.count + 2
        if self.bodyOctets <= self.policy.limits.messageSize {
            self.body += stripped
            self.body += [0x0D, 0x0A]
        }
        return Response()
    }

    static func queueID(_ counter: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let random = String(UInt32.random(in: 0x1000_0000...0xFFFF_FFFF, using: &generator), radix: 16, uppercase: true)
        let suffix = String(counter % 256, radix: 16, uppercase: true)
        return random + (suffix.count == 1 ? "0" + suffix : suffix)
    }

    private mutating func auth(_ command: SMTPCommand) -> Response {
        guard self.heloName != nil else { return self.refuse(.heloRequired) }
        guard !self.needsTLS else { return self.refuse(.authTLSRequired) }
        guard self.authenticatedUser == nil else { return self.refuse(.authAlready) }
        guard self.transaction == nil else { return self.refuse(.authInTransaction) }
        let parts = command.argument.split(separator: " ", omittingEmptySubsequences: true)
        guard let mechanism = parts.first?.uppercased(), parts.count <= 2 else { return self.refuse(.authMechanism) }
        let initial = parts.count == 2 ? String(parts[1]) : nil
        switch mechanism {
        case "PLAIN":
            guard let initial else {
                self.mode = .authPlain
                return self.accept(SMTPReply(code: .authContinue, lines: [""]))
            }
            return self.finishPlain(initial)
        case "LOGIN":
            guard let initial else {
                self.mode = .authLoginUser
                return self.accept(SMTPReply(code: .authContinue, lines: [SASL.base64("Username:".utf8)]))
            }
            return self.loginUser(initial)
        case "XOAUTH2" where self.mechanisms.contains("XOAUTH2"):
            guard let initial else { return self.refuse(.authBadEncoding) }
            return self.finishXOAUTH2(initial)
        case "CRAM-MD5":
            guard initial == nil else { return self.refuse(.authBadEncoding) }
            self.queueCounter += 1
            let challenge = Array("<\(Self.queueID(self.queueCounter)).\(self.queueCounter)@\(self.policy.serverName)>".utf8)
            self.mode = .authCRAMMD5(challenge: challenge)
            return self.accept(SMTPReply(code: .authContinue, lines: [SASL.base64(challenge)]))
        default:
            return self.refuse(.authMechanism)
        }
    }

    private mutating func receiveSASL(_ line: LineFramer.Line) -> Response {
        let mode = self.mode
        self.mode = .command
        let text = String(decoding: line.bytes, as: UTF8.self)
        if text == "*" { return self.refuse(.authCancelled) }
        switch mode {
        case .authPlain: return self.finishPlain(text)
        case .authLoginUser: return self.loginUser(text)
        case .authLoginPassword(let user):
            guard let password = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
            return self.finish(user: user, password: String(decoding: password, as: UTF8.self))
        case .authCRAMMD5(let challenge):
            guard let decoded = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
            let parts = decoded.split(separator: 0x20, maxSplits: 1)
            guard parts.count == 2 else { return self.refuse(.authFailed) }
            let user = String(decoding: parts[0], as: UTF8.self)
            let digest = String(decoding: parts[1], as: UTF8.self).lowercased()
            let password = self.policy.authUsers.first { $0.name == user }?.password
            let matches = password.map { SASL.cramMD5Digest(password: $0, challenge: challenge) == digest } ?? false
            return self.finishVerified(user: user, matches: matches)
        case .authXOAUTH2Error:
            return self.refuse(.authFailed)
        case .command, .data, .chunk: return self.refuse(.unknownCommand)
        }
    }

    private mutating func loginUser(_ text: String) -> Response {
        guard let user = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        self.mode = .authLoginPassword(user: String(decoding: user, as: UTF8.self))
        return self.accept(SMTPReply(code: .authContinue, lines: [SASL.base64("Password:".utf8)]))
    }

    private mutating func finishPlain(_ text: String) -> Response {
        guard let bytes = text == "=" ? [] : SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        guard let credentials = SASL.parsePlain(bytes) else { return self.refuse(.authFailed) }
        return self.finish(user: credentials.user, password: credentials.password)
    }

    /// `user=U ^A auth=Bearer T ^A ^A`; a refused token gets a 334 error
    /// description first, then 535 after the client's empty line.
    private mutating func finishXOAUTH2(_ text: String) -> Response {
        guard let bytes = SASL.decodeBase64(text) else { return self.refuse(.authBadEncoding) }
        var user: String?
        var token: String?
        for field in bytes.split(separator: 0x01) {
            let text = String(decoding: field, as: UTF8.self)
            if text.hasPrefix("user=") { user = String(text.dropFirst(5)) }
            if text.hasPrefix("auth=Bearer ") { token = String(text.dropFirst(12)) }
        }
        guard let user, let token else { return self.refuse(.authFailed) }
        let known = self.policy.authUsers.first { $0.name == user }
        if let expected = known?.oauthToken, expected == token || self.faults.contains(.acceptAnyPassword) {
            self.authenticatedUser = user
            return self.accept(AcceptedReplies.authenticated)
        }
        self.mode = .authXOAUTH2Error
        let error = SASL.base64(Array("{\"status\":\"401\",\"schemes\":\"Bearer\"}".utf8))
        return self.accept(SMTPReply(code: .authContinue, lines: [error]))
    }

    private mutating func finish(user: String, password: String) -> Response {
        self.finishVerified(user: user, matches: self.oracle.verify(user: user, password: password))
    }

    private mutating func finishVerified(user: String, matches: Bool) -> Response {
        let known = self.policy.authUsers.contains { $0.name == user }
        if matches || (known && self.faults.contains(.acceptAnyPassword)) {
            self.authenticatedUser = user
            return self.accept(AcceptedReplies.authenticated)
        }
        return self.refuse(.authFailed)
    }
}

/// A message the reference server accepted. It is kept, never relayed.
public struct ReceivedMessage: Sendable, Hashable {
    public var queueID: String
    public var sender: String
    public var recipients: [String]
    public var data: [UInt8]
    public var heloName: String?
    public var clientAddress: String?
    public var authenticatedUser: String?
}

extension String {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while slice.first == " " || slice.first == "\t" { slice = slice.dropFirst() }
        while slice.last == " " || slice.last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}

extension PolicySession {
    /// Brings the session in line with what a recorded server answered to the
    /// last command, so that the next one is judged from where the real
    /// session stood (the capture auditor). Only state the reply decides moves.
    public mutating func follow(_ actual: SMTPReply) {
        guard let command = self.lastCommand else { return }
        let positive = actual.code.isPositive
        switch command.verb {
        case .helo, .ehlo:
            if positive {
                if self.heloName == nil { self.heloName = command.argument.trimmingSpaces() }
            } else if self.lastAccepted {
                // Refused where the policy accepts: the server stayed where it
                // was (RFC 5321 4.1.4), which the simulation no longer knows;
                // no greeting is assumed.
                self.heloName = nil
                self.deferredRefusal = nil
                self.transaction = nil
            }
        case .mail:
            if positive && self.transaction == nil {
                self.transaction = Transaction(sender: "")
            } else if !positive && !self.transactionBeforeLast {
                self.transaction = nil
            }
        case .rcpt:
            if positive && !self.lastAccepted {
                self.transaction?.recipients.append(Self.addressText(command.argument))
            } else if !positive && self.lastAccepted, self.transaction?.recipients.isEmpty == false {
                self.transaction?.recipients.removeLast()
            }
        case .data:
            self.mode = actual.code == .startMailInput ? .data : .command
        case .rset:
            if positive { self.transaction = nil }
        default:
            break
        }
    }

    /// The recorded outcome of an AUTH exchange whose credentials are not known.
    public mutating func followAuthentication(succeeded: Bool) {
        self.mode = .command
        if succeeded && self.authenticatedUser == nil { self.authenticatedUser = "(as recorded)" }
    }

    /// The end of a message body whose octets were not kept (a capture).
    public mutating func endMessage(octets: Int) -> Response {
        self.mode = .command
        self.transaction = nil
        if octets > self.policy.limits.messageSize { return self.refuse(.messageTooBig) }
        self.queueCounter += 1
        return self.accept(AcceptedReplies.queued(Self.queueID(self.queueCounter)))
    }
}
