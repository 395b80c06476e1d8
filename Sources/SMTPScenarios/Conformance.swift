import SMTPPolicy
import SMTPProtocol

/// What the policy demanded of one reply, judged in lock step with a
/// recorded session.
public struct Judgement: Sendable, Hashable {
    /// The exchange's index in the transcript.
    public var exchange: Int
    public var step: Int?
    public var demand: Demand
    public var outcome: Outcome

    public enum Demand: Sendable, Hashable {
        /// The policy refuses under the rule with this reply.
        case refusal(RuleID, SMTPReply)
        /// The policy accepts with this reply; a HELO-name rule broken here
        /// may have its refusal pending until RCPT.
        case acceptance(SMTPReply, deferred: RuleID?)
        /// The policy closed the session at the command before with this
        /// 421, which must answer this one.
        case closing(SMTPReply)
        /// Whatever the server answers keeps the policy.
        case free(Freedom)
    }

    /// Why any answer keeps the policy.
    public enum Freedom: Sendable, Hashable {
        /// The policy switches off the rule that would decide.
        case waived(RuleID)
        /// AUTH: the credentials are not the judge's to check.
        case authentication
        /// The policy's session reads the unit as something else and gives no answer of its own.
        case unread
    }

    public enum Outcome: Sendable, Hashable {
        case met
        /// Met through an allowance of the RFCs or the policy's timing.
        case allowed(Allowance)
        /// The reply breaks the demand.
        case broken(Mismatch?)
    }

    /// The rule this judgement is about, if any.
    public var rule: RuleID? {
        switch self.demand {
        case .refusal(let rule, _): rule
        case .acceptance(_, let deferred): deferred
        case .closing: .tooManyErrors
        case .free(.waived(let rule)): rule
        case .free: nil
        }
    }

    public var isBroken: Bool { if case .broken = self.outcome { true } else { false } }
}

/// The answers the RFCs (or the policy's timing) allow besides the
/// policy's own. Each is decided in one place: ``Allowances``.
public enum Allowance: Sendable, Hashable {
    /// A HELO-name rule the policy lets wait until RCPT, refused at the
    /// HELO itself (POLICY: timing; RFC 5321 4.1.4 keeps the session as it was).
    case refusedEarlier(RuleID)
    /// The 421 that ends the session came at the next command
    /// (RFC 5321 3.8: a server that must close answers the next command with 421).
    case closingAtNextCommand
    /// The 421 that ends the session came in place of the last reply before it.
    case closingInPlace
    /// A client that talked before the greeting, judged by a server with no
    /// greeting pause: whether it saw the early octets is up to timing.
    case earlyTalkUpToTiming
    /// Portable: at the error limit, a refusal and a close instead of the 421.
    case closedAfterRefusal
    /// Portable: VRFY or EXPN answered 252, which confirms nothing (RFC 5321 3.5.3, 7.3).
    case nonDisclosing252
    /// Portable: a SIZE judged against the SIZE the server advertised (RFC 1870).
    case advertisedSize
    /// Portable: a second HELO/EHLO refused where an earlier one stands
    /// (RFC 5321 4.1.4: "if the EHLO command is acceptable to the SMTP server").
    case secondGreetingRefused
    /// Portable: a routed address at a local domain (`%`, `!`, a quoted `@`)
    /// from a client that may relay, refused (RFC 5321 3.6 leaves routing to the site).
    case routedLocalAddress
    /// MAIL taken before AUTH on a site that requires it: the 530 may come
    /// at RCPT instead (RFC 4954 6), which is judged there.
    case authRequiredAtRecipient
}

/// The allowances, each written once.
public enum Allowances {
    /// A refusal the policy defers to RCPT, given already at the HELO: it
    /// must be the rule's own refusal under the profile.
    static func refusedEarlier(_ actual: ServerResponse, deferred rule: RuleID, helo: String, oracle: PolicyOracle) -> Bool {
        guard let reply = actual.reply, !reply.code.isPositive else { return false }
        return oracle.mismatch(actual, against: rule, values: ["helo": helo]) == nil
    }

    /// Where the policy ends the session with a 421 after `reply`, the
    /// server may send the 421 in its place.
    static func closingInPlace(_ actual: ServerResponse, closing: SMTPReply?, oracle: PolicyOracle) -> Bool {
        guard let closing else { return false }
        return oracle.mismatch(actual, expected: closing) == nil
    }

    /// Whether a refusal of DATA as early talk is up to timing: the policy
    /// has no greeting pause, so the server may or may not have seen it.
    static func earlyTalkUpToTiming(_ actual: ServerResponse, policy: Policy, oracle: PolicyOracle) -> Bool {
        policy.limits.greetPauseMilliseconds == 0 && policy.isEnabled(.unauthPipelining)
            && oracle.mismatch(actual, against: .unauthPipelining) == nil
    }

    /// Whether an early talker can be judged at all: only a server that
    /// pauses its greeting can tell it from a fast client.
    public static func earlyTalkJudgeable(_ policy: Policy) -> Bool { policy.limits.greetPauseMilliseconds > 0 }

    /// Portable: a refusal of VRFY or EXPN may be a 252, which discloses
    /// nothing; only 250 or 251 confirms a user.
    static func nonDisclosing(_ command: SMTPCommand?, _ reply: SMTPReply, _ policy: Policy) -> Bool {
        policy.profile == .portable && (command?.verb == .vrfy || command?.verb == .expn) && reply.code == .cannotVerify
    }

    /// Portable: what a MAIL with SIZE may get, judged against the SIZE the
    /// server advertised rather than the policy's limit. `nil` where the
    /// advertised SIZE says nothing different (then the policy's demand stands).
    static func advertisedSize(_ command: SMTPCommand?, ehlo: SMTPReply?, _ policy: Policy) -> SizeVerdict? {
        guard policy.profile == .portable, command?.verb == .mail, let ehlo, let size = ehlo.parameters(of: "SIZE"),
            let argument = command?.argument,
            let declared = argument.split(separator: " ").first(where: { $0.uppercased().hasPrefix("SIZE=") })
                .flatMap({ Int($0.dropFirst(5)) })
        else { return nil }
        // RFC 1870 4: no number (or 0) is no fixed limit: a 452 for want of
        // storage, or taking it, are both the server's to choose.
        guard let limit = size.first.flatMap({ Int($0) }), limit > 0 else { return .free }
        return declared > limit ? .refuse : .free
    }

    enum SizeVerdict {
        /// Over the advertised limit: a refusal (RFC 1870 6: 552) is due.
        case refuse
        /// Any answer keeps RFC 1870.
        case free
    }

    /// Portable: a RCPT to a local domain carrying sender-specified routing,
    /// from a client that may relay: taking it (the route followed, or a
    /// mailbox of that name) and refusing it with any 5xx (no such mailbox,
    /// RFC 5321 2.3.11) both keep the policy.
    static func routedLocal(_ command: SMTPCommand?, _ reply: SMTPReply, mayRelay: Bool, _ policy: Policy) -> Bool {
        guard policy.profile == .portable, mayRelay, command?.verb == .rcpt,
            reply.code.replyClass == .permanentNegative || reply.code.replyClass == .positiveCompletion,
            let argument = command?.argument, let open = argument.firstIndex(of: "<"), let close = argument.lastIndex(of: ">"),
            open < close
        else { return false }
        let address = argument[argument.index(after: open)..<close]
        guard let at = address.lastIndex(of: "@"), policy.isLocal(domain: String(address[address.index(after: at)...])) else {
            return false
        }
        return address[..<at].contains { $0 == "%" || $0 == "!" || $0 == "@" }
    }
}

/// Runs the policy's session in lock step with a recorded one: each client
/// unit goes to the policy, the reply that came is judged against what the
/// policy demands there, and the policy then follows what the real server
/// answered, so the next unit is judged from where the real session stood.
///
/// Live cases, captures (`check`, `run --capture`) and replays are all
/// judged by this one walk.
public struct Conformance: Sendable {
    public let policy: Policy
    let oracle: PolicyOracle
    /// The client as the policy sees it, and the socket's peer behind a PROXY header.
    let client: String?
    let peer: String?
    let tls: PolicySession.TLSAvailability

    public init(policy: Policy, client: String?, peer: String? = nil, tls: PolicySession.TLSAvailability = .starttls) {
        self.policy = policy
        self.oracle = PolicyOracle(policy: policy)
        self.client = client
        self.peer = peer
        self.tls = tls
    }

    /// What the policy demanded of every reply of `transcript`, in order. The
    /// walk stops at a hole in a capture, at octets it cannot read as
    /// commands, and where the rest is encrypted and unread.
    public func walk(_ transcript: Transcript) -> [Judgement] {
        var walker = Walker(self, transcript)
        walker.run()
        return walker.judgements
    }
}

/// One walk over one transcript.
private struct Walker {
    let conformance: Conformance
    let transcript: Transcript
    var session: PolicySession
    var judgements: [Judgement] = []
    /// The 421 the policy closed with, still to come.
    var closing: SMTPReply?
    /// A SASL exchange is in progress: its lines are taken as recorded.
    var inAuthentication = false
    /// The client talked before the greeting to a server with no pause.
    var earlyTalkUpToTiming = false
    /// The server's last EHLO reply on this side of TLS.
    var ehlo: SMTPReply?
    /// The server took a command line a bare LF ended.
    var bareLineEndsTaken = false
    /// The exchange the 421 was due after, for a server that closed instead.
    var closingAfter: Int?
    /// A HELO or EHLO stood before the unit being judged.
    var greetedBefore = false

    init(_ conformance: Conformance, _ transcript: Transcript) {
        self.conformance = conformance
        self.transcript = transcript
        self.session = PolicySession(
            policy: conformance.policy, clientAddress: conformance.client, tls: conformance.tls, peer: conformance.peer)
    }

    var oracle: PolicyOracle { self.conformance.oracle }

    mutating func run() {
        let exchanges = self.transcript.exchanges
        if let greeted = exchanges.first(where: { $0.role == .greeting })?.repliedAt,
            let first = exchanges.first(where: { $0.sent != nil })?.sentAt, first < greeted
        {
            self.session.receivedBeforeGreeting()
            self.earlyTalkUpToTiming = !Allowances.earlyTalkJudgeable(self.conformance.policy)
        }
        for index in exchanges.indices {
            let exchange = exchanges[index]
            // Past a hole in a capture, units and replies cannot be paired with certainty.
            if exchange.followsMissingData { return }
            guard let actual = exchange.response else {
                if self.closing != nil { self.closingAfter = index }
                continue
            }
            if let closing = self.closing {
                // The session ended at the command before: this reply must be its 421.
                guard exchange.role != .greeting else { continue }
                let mismatch = self.oracle.mismatch(actual, expected: closing)
                let unsolicited = exchange.role == .unsolicited
                self.record(
                    index, .closing(closing), mismatch == nil ? (unsolicited ? .met : .allowed(.closingAtNextCommand)) : .broken(mismatch))
                return
            }
            guard exchange.role == .answer, let unit = exchange.sent else { continue }
            guard self.judge(index, exchange, unit, actual) else { return }
        }
        self.closedWithout421()
    }

    /// The session ended with the error limit's 421 still due. The server
    /// closed instead: the portable profile takes a refusal and a close.
    mutating func closedWithout421() {
        guard let closing = self.closing, let index = self.closingAfter ?? self.judgements.last?.exchange else { return }
        switch self.transcript.end {
        case .closedByServer, .reset(by: .server, _):
            let portable = self.conformance.policy.profile == .portable
            self.record(index, .closing(closing), portable ? .allowed(.closedAfterRefusal) : .broken(.noReply))
        default:
            break
        }
    }

    /// Judges one answered unit; `false` when the walk cannot go on.
    mutating func judge(_ index: Int, _ exchange: Transcript.Exchange, _ unit: ClientUnit, _ actual: ServerResponse) -> Bool {
        // Lines with no reply code: nothing the policy can follow (the
        // transcript shows them as malformed).
        guard let reply = actual.reply else { return true }
        self.greetedBefore = self.session.facts.helo != nil
        let response: PolicySession.Response
        switch unit.payload {
        case .saslResponse where unit.command == nil:
            if reply.code != .authContinue {
                self.session.followAuthentication(succeeded: reply.code == .authenticationSucceeded)
                self.inAuthentication = false
            }
            return true
        case .saslResponse:
            return self.takeAuthentication(index, reply)
        case .command where unit.command?.verb == .auth:
            return self.takeAuthentication(index, reply)
        case .command where self.inAuthentication:
            // A line inside a SASL exchange the capture did not mark as one.
            if reply.code != .authContinue {
                self.session.followAuthentication(succeeded: reply.code == .authenticationSucceeded)
                self.inAuthentication = false
            }
            return true
        case .messageBody:
            response = self.session.receiveMessage(octets: unit.octets)
        case .bdatChunk(let size):
            let line = LineFramer.Line(bytes: unit.line, length: unit.line.count + unit.lineEnd.octets)
            let announced = self.session.receive(line)
            response = announced.readChunk == nil && !announced.replies.isEmpty ? announced : self.session.receiveChunk(octets: size)
        case .raw:
            // Raw octets are judged only where they hold exactly one command line.
            guard unit.line.count >= 2, unit.line.suffix(2) == [0x0D, 0x0A], !unit.line.dropLast(2).contains(0x0A),
                !unit.line.dropLast(2).contains(0x0D)
            else { return false }
            let line = LineFramer.Line(bytes: Array(unit.line.dropLast(2)), length: unit.line.count)
            response = self.session.receive(line, followed: self.isFollowed(index))
        case .command:
            // Once the server took a line a bare LF ended, it reads them so:
            // the defect is judged once, and later lines as what they say.
            let bareLF = unit.lineEnd == .lf && !self.bareLineEndsTaken
            let line = LineFramer.Line(
                bytes: unit.line, length: unit.line.count + unit.lineEnd.octets,
                findings: bareLF ? [.bareLF] : (unit.line.contains(0) ? [.nul] : []))
            response = self.session.receive(line, followed: self.isFollowed(index))
        }
        let mayRelay = self.session.facts.clientIsTrusted || self.session.facts.authenticatedUser != nil
        let greeted = self.greetedBefore
        let (demand, closes) = self.demand(of: response)
        var outcome = self.outcome(demand, actual, closes: closes, unit: unit, mayRelay: mayRelay)
        if case .broken = outcome, case .acceptance = demand, greeted, self.conformance.policy.profile == .portable,
            unit.command?.verb == .helo || unit.command?.verb == .ehlo, !reply.code.isPositive
        {
            outcome = .allowed(.secondGreetingRefused)
        }
        self.record(index, demand, outcome)
        if case .refusal(.bareLineBreak, _) = demand, reply.code.isPositive { self.bareLineEndsTaken = true }
        if unit.command?.verb == .ehlo, reply.code == .ok { self.ehlo = reply }
        if let closes, self.oracle.mismatch(actual, expected: closes) != nil { self.closing = closes }
        self.session.follow(reply)
        if unit.command?.verb == .starttls && reply.code == .serviceReady {
            // The rest is inside TLS: judged where it was read, else the walk ends.
            guard self.transcript.exchanges.dropFirst(index + 1).contains(where: \.encrypted) else { return false }
            self.session.tlsEstablished()
            self.ehlo = nil
        }
        return true
    }

    /// Credentials are not the judge's to check: AUTH is taken as recorded.
    mutating func takeAuthentication(_ index: Int, _ reply: SMTPReply) -> Bool {
        self.inAuthentication = reply.code == .authContinue
        if !self.inAuthentication { self.session.followAuthentication(succeeded: reply.code == .authenticationSucceeded) }
        self.record(index, .free(.authentication), .met)
        return true
    }

    /// Whether the next unit went out in the same write as this one.
    func isFollowed(_ index: Int) -> Bool {
        let exchanges = self.transcript.exchanges
        guard let group = exchanges[index].pipelineGroup else { return false }
        return exchanges.dropFirst(index + 1).first { $0.sent != nil }?.pipelineGroup == group
    }

    /// The demand of a response, and the 421 it closes with, if it does.
    func demand(of response: PolicySession.Response) -> (Judgement.Demand, SMTPReply?) {
        guard let first = response.replies.first else { return (.free(.unread), nil) }
        let closes = response.close ? response.replies.last { $0.reply.code == .serviceNotAvailable }?.reply : nil
        if let rule = first.rule { return (.refusal(rule, first.reply), closes) }
        if let waived = first.waived { return (.free(.waived(waived)), closes) }
        return (.acceptance(first.reply, deferred: first.deferredRule), closes)
    }

    func outcome(_ demand: Judgement.Demand, _ actual: ServerResponse, closes: SMTPReply?, unit: ClientUnit, mayRelay: Bool)
        -> Judgement.Outcome
    {
        guard let reply = actual.reply else { return .broken(.malformed(MalformedReply(lines: [], reason: "no reply code"))) }
        let policy = self.conformance.policy
        let size = Allowances.advertisedSize(unit.command, ehlo: self.ehlo, policy)
        switch demand {
        case .free, .closing:
            return .met
        case .refusal(.mailTooBig, _) where size != nil:
            return size == .refuse && reply.code.isPositive ? .broken(nil) : .allowed(.advertisedSize)
        case .refusal(_, let expected):
            // A refusal may itself be a 2xx (a forbidden command's 221 and close).
            guard !reply.code.isPositive || expected.code.isPositive else {
                if Allowances.routedLocal(unit.command, reply, mayRelay: mayRelay, policy) { return .allowed(.routedLocalAddress) }
                if case .refusal(.authRequired, _) = demand, unit.command?.verb == .mail { return .allowed(.authRequiredAtRecipient) }
                return Allowances.nonDisclosing(unit.command, reply, policy) ? .allowed(.nonDisclosing252) : .broken(nil)
            }
            let mismatch = self.oracle.mismatch(actual, expected: expected)
            if mismatch == nil { return .met }
            if Allowances.closingInPlace(actual, closing: closes, oracle: self.oracle) { return .allowed(.closingInPlace) }
            return .broken(mismatch)
        case .acceptance(let expected, let deferred):
            if reply.code.value / 100 == expected.code.value / 100 { return .met }
            if Allowances.routedLocal(unit.command, reply, mayRelay: mayRelay, policy) { return .allowed(.routedLocalAddress) }
            if size == .refuse { return .allowed(.advertisedSize) }
            if let deferred, Allowances.refusedEarlier(actual, deferred: deferred, helo: unit.command?.argument ?? "", oracle: self.oracle)
            {
                return .allowed(.refusedEarlier(deferred))
            }
            if self.earlyTalkUpToTiming, unit.command?.verb == .data,
                Allowances.earlyTalkUpToTiming(actual, policy: self.conformance.policy, oracle: self.oracle)
            {
                return .allowed(.earlyTalkUpToTiming)
            }
            return .broken(.replyClass(got: reply.code.value / 100, expected: expected.code.value / 100))
        }
    }

    mutating func record(_ index: Int, _ demand: Judgement.Demand, _ outcome: Judgement.Outcome) {
        self.judgements.append(Judgement(exchange: index, step: self.transcript.exchanges[index].step, demand: demand, outcome: outcome))
    }
}
