import SMTPPolicy
import SMTPProtocol
import SMTPScenarios

/// Words for everything a run produces. Every report format takes its text
/// from here, so a verdict reads the same in each; the library knows no
/// command-line flags, so ``hint`` (given by the command line) names them.
public struct Wording: Sendable {
    /// How to ask for what a skipped case needed (a flag), if the caller can say.
    public var hint: @Sendable (Hint) -> String?

    public init(hint: @escaping @Sendable (Hint) -> String? = { _ in nil }) {
        self.hint = hint
    }

    // MARK: - Transcripts

    /// A client unit as a transcript shows it; secrets never appear.
    /// The longest client line a report shows whole; longer ones are cut, their size said.
    static let shownLine = 998

    public func unit(_ unit: ClientUnit) -> String {
        switch unit.payload {
        case .command, .raw:
            guard unit.line.count > Self.shownLine else { return Printable.escape(unit.line) }
            return "\(Printable.escape(unit.line.prefix(Self.shownLine)))... (\(unit.line.count) octets)"
        case .messageBody:
            return "<message body, \(unit.octets) octets>"
        case .bdatChunk(let size):
            return "\(Printable.escape(unit.line)) <chunk of \(size) octets>"
        case .saslResponse:
            guard unit.isRedacted else { return Printable.escape(unit.line) }
            let hidden = "<redacted \(unit.redactedOctets) octets>"
            return unit.command == nil ? hidden : "\(Printable.escape(unit.line)) \(hidden)"
        }
    }

    public func note(_ note: Transcript.Note) -> String {
        switch note {
        case .missingData(let side, let octets):
            return "\(octets) octets of \(side.rawValue) data missing from the capture before this"
        case .conflictingOverlap(let side, let offset, let octets):
            return
                "\(side.rawValue) stream: \(octets) octets at stream offset \(offset) were sent twice with different contents (the first copy was kept)"
        case .noHandshake:
            return "the capture starts after the connection was opened (no SYN)"
        case .plaintextBehindSTARTTLS(let octets, let preview):
            return "the client sent \(octets) octets of plaintext behind STARTTLS: \(Printable.escape(preview))"
        case .serverPlaintextAfterSTARTTLS(let octets, let preview):
            return "the server sent \(octets) octets of plaintext after its 220 to STARTTLS; dropped: \(Printable.escape(preview))"
        case .proxyHeader(let version, let client, let octets):
            return "a PROXY v\(version) header named the client \(client ?? "(none: the connection speaks for itself)") (\(octets) octets)"
        case .closedWithUnterminatedOctets(let octets):
            return "the server closed with \(octets.count) octets not ended by CRLF: \(Printable.escape(octets))"
        case .serverClosedBeforeWrite(let octets):
            return "the server had closed the connection before the client wrote \(octets) octets"
        case .stepNotSent(let step, .sessionEnded):
            return "step \(step + 1) not sent: the session had ended"
        case .stepNotSent(let step, .dataNotAccepted):
            return "step \(step + 1) (body) not sent: DATA was not answered 354"
        case .endedInsideMessage(let octets):
            return "the session ended inside a message body after \(octets) octets"
        case .encrypted(let implicit, let client, let server):
            let how = implicit ? "TLS from the first octet (implicit TLS)" : "encrypted after STARTTLS"
            return "\(how): \(client) client and \(server) server octets not readable"
        case .unterminatedClientLine(let octets):
            return "the client's last \(octets) octets had no line end"
        case .clientNotSMTP(let octets, let preview, let hello):
            guard let hello else {
                return "the client sent \(octets) octets that are not SMTP: \(Printable.escape(Array(preview.prefix(48))))"
            }
            var parts = ["record \(hello.recordVersion)"]
            if let name = hello.serverName { parts.append("SNI \(name)") }
            if !hello.protocols.isEmpty { parts.append("ALPN \(hello.protocols.joined(separator: ", "))") }
            return "the client spoke TLS where SMTP was due: a ClientHello (\(parts.joined(separator: "; "))), \(octets) octets in all"
        case .unterminatedServerOctets(let octets):
            return "the server's last \(octets) octets had no CRLF"
        case .bareLineEnds(let side, let count):
            return
                "the \(side.rawValue) ended \(count) line\(count == 1 ? "" : "s") with a bare LF (RFC 5321 2.3.8 wants CRLF); read as line ends"
        case .replayStopped(let why, let exchange):
            return "replay stopped before exchange \(exchange): " + self.replayStop(why)
        }
    }

    func replayStop(_ why: Transcript.ReplayStop) -> String {
        switch why {
        case .secretNotReplayed:
            "AUTH is replayed only with the captured credentials" + (self.hint(.authFromCapture).map { " (\($0))" } ?? "")
        case .oneTimeChallenge: "AUTH CRAM-MD5 answers a one-time challenge and cannot be replayed"
        case .startTLS: "STARTTLS was accepted; the rest of the captured session is encrypted"
        case .dataRefused: "the server refused the DATA the captured body follows"
        case .serverStopped: "the server stopped answering"
        }
    }

    /// How a session ended; `awaiting`: what it waited for when time ran out.
    public func end(_ end: Transcript.End, awaiting: String? = nil) -> String {
        switch end {
        case .closedByServer: return "the server closed the connection"
        case .closedByClient: return "the client closed the connection"
        case .reset(let side, _): return "the \(side.rawValue) reset the connection"
        case .timedOut(_, let unconsumed):
            return "timed out waiting for \(awaiting ?? "the server")"
                + (unconsumed.isEmpty ? "" : "; \(unconsumed.count) octets held without CRLF: \(Printable.escape(unconsumed))")
        case .failed(let failure, _):
            return self.failure(failure)
        }
    }

    func failure(_ failure: Transcript.End.Failure) -> String {
        switch failure {
        case .channel(let cause): "the connection failed: \(cause)"
        case .tlsHandshake(let cause): "TLS handshake failed: \(cause)"
        case .certificateRefused(let cause): "TLS handshake stopped by the client: \(cause)"
        case .writeFailed(let cause): "write failed: \(cause)"
        case .captureEnded: "the capture ends before the connection closes"
        case .captureSilent(let seconds): "no traffic for over \(seconds) s in the capture"
        case .limitExceeded(let what): what
        case .plaintextAfterTLS(let octets, _): "the server left TLS and sent \(octets) octets of plain text"
        }
    }

    /// What the session was waiting for when it timed out: the last unit sent without a reply.
    public func awaited(_ transcript: Transcript) -> String? {
        guard case .timedOut = transcript.end, let last = transcript.exchanges.last, last.response == nil else { return nil }
        guard let unit = last.sent else { return last.role == .greeting ? "the greeting" : nil }
        return "the reply to \(self.unit(unit))"
    }

    // MARK: - Verdicts

    public func verdictDetails(_ verdict: Verdict, transcript: Transcript? = nil) -> [String] {
        switch verdict {
        case .passed: return []
        case .error(let reason): return ["error: \(self.error(reason, transcript: transcript))"]
        case .skipped(let reason): return ["skipped: \(self.skip(reason))"]
        case .failed(let failures):
            return failures.flatMap { failure in
                let step = failure.step.map { "step \($0 + 1)" } ?? "session"
                let rule = failure.rule.map { "rule \($0), " } ?? ""
                return ["\(rule)\(step): expected \(self.expected(failure))", "  got: \(self.observed(failure.got))"]
            }
        }
    }

    /// One line for a failure: "rule R, step N: expected X, got Y".
    public func line(_ failure: Failure) -> String {
        let step = failure.step.map { "step \($0 + 1)" } ?? "session"
        return "\(failure.rule.map { "\($0), " } ?? "")\(step): expected \(self.expected(failure)), got \(self.observed(failure.got))"
    }

    public func expected(_ failure: Failure) -> String {
        let why = failure.mismatch.map { " (\(self.mismatch($0)))" } ?? ""
        switch failure.expected {
        case .refusal(let reply, let due): return "\(reply.singleLine)\(self.due(due))\(why)"
        case .acceptance(let reply): return "accepted (\(reply.singleLine))"
        case .closing(let reply): return "\(reply.singleLine): the session ended at the command before (RFC 5321 3.8)\(why)"
        case .code(let code): return "code \(code)"
        case .replyClass(let value): return "a \(value)xx reply"
        case .accepted: return "accepted (2xx/3xx)"
        case .refused: return "refused (4xx/5xx)"
        case .greeting: return "a 220 greeting"
        case .tlsSession: return "a TLS session after STARTTLS"
        case .staysInTLS: return "the session to stay inside TLS once it is up (RFC 3207 4, RFC 8446 6.1)"
        case .replyInsideTLS(let unit, let code, let lines):
            return "the reply to \(unit.map(self.unit) ?? "the first command") inside TLS (\(code), \(lines) line(s))"
        case .noUnaskedReply: return "no reply to a command the client did not send"
        case .messageGoesOn: return "no reply while the message is still being written: it ends only at <CRLF>.<CRLF>"
        case .quitAnswered: return "221 to QUIT"
        case .noRecipientAfter(let rule): return "no recipient accepted after \(rule) was broken"
        case .asCaptured(let response): return "as captured: \(response?.singleLine ?? "no reply")"
        }
    }

    func due(_ due: Expectation.Due) -> String {
        switch due {
        case .atStep(let step): " at step \(step + 1)"
        case .between(let first, let last, let timing): " between step \(first + 1) and step \(last + 1) (\(timing.rawValue))"
        case .here: ""
        }
    }

    public func observed(_ observation: Observation) -> String {
        switch observation {
        case .reply(let response): return response.singleLine
        case .noReply: return "no reply"
        case .window(let responses):
            guard responses.contains(where: { $0 != nil }) else { return "no reply in that window" }
            // A server that streams replies fills a window: the first few say enough.
            let shown = responses.prefix(4).map { $0?.singleLine ?? "no reply" }.joined(separator: " / ")
            return responses.count > 4 ? "\(shown) / ... (\(responses.count) replies in that window)" : shown
        case .accepting(let response, let unit): return "\(response.singleLine), accepting \(unit.map(self.unit) ?? "it")"
        case .refusing(let response, let unit): return "\(response.singleLine), refusing \(unit.map(self.unit) ?? "it")"
        case .noTLS: return "TLS never came up"
        case .handshakeFailed(let cause): return "220, then the TLS handshake failed: \(cause)"
        case .plaintextAfterTLS(let octets, let preview): return "\(octets) octets of plain text after TLS: \(Printable.escape(preview))"
        case .injectedAnswer(let response): return "\(response.singleLine): the server answered the command injected behind STARTTLS"
        case .unasked(let response): return "unsolicited \(response.singleLine): the server saw a command that was data"
        case .endedEarly(let response):
            return "\(response.singleLine): the server ended the message at a sequence that is not <CRLF>.<CRLF> (RFC 5321 4.1.1.4)"
        case .shiftedQuit(let response): return "\(response.singleLine): the replies had shifted by an extra one"
        case .acceptedRecipient(let unit, let response):
            return "\(unit.map(self.unit) ?? "RCPT") -> \(response.singleLine): a recipient accepted after the HELO was refused"
        case .changed(let response, let fields):
            return "\(response?.singleLine ?? "no reply") (\(fields.map(\.rawValue).joined(separator: ", ")) changed)"
        }
    }

    public func mismatch(_ mismatch: Mismatch) -> String {
        switch mismatch {
        case .noReply: "no reply came"
        case .malformed(let reply): reply.description
        case .replyClass(let got, let expected): "reply class \(got)xx, expected \(expected)xx"
        case .enhancedClass(let code, let expected): "enhanced code \(code) has class \(code.codeClass), expected \(expected)"
        case .code(let got, let expected): "code \(got), expected \(expected)"
        case .enhancedCode(let got, let expected):
            "enhanced code \(got.map(String.init(describing:)) ?? "none"), expected \(expected.map(String.init(describing:)) ?? "none")"
        case .text(let got, let expected): "text \"\(got)\", expected \"\(expected)\""
        }
    }

    public func error(_ reason: ErrorReason, transcript: Transcript? = nil) -> String {
        switch reason {
        case .connect(let why): return why
        case .noGreeting(let end): return "no greeting: \(end.map { self.end($0, awaiting: "the greeting") } ?? "the connection ended")"
        case .session(let end): return self.end(end, awaiting: transcript.flatMap(self.awaited))
        case .captureEnded(let end): return "the captured session ended early: \(end.map { self.end($0) } ?? "")"
        case .interrupted: return "the run was interrupted before this case ran"
        }
    }

    public func skip(_ reason: SkipReason) -> String {
        func with(_ hint: Hint, _ text: String) -> String { text + (self.hint(hint).map { ": \($0)" } ?? "") }
        switch reason {
        case .needs(let hint):
            switch hint {
            case .credentials: return with(hint, "an authenticated case needs credentials")
            case .trustedSource:
                return with(hint, "a trusted case needs a source address of this machine in a trusted network of the policy")
            case .xclientSource:
                return with(hint, "an XCLIENT case needs a source address of this machine among the policy's xclient_hosts")
            case .proxySource: return with(hint, "a PROXY case needs a source address of this machine among the policy's proxy_hosts")
            case .proxyListener: return with(hint, "a PROXY case needs a listener that expects PROXY headers")
            case .implicitTLS: return with(hint, "the case needs TLS from the first byte (port 465)")
            case .startTLS: return with(hint, "the case needs STARTTLS before its steps")
            case .bearerToken: return with(hint, "XOAUTH2 needs a bearer token")
            case .authFromCapture: return with(hint, "AUTH is replayed only with the captured credentials")
            }
        case .ruleOff(let rule): return "the policy does not enforce \(rule)"
        case .ruleNotApplied(let rule, let first):
            let instead = first.map { " (it refuses step \($0.step + 1) with \($0.rule) first)" } ?? ""
            return "the policy does not apply \(rule) to these steps\(instead)"
        case .stepRefused(let step, let rule, let code, let after):
            let why = rule.map(\.rawValue) ?? "\(code)"
            return "the policy refuses step \(step + 1) (\(why)\(after.map { ", after \($0)" } ?? "")): the case does not apply to it"
        case .stepNotRefusedBy(let rule, let step, let outcome, let after):
            let instead: String
            switch outcome {
            case .refusesWith(let other): instead = "refuses it with \(other)"
            case .accepts: instead = "accepts it"
            case .notReached: instead = "does not reach it"
            }
            let cause = after.map { " (after refusing step \($0.step + 1) with \($0.rule))" } ?? ""
            return "the policy \(instead), not \(rule), at step \(step + 1)\(cause)"
        case .limitNotStated(let limit): return "the policy states no \(limit.rawValue): the server's own limit is not judged"
        case .noGreetingPause:
            return "the policy has no greeting pause (greet_pause_ms), so a client that talks first cannot be told from a fast one"
        case .serverLacks(let capability): return "the server \(self.lacks(capability))"
        case .preludeRefused(let what, let reply):
            let name: String
            switch what {
            case .xclient: name = "XCLIENT"
            case .authentication: name = "authentication for this identity"
            case .startTLS: name = "STARTTLS" + (self.hint(.startTLS).map { " (asked for by \($0))" } ?? "")
            }
            return "the server refused \(name): \(reply?.singleLine ?? "no reply")"
        case .clientTrust(let address, let trusted, let identity):
            return trusted
                ? with(.trustedSource, "the client address \(address) is in a trusted network; \(identity) cases need a source outside it")
                : "the client \(address) is in no trusted network of the policy"
        case .policyLacks(let capability): return "the policy's own session \(self.lacks(capability))"
        case .sourceFamily(let source, let target):
            return "the identity needs the source address \(source), which cannot reach \(target) (another address family)"
        case .preludeFailed(let id): return "the prelude this variant begins with failed: see \(id)"
        case .secondGreetingRefused(let id):
            return
                "the server refuses a second HELO/EHLO after the prelude (RFC 5321 4.1.4 lets it; see \(id)), so a HELO case after it tests nothing"
        case .greetingRefused(let step):
            return
                "the server refused the repeated HELO/EHLO at step \(step + 1) (RFC 5321 4.1.4 lets it), so there was no reset to look for"
        case .manualTLSUnderImplicit: return "the case drives STARTTLS itself; under implicit TLS the whole session is in TLS"
        case .proxyUnderImplicit: return "PROXY cases run on the listener that expects PROXY headers, not over implicit TLS"
        case .notCovered(let gap):
            switch gap {
            case .implicitTLS: return "not covered: a capture cannot read sessions that are TLS from the first octet"
            case .identityVariant: return "not covered: identity variants are run live only"
            case .rawSteps: return "not covered: raw steps are judged live only (a capture splits their octets into other units)"
            case .needsCredentials:
                return with(.credentials, "not covered: an authenticated case needs the credentials to recognise its session")
            case .noSessionFollows: return "not covered: no session in the capture follows these steps"
            case .proxied: return "not covered: sessions behind a PROXY header are the named client's"
            }
        case .implicitTLSSession: return "TLS from the first octet: nothing to judge"
        case .nothingAnswered: return "no command was answered: nothing to judge"
        case .startNotCaptured:
            return
                "the capture holds neither the SYN nor the greeting: the session began before it (or its first packets were dropped), so where it stood is unknown"
        case .clientSentNothing: return "the client sent nothing"
        case .clientNotSMTP(let note): return "nothing to replay: " + self.note(note)
        }
    }

    func lacks(_ capability: SkipReason.Capability) -> String {
        switch capability {
        case .startTLS: "does not offer STARTTLS in its EHLO reply"
        case .chunking: "does not offer CHUNKING (BDAT) in its EHLO reply"
        case .pipelining: "does not offer PIPELINING in its EHLO reply, so the client may not pipeline (RFC 2920)"
        case .size: "does not offer SIZE in its EHLO reply, so a SIZE parameter has nothing to be judged against (RFC 1870)"
        case .authBeforeTLS: "does not offer AUTH before STARTTLS" + (self.hint(.startTLS).map { ": run with \($0)" } ?? "")
        case .xclient: "does not offer XCLIENT to this client"
        case .auth: "does not offer AUTH in its EHLO reply"
        case .authMechanism(let mechanism, let offered): "offers AUTH \(offered.joined(separator: " ")), not \(mechanism)"
        case .bearerToken: "needs a bearer token for XOAUTH2"
        }
    }
}
