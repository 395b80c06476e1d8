import SMTPProtocol

/// A rule of the policy, named as docs/policy.md names it (`relay.denied`).
public struct RuleID: RawRepresentable, Sendable, Hashable, Codable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { self.rawValue }
    public static func < (lhs: RuleID, rhs: RuleID) -> Bool { lhs.rawValue < rhs.rawValue }

    public static let heloRequired: RuleID = "helo.required"
    public static let heloSyntax: RuleID = "helo.syntax"
    public static let heloInvalid: RuleID = "helo.invalid"
    public static let heloInvalidLiteral: RuleID = "helo.invalid-literal"
    public static let heloNonFQDN: RuleID = "helo.non-fqdn"
    public static let heloDenied: RuleID = "helo.denied"
    public static let heloUnknown: RuleID = "helo.unknown"
    public static let relayDenied: RuleID = "relay.denied"
    public static let authFailed: RuleID = "auth.failed"
    public static let authTLSRequired: RuleID = "auth.tls-required"
    public static let authRequired: RuleID = "auth.required"
    public static let needMail: RuleID = "seq.need-mail"
    public static let needRcpt: RuleID = "seq.need-rcpt"
    public static let noRecipients: RuleID = "seq.no-recipients"
    public static let nestedMail: RuleID = "seq.nested-mail"
    public static let unknownCommand: RuleID = "cmd.unknown"
    public static let tooManyErrors: RuleID = "cmd.too-many-errors"
    public static let badSenderAddress: RuleID = "mail.bad-address"
    public static let unknownUser: RuleID = "rcpt.unknown-user"

    public static let mailSyntax: RuleID = "mail.syntax"
    public static let mailBadParameter: RuleID = "mail.bad-parameter"
    public static let mailTooBig: RuleID = "mail.too-big"
    public static let rcptSyntax: RuleID = "rcpt.syntax"
    public static let badRecipientAddress: RuleID = "rcpt.bad-address"
    public static let tooManyRecipients: RuleID = "rcpt.too-many"
    public static let messageTooBig: RuleID = "data.too-big"
    public static let authAlready: RuleID = "auth.already"
    public static let authInTransaction: RuleID = "auth.in-transaction"
    public static let authMechanism: RuleID = "auth.mechanism"
    public static let authCancelled: RuleID = "auth.cancelled"
    public static let authBadEncoding: RuleID = "auth.bad-encoding"
    public static let vrfyDisabled: RuleID = "vrfy.disabled"
    public static let commandSyntax: RuleID = "cmd.syntax"
    public static let lineTooLong: RuleID = "cmd.line-too-long"
    public static let bareLineBreak: RuleID = "cmd.bare-line-break"
    public static let idleTimeout: RuleID = "session.timeout"
    public static let tlsNotAvailable: RuleID = "tls.not-available"
    public static let tlsAlreadyActive: RuleID = "tls.already-active"
    public static let xclientDenied: RuleID = "xclient.denied"
    public static let unauthPipelining: RuleID = "cmd.unauth-pipelining"
    public static let forbiddenCommand: RuleID = "cmd.forbidden"

    /// The HELO-name rules, whose refusal a policy may delay until RCPT.
    public static let heloNameRules: Set<RuleID> = [.heloInvalid, .heloInvalidLiteral, .heloNonFQDN, .heloDenied, .heloUnknown]
}

/// When a refusal must come.
public enum RuleTiming: String, Sendable, Hashable, Codable, CaseIterable {
    /// At the command that breaks the rule (Postfix `smtpd_delay_reject = no`).
    case atCommand = "at-command"
    /// At that command or at any later one up to the first RCPT (Postfix's default).
    case noLaterThanRCPT = "no-later-than-rcpt"
}

/// The reply a rule's refusal carries. `text` is a template: `{helo}` is the
/// HELO/EHLO argument, `{verb}` the command verb, `{rcpt}` the recipient as
/// written between the angle brackets, `{server}` the server name, `{param}` the
/// offending parameter.
public struct RuleReply: Sendable, Hashable {
    public var code: ReplyCode
    public var enhancedCode: EnhancedStatusCode?
    public var text: String

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.code = ReplyCode(code)
        self.enhancedCode = enhanced.flatMap { EnhancedStatusCode($0) }
        self.text = text
    }

    public init(code: ReplyCode, enhancedCode: EnhancedStatusCode?, text: String) {
        self.code = code
        self.enhancedCode = enhancedCode
        self.text = text
    }

    /// The concrete reply, placeholders filled in.
    public func reply(_ values: [String: String]) -> SMTPReply {
        let text = Placeholder.expand(self.text, values)
        if let enhanced = self.enhancedCode { return SMTPReply(self.code, enhanced, text) }
        return SMTPReply(code: self.code, lines: [text])
    }
}

/// The rules of docs/policy.md and the documented replies, plus the other refusals
/// the reference server makes (Postfix wording throughout).
public enum RuleCatalogue {
    public static let documented: [RuleID: RuleReply] = [
        .heloRequired: RuleReply(503, "5.5.1", "Error: send HELO/EHLO first"),
        .heloSyntax: RuleReply(501, nil, "Syntax: {verb} hostname"),
        .heloInvalid: RuleReply(501, "5.5.2", "<{helo}>: Helo command rejected: Invalid name"),
        .heloInvalidLiteral: RuleReply(501, "5.5.2", "<{helo}>: Helo command rejected: invalid ip address"),
        .heloNonFQDN: RuleReply(504, "5.5.2", "<{helo}>: Helo command rejected: need fully-qualified hostname"),
        .heloDenied: RuleReply(554, "5.7.1", "<{helo}>: Helo command rejected: Access denied"),
        .heloUnknown: RuleReply(450, "4.7.1", "<{helo}>: Helo command rejected: Host not found"),
        .relayDenied: RuleReply(554, "5.7.1", "<{rcpt}>: Relay access denied"),
        .authFailed: RuleReply(535, "5.7.8", "Error: authentication failed: authentication failure"),
        .authTLSRequired: RuleReply(530, "5.7.0", "Must issue a STARTTLS command first"),
        // RFC 4954 6, word for word.
        .authRequired: RuleReply(530, "5.7.0", "Authentication required"),
        .needMail: RuleReply(503, "5.5.1", "Error: need MAIL command"),
        .needRcpt: RuleReply(503, "5.5.1", "Error: need RCPT command"),
        .noRecipients: RuleReply(554, "5.5.1", "Error: no valid recipients"),
        .nestedMail: RuleReply(503, "5.5.1", "Error: nested MAIL command"),
        .unknownCommand: RuleReply(500, "5.5.2", "Error: command not recognized"),
        .tooManyErrors: RuleReply(421, "4.7.0", "{server} Error: too many errors"),
        .badSenderAddress: RuleReply(501, "5.1.7", "Bad sender address syntax"),
        .unknownUser: RuleReply(550, "5.1.1", "<{rcpt}>: Recipient address rejected: User unknown in local recipient table"),

        .mailSyntax: RuleReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"),
        .mailBadParameter: RuleReply(555, "5.5.4", "Unsupported option: {param}"),
        .mailTooBig: RuleReply(552, "5.3.4", "Message size exceeds fixed limit"),
        .rcptSyntax: RuleReply(501, "5.5.4", "Syntax: RCPT TO:<address>"),
        .badRecipientAddress: RuleReply(501, "5.1.3", "Bad recipient address syntax"),
        .tooManyRecipients: RuleReply(452, "4.5.3", "Error: too many recipients"),
        .messageTooBig: RuleReply(552, "5.3.4", "Error: message file too big"),
        .authAlready: RuleReply(503, "5.5.1", "Error: already authenticated"),
        .authInTransaction: RuleReply(503, "5.5.1", "Error: MAIL transaction in progress"),
        .authMechanism: RuleReply(504, "5.5.4", "Unrecognized authentication type"),
        .authCancelled: RuleReply(501, "5.7.0", "Authentication aborted"),
        .authBadEncoding: RuleReply(501, "5.5.2", "Cannot decode response"),
        .vrfyDisabled: RuleReply(502, "5.5.1", "VRFY command is disabled"),
        .commandSyntax: RuleReply(501, "5.5.4", "Syntax: {verb}"),
        .lineTooLong: RuleReply(500, "5.5.0", "Error: line too long"),
        .bareLineBreak: RuleReply(500, "5.5.2", "Error: bare <CR> or <LF> received"),
        .idleTimeout: RuleReply(421, "4.4.2", "{server} Error: timeout exceeded"),
        .tlsNotAvailable: RuleReply(502, "5.5.1", "Error: command not implemented"),
        .tlsAlreadyActive: RuleReply(554, "5.5.1", "Error: TLS already active"),
        .xclientDenied: RuleReply(550, "5.7.0", "Error: insufficient authorization"),
        .unauthPipelining: RuleReply(503, "5.5.0", "<DATA>: Data command rejected: Improper use of SMTP command pipelining"),
        .forbiddenCommand: RuleReply(221, "2.7.0", "Error: I can break rules, too. Goodbye."),
    ]

    /// The rules docs/policy.md's table lists, in its order.
    public static let policyTable: [RuleID] = [
        .heloRequired, .heloSyntax, .heloInvalid, .heloInvalidLiteral, .heloNonFQDN, .heloDenied, .heloUnknown,
        .relayDenied, .authFailed, .authTLSRequired, .needMail, .needRcpt, .noRecipients, .nestedMail,
        .unknownCommand, .tooManyErrors, .badSenderAddress, .unknownUser,
    ]
}

/// The replies to accepted commands (docs/policy.md, "An accepted step answers").
public enum AcceptedReplies {
    public static let mail = SMTPReply(.ok, EnhancedStatusCode(2, 1, 0), "Ok")
    public static let rcpt = SMTPReply(.ok, EnhancedStatusCode(2, 1, 5), "Ok")
    public static let data = SMTPReply(code: .startMailInput, lines: ["End data with <CR><LF>.<CR><LF>"])
    public static let ok = SMTPReply(.ok, EnhancedStatusCode(2, 0, 0), "Ok")
    public static let authenticated = SMTPReply(.authenticationSucceeded, EnhancedStatusCode(2, 7, 0), "Authentication successful")
    public static let bye = SMTPReply(.closing, EnhancedStatusCode(2, 0, 0), "Bye")
    public static let startTLS = SMTPReply(.serviceReady, EnhancedStatusCode(2, 0, 0), "Ready to start TLS")
    /// VRFY where the site allows it: RFC 5321 3.5.3's answer that confirms nothing.
    public static let cannotVerify = SMTPReply(
        .cannotVerify, EnhancedStatusCode(2, 0, 0), "Cannot VRFY user, but will accept message and attempt delivery")
    /// After DATA, or after BDAT LAST with the message's size (`octets`).
    public static func queued(_ id: String, octets: Int? = nil) -> SMTPReply {
        SMTPReply(.ok, EnhancedStatusCode(2, 0, 0), "Ok: \(octets.map { "\($0) bytes " } ?? "")queued as \(id)")
    }
}

/// `{name}` placeholders in reply templates and scenario steps, filled in
/// one pass: a name without a value, and braces inside a value, are left
/// as they are.
public enum Placeholder {
    public static func expand(_ template: String, _ values: [String: String]) -> String {
        guard template.utf8.contains(UInt8(ascii: "{")) else { return template }
        return String(decoding: Self.expand(Array(template.utf8), values), as: UTF8.self)
    }

    /// The same in octets, leaving every other octet as it is.
    public static func expand(_ bytes: [UInt8], _ values: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "{"), let close = bytes[index...].firstIndex(of: UInt8(ascii: "}")),
                let value = values[String(decoding: bytes[(index + 1)..<close], as: UTF8.self)]
            {
                out += Array(value.utf8)
                index = close + 1
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return out
    }
}
