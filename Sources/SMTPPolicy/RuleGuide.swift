/// What a rule is for, where the RFCs stand, what a failure of it usually
/// means, and how a site fixes it: `smtpcheck explain RULE`.
public struct RuleGuide: Sendable, Hashable {
    /// When the rule applies.
    public var when: String
    /// The RFC sections (and server documentation) it rests on.
    public var references: [String]
    /// What it usually means when a server fails the case.
    public var failure: String
    /// How a site usually mends it (Postfix parameters where they are the usual fix).
    public var fix: String

    public init(when: String, references: [String], failure: String, fix: String) {
        self.when = when
        self.references = references
        self.failure = failure
        self.fix = fix
    }
}

extension RuleCatalogue {
    /// A guide for every rule of ``documented``.
    public static let guides: [RuleID: RuleGuide] = [
        .heloRequired: RuleGuide(
            when: "MAIL (or another transaction command) before any HELO or EHLO",
            references: ["RFC 5321 4.1.1.1", "RFC 5321 4.1.4"],
            failure: "the server lets a client start a transaction without saying who it is",
            fix: "require the greeting (Postfix: smtpd_helo_required = yes)"),
        .heloSyntax: RuleGuide(
            when: "HELO or EHLO without an argument",
            references: ["RFC 5321 4.1.1.1"],
            failure: "the server takes a HELO/EHLO with no name",
            fix:
                "nothing to configure in most servers: a 501 is built in; check that a proxy or filter in front does not rewrite the command"
        ),
        .heloInvalid: RuleGuide(
            when: "the HELO/EHLO argument is not a syntactically valid host name (bad..name, -foo.example, foo_bar!)",
            references: ["RFC 5321 4.1.1.1", "RFC 5321 4.1.2", "RFC 1123 2.1"],
            failure: "the server accepts a name no host can have; spam tools send such names",
            fix: "refuse invalid names (Postfix: reject_invalid_helo_hostname in smtpd_helo_restrictions)"),
        .heloInvalidLiteral: RuleGuide(
            when: "a malformed address literal ([999.1.1.1], [IPv6:zzz])",
            references: ["RFC 5321 4.1.1.1", "RFC 5321 4.1.3"],
            failure: "the server accepts an address literal that is not an address",
            fix: "refuse invalid names, literals included (Postfix: reject_invalid_helo_hostname)"),
        .heloNonFQDN: RuleGuide(
            when: "a bare name (system) or an IP address without brackets",
            references: ["RFC 5321 4.1.1.1", "RFC 5321 2.3.5"],
            failure:
                "the server accepts a name that is not fully qualified; RFC 5321 asks for the host's primary name or an address literal",
            fix: "refuse names that are not fully qualified (Postfix: reject_non_fqdn_helo_hostname)"),
        .heloDenied: RuleGuide(
            when: "a name on the site's deny list: its own name, localhost, site entries",
            references: ["RFC 5321 4.1.4", "RFC 5321 7.9"],
            failure: "the server accepts a client that claims to be the server itself or localhost, a common forgery",
            fix: "list those names in a HELO access map (Postfix: check_helo_access hash:/etc/postfix/helo_access with REJECT entries)"),
        .heloUnknown: RuleGuide(
            when: "(optional, DNS) the name does not resolve",
            references: ["RFC 5321 4.1.4", "RFC 5321 7.9"],
            failure: "the server accepts names that do not exist in DNS, where the site's policy refuses them",
            fix:
                "refuse unknown names where the site wants it (Postfix: reject_unknown_helo_hostname); RFC 5321 4.1.4 warns against refusing on a mere mismatch"
        ),
        .relayDenied: RuleGuide(
            when: "RCPT to a domain that is not local, from a client neither in a trusted network nor authenticated",
            references: ["RFC 5321 3.6.1", "RFC 5321 7.1", "RFC 5321 7.9"],
            failure: "an open relay: anyone can send mail anywhere through this server, and it will be listed on block lists within hours",
            fix:
                "permit relay only to trusted networks and authenticated clients (Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination; check mynetworks)"
        ),
        .authFailed: RuleGuide(
            when: "AUTH with wrong credentials",
            references: ["RFC 4954 4", "RFC 4954 6"],
            failure: "the server accepts a wrong password, or answers it with something other than 535",
            fix: "check the SASL back end (Postfix: smtpd_sasl_type and the Dovecot or Cyrus configuration behind it)"),
        .authTLSRequired: RuleGuide(
            when: "AUTH (or MAIL) before STARTTLS where the policy requires TLS first",
            references: ["RFC 4954 4", "RFC 4954 6", "RFC 3207 4"],
            failure: "passwords can cross the network in clear text",
            fix: "offer AUTH only over TLS (Postfix: smtpd_tls_auth_only = yes; on submission smtpd_tls_security_level = encrypt)"),
        .authRequired: RuleGuide(
            when: "mail from a client that has not authenticated, where the service takes mail only after AUTH",
            references: ["RFC 4954 6", "RFC 6409 4.3"],
            failure: "a submission service takes mail from anyone",
            fix:
                "on submission, permit only authenticated clients (Postfix master.cf: -o smtpd_client_restrictions=permit_sasl_authenticated,reject)"
        ),
        .needMail: RuleGuide(
            when: "RCPT before MAIL",
            references: ["RFC 5321 3.3", "RFC 5321 4.1.4"],
            failure: "the server takes commands out of sequence",
            fix: "nothing to configure in common servers: a bug or a front end that rewrites the dialogue"),
        .needRcpt: RuleGuide(
            when: "DATA outside a transaction (no MAIL)",
            references: ["RFC 5321 3.3", "RFC 5321 4.1.4"],
            failure: "the server takes DATA with no transaction",
            fix: "nothing to configure in common servers: a bug or a front end that rewrites the dialogue"),
        .noRecipients: RuleGuide(
            when: "DATA after MAIL when no RCPT was accepted",
            references: ["RFC 5321 3.3"],
            failure: "the server takes a message it has no recipient for; RFC 5321 3.3 allows 503 or 554 here",
            fix: "nothing to configure in common servers; with pipelining, check that refused RCPTs are not counted"),
        .nestedMail: RuleGuide(
            when: "MAIL inside a transaction",
            references: ["RFC 5321 3.3", "RFC 5321 4.1.4"],
            failure: "a second MAIL silently replaces the transaction",
            fix: "nothing to configure in common servers: a bug"),
        .unknownCommand: RuleGuide(
            when: "a command the server does not know",
            references: ["RFC 5321 4.2.4", "RFC 5321 4.1.4"],
            failure: "the server answers an unknown command as if it were known",
            fix: "nothing to configure in common servers"),
        .tooManyErrors: RuleGuide(
            when: "the client reaches the site's error limit",
            references: ["RFC 5321 3.8", "RFC 5321 4.2.2"],
            failure: "a client can probe the server with errors for ever",
            fix: "set a hard error limit (Postfix: smtpd_hard_error_limit, default 20; smtpd_soft_error_limit)"),
        .badSenderAddress: RuleGuide(
            when: "a malformed MAIL FROM address",
            references: ["RFC 5321 4.1.2", "RFC 3463 3.2 (X.1.7)"],
            failure: "the server accepts a reverse path that is not an address; bounces for it can go nowhere",
            fix: "refuse malformed senders (Postfix: strict_rfc821_envelopes = yes, reject_non_fqdn_sender)"),
        .unknownUser: RuleGuide(
            when: "RCPT to an unknown user of a local domain",
            references: ["RFC 5321 3.3", "RFC 3463 3.2 (X.1.1)"],
            failure: "the server accepts mail for users it does not have and bounces it later: backscatter",
            fix: "refuse unknown local users at RCPT (Postfix: local_recipient_maps, or relay_recipient_maps for a relay domain)"),
        .mailSyntax: RuleGuide(
            when: "a MAIL command whose FROM:<...> does not parse",
            references: ["RFC 5321 4.1.1.2", "RFC 5321 4.1.2"],
            failure: "the server takes a MAIL command it cannot have read",
            fix: "nothing to configure in common servers (Postfix: strict_rfc821_envelopes = yes is stricter)"),
        .mailBadParameter: RuleGuide(
            when: "a MAIL or RCPT parameter the server does not offer",
            references: ["RFC 5321 4.1.1.11", "RFC 5321 4.1.2"],
            failure: "the server accepts an extension parameter it did not announce",
            fix: "nothing to configure in common servers"),
        .mailTooBig: RuleGuide(
            when: "MAIL with a SIZE above the server's limit",
            references: ["RFC 1870 6", "RFC 3463 3.4 (X.3.4)"],
            failure: "the server accepts a declared size it will refuse later, after the client sent it all",
            fix: "announce and enforce one limit (Postfix: message_size_limit)"),
        .rcptSyntax: RuleGuide(
            when: "an RCPT command whose TO:<...> does not parse",
            references: ["RFC 5321 4.1.1.3", "RFC 5321 4.1.2"],
            failure: "the server takes an RCPT command it cannot have read",
            fix: "nothing to configure in common servers"),
        .badRecipientAddress: RuleGuide(
            when: "a malformed recipient address",
            references: ["RFC 5321 4.1.2", "RFC 3463 3.2 (X.1.3)"],
            failure: "the server accepts a forward path that is not an address",
            fix: "refuse malformed recipients (Postfix: strict_rfc821_envelopes = yes, reject_non_fqdn_recipient)"),
        .tooManyRecipients: RuleGuide(
            when: "more recipients than the site's limit in one transaction",
            references: ["RFC 5321 4.5.3.1.8", "RFC 5321 4.5.3.1.10"],
            failure: "a client can address unlimited recipients at once; RFC 5321 asks for at least 100 and a 452 beyond the limit",
            fix: "set the limit (Postfix: smtpd_recipient_limit)"),
        .messageTooBig: RuleGuide(
            when: "a message larger than the site's limit",
            references: ["RFC 1870 6", "RFC 5321 4.5.3.1.10"],
            failure: "the server takes messages above its announced SIZE",
            fix: "enforce the announced limit (Postfix: message_size_limit)"),
        .authAlready: RuleGuide(
            when: "a second AUTH after a successful one",
            references: ["RFC 4954 4"],
            failure: "the server lets a client authenticate again, as another user",
            fix: "nothing to configure in common servers: a bug"),
        .authInTransaction: RuleGuide(
            when: "AUTH during a mail transaction",
            references: ["RFC 4954 4"],
            failure: "the server changes the client's identity in the middle of a transaction",
            fix: "nothing to configure in common servers: a bug"),
        .authMechanism: RuleGuide(
            when: "AUTH with a mechanism the server does not offer",
            references: ["RFC 4954 4"],
            failure: "the server accepts a mechanism it did not announce",
            fix: "check the mechanisms offered (Postfix: smtpd_sasl_security_options and the SASL back end's mechanism list)"),
        .authCancelled: RuleGuide(
            when: "the client answers a 334 challenge with '*'",
            references: ["RFC 4954 4"],
            failure: "the server does not end the exchange when the client cancels it",
            fix: "nothing to configure in common servers"),
        .authBadEncoding: RuleGuide(
            when: "a SASL response that is not base64",
            references: ["RFC 4954 4"],
            failure: "the server takes an answer it cannot have decoded",
            fix: "nothing to configure in common servers"),
        .vrfyDisabled: RuleGuide(
            when: "VRFY (or EXPN), where the site does not answer them",
            references: ["RFC 5321 3.5.3", "RFC 5321 7.3"],
            failure: "anyone can list which addresses exist",
            fix: "disable address verification commands (Postfix: disable_vrfy_command = yes)"),
        .commandSyntax: RuleGuide(
            when: "a known command with arguments it does not take (NOOP x, QUIT x, RSET x)",
            references: ["RFC 5321 4.1.1", "RFC 5321 4.2.4"],
            failure: "the server takes arguments a command does not have",
            fix: "nothing to configure in common servers"),
        .lineTooLong: RuleGuide(
            when: "a command line longer than the limit (RFC 5321: at least 512 octets must be taken)",
            references: ["RFC 5321 4.5.3.1.4", "RFC 5321 4.5.3.1.6"],
            failure: "the server accepts or mangles over-long lines",
            fix: "keep the line limit (Postfix: line_length_limit)"),
        .bareLineBreak: RuleGuide(
            when: "a bare CR or LF where only CRLF ends a line",
            references: ["RFC 5321 2.3.8", "RFC 5321 4.1.1.4"],
            failure: "the server reads lines ended other than by CRLF: the opening for SMTP smuggling",
            fix: "refuse bare line ends (Postfix 3.9+: smtpd_forbid_bare_newline = normalize or reject)"),
        .idleTimeout: RuleGuide(
            when: "a client that sends nothing for the idle time-out",
            references: ["RFC 5321 4.5.3.2.7", "RFC 5321 3.8"],
            failure: "idle clients hold connections for ever",
            fix: "set a time-out (Postfix: smtpd_timeout, 300 s by default)"),
        .tlsNotAvailable: RuleGuide(
            when: "STARTTLS where the server offers no TLS",
            references: ["RFC 3207 4", "RFC 5321 4.2.4"],
            failure: "the server answers STARTTLS without offering it",
            fix: "offer TLS (Postfix: smtpd_tls_security_level = may, with a certificate), or refuse STARTTLS cleanly"),
        .tlsAlreadyActive: RuleGuide(
            when: "STARTTLS inside TLS",
            references: ["RFC 3207 4.2"],
            failure: "the server starts a second TLS handshake inside the first",
            fix: "nothing to configure in common servers: a bug"),
        .xclientDenied: RuleGuide(
            when: "XCLIENT from a client not allowed to use it",
            references: ["Postfix XCLIENT_README"],
            failure: "any client can claim to be any other client, and so bypass the policy",
            fix: "allow XCLIENT only from the proxies that need it (Postfix: smtpd_authorized_xclient_hosts)"),
        .unauthPipelining: RuleGuide(
            when: "commands sent ahead where pipelining was not offered, or talk before the greeting",
            references: ["RFC 2920 3.1", "RFC 5321 4.3.1"],
            failure: "the server takes mail from clients that do not wait for replies: spamware does not",
            fix: "refuse improper pipelining (Postfix: reject_unauth_pipelining in smtpd_data_restrictions; postscreen's pipelining test)"),
        .forbiddenCommand: RuleGuide(
            when: "an HTTP or proxy command (CONNECT, GET, POST) where SMTP was expected",
            references: ["Postfix smtpd_forbidden_commands"],
            failure: "the server keeps talking to a web client or proxy abuser",
            fix: "end such sessions (Postfix: smtpd_forbidden_commands, the default lists CONNECT, GET and POST)"),
    ]
}
