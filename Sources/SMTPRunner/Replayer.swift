import NIOCore
import SMTPCapture
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPScenarios

/// Re-drives the client side of captured sessions against a live server and
/// shows every reply that changed: code, enhanced code, or text once queue
/// ids, dates, host names and session ids are taken out. With a policy, the
/// replayed session is judged against it too, by the one judge.
public struct Replayer: Sendable {
    public struct Options: Sendable {
        public var target: TargetAddress
        public var timeout: TimeAmount
        /// Replay AUTH exchanges with the captured credentials.
        public var authFromCapture: Bool
        /// More patterns (regular expressions) to take out before comparing.
        public var normalize: [String]
        public var sourceAddress: String?
        /// Judge the replayed sessions against this policy as well.
        public var policy: Policy?
        /// TLS for every replayed session: `starttls` upgrades after the
        /// greeting, before the captured commands; `implicit` handshakes first.
        public var tls: ScenarioRunner.TransportTLS
        public var tlsOptions: ClientTLSOptions

        public init(
            target: TargetAddress, timeout: TimeAmount = .seconds(30), authFromCapture: Bool = false, normalize: [String] = [],
            sourceAddress: String? = nil, policy: Policy? = nil, tls: ScenarioRunner.TransportTLS = .none,
            tlsOptions: ClientTLSOptions = ClientTLSOptions()
        ) {
            self.tls = tls
            self.tlsOptions = tlsOptions
            self.target = target
            self.timeout = timeout
            self.authFromCapture = authFromCapture
            self.normalize = normalize
            self.sourceAddress = sourceAddress
            self.policy = policy
        }
    }

    public let options: Options
    private let comparison: ReplyComparison

    public init(_ options: Options) throws {
        self.options = options
        self.comparison = try ReplyComparison(extra: options.normalize)
    }

    /// One case per session: passed when every reply is the same after
    /// normalisation (and, with a policy, keeps it), failed with each difference.
    public func replay(_ session: RecordedSession, capture: String) async -> CaseResult {
        let started = NIODeadline.now()
        var scenario = Scenario(
            id: "session-\(session.number)", title: "replay of \(session.client) -> \(session.server)", tags: ["replay"], file: capture)
        scenario.line = session.number
        func result(_ verdict: Verdict, _ transcript: Transcript?) -> CaseResult {
            CaseResult(
                scenario: scenario, verdict: verdict, transcript: transcript,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
        }
        if session.implicitTLS { return result(.skipped(.implicitTLSSession), nil) }
        let recorded = session.transcript.exchanges
        guard recorded.contains(where: { $0.sent != nil }) else {
            if let opaque = session.transcript.notes.first(where: { if case .clientNotSMTP = $0 { true } else { false } }) {
                return result(.skipped(.clientNotSMTP(opaque)), nil)
            }
            return result(.skipped(.clientSentNothing), nil)
        }
        // On loopback the captured client's own address can be bound again, so
        // that a client the policy trusts is trusted in the replay too.
        var source = self.options.sourceAddress
        if source == nil && self.options.target.isLoopback && IPAddressText.ipv4(session.clientAddress)?.first == 127 {
            source = session.clientAddress
        }
        let connection: SMTPClientConnection
        do {
            var configuration = SMTPClientConnection.Configuration(
                host: self.options.target.host, port: self.options.target.port, sourceAddress: source)
            if self.options.tls == .implicit { configuration.implicitTLS = self.options.tlsOptions }
            connection = try await SMTPClientConnection.connect(configuration)
        } catch {
            return result(.error(.connect(error.description)), nil)
        }
        var run = Run(replayer: self, connection: connection, deadline: started + self.options.timeout)
        if let implicit = connection.implicitTLSOutcome {
            run.live.tls = TLSRecord(mode: .implicit, at: 0, version: implicit.version, certificate: implicit.certificate)
        }
        let stopped = await run.go(recorded, helo: session.transcript.exchanges.first { [.ehlo, .helo].contains($0.command?.verb) })
        await connection.close()
        var live = run.live
        if live.end == nil { live.end = .closedByClient(at: Double((NIODeadline.now() - started).nanoseconds) / 1e9) }
        if let stopped { return result(stopped, live) }
        var failures = run.differences
        if let policy = self.options.policy {
            let client = Endpoints.ip(of: live.client) ?? session.clientAddress
            failures += Audit.failures(Conformance(policy: policy, client: client).walk(live), in: live)
        }
        return result(failures.isEmpty ? .passed : .failed(failures), live)
    }

    /// One replay in progress.
    private struct Run {
        let replayer: Replayer
        let connection: SMTPClientConnection
        let deadline: NIODeadline
        var live: Transcript
        var differences: [Failure] = []
        var hosts = Set<String>()

        init(replayer: Replayer, connection: SMTPClientConnection, deadline: NIODeadline) {
            self.replayer = replayer
            self.connection = connection
            self.deadline = deadline
            self.live = Transcript(client: connection.localAddress, server: connection.remoteAddress)
        }

        func read() async -> ServerResponse? {
            if case .response(let response) = await self.connection.nextEvent(timeout: max(self.deadline - NIODeadline.now(), .zero)) {
                return response
            }
            return nil
        }

        /// Replays the captured exchanges; with `--tls starttls` an upgrade
        /// comes first, and a verdict (skip or error) when it cannot be had.
        mutating func go(_ recorded: [Transcript.Exchange], helo: Transcript.Exchange?) async -> Verdict? {
            // The greeting names the host on both sides: those names are normalised away.
            let banner = await self.read()
            for response in [recorded.first(where: { $0.role == .greeting })?.reply, banner?.reply] {
                if let name = response?.textLines.first?.split(separator: " ").first { self.hosts.insert(String(name)) }
            }
            self.live.exchanges.append(.init(role: .greeting, response: banner))
            if self.replayer.options.tls == .starttls {
                if let verdict = await self.upgrade(helo: helo) { return verdict }
            }
            await self.replay(recorded)
            return nil
        }

        /// EHLO (with the captured client's name), STARTTLS and the
        /// handshake, none of them compared: the captured session then
        /// starts again inside TLS with its own EHLO, as RFC 3207 4.2 wants.
        mutating func upgrade(helo: Transcript.Exchange?) async -> Verdict? {
            let name = helo?.command?.argument.split(separator: " ").first.map(String.init) ?? "smtpcheck.invalid"
            guard let ehlo = await self.prelude("EHLO \(name)") else { return .error(.session(self.live.end ?? .closedByServer(at: 0))) }
            guard ehlo.reply?.offers("STARTTLS") == true else { return .skipped(.serverLacks(.startTLS)) }
            guard let ready = await self.prelude("STARTTLS") else { return .error(.session(self.live.end ?? .closedByServer(at: 0))) }
            guard ready.reply?.code == .serviceReady else { return .skipped(.preludeRefused(what: .startTLS, reply: ready)) }
            do {
                let outcome = try await self.connection.startTLS(self.replayer.options.tlsOptions)
                self.live.tls = TLSRecord(
                    mode: .starttls, at: 0, version: outcome.version, certificate: outcome.certificate,
                    droppedPlaintext: outcome.droppedPlaintext)
                return nil
            } catch {
                self.live.end = .failed(.tlsHandshake(error.description), at: 0)
                return .error(.session(.failed(.tlsHandshake(error.description), at: 0)))
            }
        }

        /// Sends a command of the replay's own (not compared) and reads its reply.
        mutating func prelude(_ text: String) async -> ServerResponse? {
            let line = Array(text.utf8)
            do {
                try await self.connection.send(line + [0x0D, 0x0A])
            } catch {
                self.live.end = .failed(.writeFailed(error.description), at: 0)
                return nil
            }
            let response = await self.read()
            self.live.exchanges.append(.init(role: .answer, sent: .command(line), response: response))
            return response
        }

        mutating func replay(_ recorded: [Transcript.Exchange]) async {
            var index = recorded.firstIndex { $0.role != .greeting } ?? recorded.count
            while index < recorded.count {
                // A pipelined group goes out in one write, as it was captured;
                // a message body never does: it waits for the 354 (RFC 2920 3.1).
                var group = [index]
                if let id = recorded[index].pipelineGroup {
                    while let next = group.last.map({ $0 + 1 }), next < recorded.count, recorded[next].pipelineGroup == id,
                        recorded[next].kind != .body
                    {
                        group.append(next)
                    }
                }
                let sendable = group.filter { recorded[$0].sent != nil }
                var bytes: [UInt8] = []
                for member in sendable {
                    guard let octets = self.octets(for: recorded[member], at: member) else { break }
                    bytes += octets
                }
                guard !bytes.isEmpty || sendable.isEmpty else { return }
                if !bytes.isEmpty {
                    do {
                        try await self.connection.send(bytes)
                    } catch {
                        self.live.end = .failed(.writeFailed(error.description), at: 0)
                        return
                    }
                }
                for member in sendable where self.live.end == nil {
                    guard await self.answer(recorded[member], at: member) else { return }
                }
                index = (group.last ?? index) + 1
            }
        }

        /// What to send for a captured exchange, or `nil` where the replay
        /// stops before it (a secret not replayed, a body the server refused).
        mutating func octets(for exchange: Transcript.Exchange, at index: Int) -> [UInt8]? {
            guard let unit = exchange.sent else { return [] }
            if unit.command?.verb == .starttls, self.replayer.options.tls != .none {
                // Already inside TLS: what the capture holds after its STARTTLS is encrypted.
                self.live.notes.append(.replayStopped(.startTLS, exchange: index))
                return nil
            }
            if unit.command?.verb == .auth, unit.command?.argument.uppercased().hasPrefix("CRAM-MD5") == true {
                self.live.notes.append(.replayStopped(.oneTimeChallenge, exchange: index))
                return nil
            }
            switch unit.payload {
            case .messageBody:
                // The body goes only where this server took the DATA before it.
                guard self.live.exchanges.last?.reply?.code == .startMailInput else {
                    self.live.notes.append(.replayStopped(.dataRefused, exchange: index))
                    return nil
                }
                let header = Array("X-Smtpcheck-Replay: a stand-in for a captured body of \(unit.octets) octets\r\n\r\n".utf8)
                return DotStuffing.encode(header)
            case .bdatChunk(let size):
                return unit.line + unit.lineEnd.bytes + [UInt8](repeating: UInt8(ascii: "x"), count: min(size, 64 * 1024 * 1024))
            case .saslResponse where unit.isRedacted && !self.replayer.options.authFromCapture:
                self.live.notes.append(.replayStopped(.secretNotReplayed, exchange: index))
                return nil
            default:
                guard let octets = unit.replayableOctets else {
                    self.live.notes.append(.replayStopped(.secretNotReplayed, exchange: index))
                    return nil
                }
                return octets
            }
        }

        /// Reads the reply to one replayed unit and compares it; `false` when the replay stops.
        mutating func answer(_ exchange: Transcript.Exchange, at index: Int) async -> Bool {
            let now = await self.read()
            var replayed = Transcript.Exchange(role: .answer, step: index, sent: exchange.sent, response: now)
            replayed.sent?.withheld = nil
            replayed.pipelineGroup = exchange.pipelineGroup
            replayed.encrypted = self.live.tls != nil
            self.live.exchanges.append(replayed)
            var captured = exchange.response
            if self.live.tls != nil, !exchange.encrypted, exchange.command?.verb == .ehlo, case .reply(var reply) = captured {
                // Inside TLS a server no longer offers STARTTLS (RFC 3207 4.2):
                // the plain-text capture's offer is not compared.
                reply.lines.removeAll { $0.uppercased() == "STARTTLS" }
                captured = .reply(reply)
            }
            let fields = self.replayer.comparison.changes(recorded: captured, now: now, hosts: self.hosts)
            if !fields.isEmpty {
                self.differences.append(
                    Failure(step: index, rule: nil, expected: .asCaptured(exchange.response), got: .changed(now, fields: fields)))
            }
            if exchange.command?.verb == .starttls, now?.reply?.code == .serviceReady {
                self.live.notes.append(.replayStopped(.startTLS, exchange: index))
                return false
            }
            if now == nil {
                self.live.notes.append(.replayStopped(.serverStopped, exchange: index))
                return false
            }
            return true
        }
    }
}

extension CapturedSession {
    /// The session as the judge reads it.
    public var recorded: RecordedSession {
        RecordedSession(
            number: self.number, client: self.client.description, server: self.server.description, clientAddress: self.client.addressText,
            proxiedClient: self.proxiedClient, implicitTLS: self.implicitTLS, transcript: self.transcript)
    }
}
