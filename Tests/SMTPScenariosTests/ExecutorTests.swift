import SMTPPolicy
import SMTPProtocol
import SMTPScenarios
import SMTPTestSupport
import Testing

/// A server played in memory: each line the client sends gets the replies
/// `answer` gives; everything the client wrote is kept.
actor ScriptedPeer: SessionPeer {
    private var framer = LineFramer()
    private var queue: [ServerResponse]
    private var closed = false
    private let answer: @Sendable (String) -> [String]
    private(set) var written: [UInt8] = []

    init(greeting: String = "220 mx.example.net ESMTP", answer: @escaping @Sendable (String) -> [String]) {
        self.queue = [Recorded.response(greeting)]
        self.answer = answer
    }

    func send(_ bytes: [UInt8]) async throws(PeerError) {
        self.written += bytes
        self.framer.append(bytes)
        while let line = self.framer.next() {
            for reply in self.answer(String(decoding: line.bytes, as: UTF8.self)) { self.queue.append(Recorded.response(reply)) }
        }
    }

    func nextEvent(timeout: Duration) async -> PeerEvent {
        if !self.queue.isEmpty { return .response(self.queue.removeFirst()) }
        return self.closed ? .closed(unconsumed: []) : .timedOut(unconsumed: [])
    }

    func startTLS(timeout: Duration) async throws(PeerError) -> TLSOutcome {
        TLSOutcome(version: "TLSv1.3", certificate: nil, droppedPlaintext: [])
    }

    func close() async { self.closed = true }

    var text: String { String(decoding: self.written, as: UTF8.self) }
}

@Suite struct ExecutorTests {
    static let credentials = Credentials(user: "alice", password: "the-real-password")

    /// An EHLO reply with these extensions; everything else gets 250.
    static func server(_ extensions: [String]) -> @Sendable (String) -> [String] {
        { line in
            let verb = line.split(separator: " ").first.map { $0.uppercased() } ?? ""
            switch verb {
            case "EHLO":
                return [
                    (["250-mx.example.net"] + extensions.dropLast().map { "250-\($0)" } + ["250 \(extensions.last ?? "HELP")"]).joined(
                        separator: "\n")
                ]
            case "QUIT": return ["221 2.0.0 Bye"]
            case "DATA": return ["354 go"]
            case "STARTTLS": return ["454 4.7.0 TLS not available now"]
            case "AUTH": return ["530 5.7.0 Must issue a STARTTLS command first"]
            default: return ["250 2.0.0 Ok"]
            }
        }
    }

    static func run(_ id: String, against peer: ScriptedPeer, plaintextSecrets: Bool = true) async throws -> (Transcript, SkipReason?) {
        let scenario = try #require(try battery().first { $0.id == id })
        var executor = Executor(scenario: scenario, policy: .defaultSite(), credentials: Self.credentials, deadline: .now + .seconds(5))
        executor.plaintextSecrets = plaintextSecrets
        let transcript = await executor.run(on: peer, client: "192.0.2.10:40000", server: "198.51.100.25:25")
        return (transcript, executor.unsupported)
    }

    /// 6. A client pipelines only where the server offers PIPELINING (RFC
    /// 2920): the case is skipped, and the session still ends with QUIT.
    /// Issue 16, 2. A login that is an address is the sender address; a
    /// policy's `address:` for the user wins; a bare login gets the local domain.
    @Test(
        arguments: [
            ("alice@example.net", nil, "MAIL FROM:<alice@example.net>"),
            ("alice", "billing@example.net", "MAIL FROM:<billing@example.net>"),
            ("alice", nil, "MAIL FROM:<alice@example.net>"),
        ] as [(String, String?, String)])
    func theSenderIsTheLoginWhereItIsAnAddress(login: String, address: String?, mail: String) async throws {
        let scenario = try #require(try battery().first { $0.id == "auth.relay.plain" })
        let credentials = Credentials(user: login, password: "pw")
        let policy = Policy.defaultSite().using(credentials)
        var withAddress = policy
        withAddress.authUsers[0].address = address
        let peer = ScriptedPeer { line in
            line.hasPrefix("AUTH") ? ["235 2.7.0 ok"] : Self.server(["AUTH PLAIN"])(line)
        }
        var executor = Executor(scenario: scenario, policy: withAddress, credentials: credentials, deadline: .now + .seconds(5))
        _ = await executor.run(on: peer, client: "192.0.2.10:40000", server: "198.51.100.25:25")
        #expect((await peer.text).contains(mail + "\r\n"))
        #expect(!(await peer.text).contains("@example.net@"))
    }

    @Test func severalCommandLinesInOneRawWriteAreAPipeline() async throws {
        let lacking = ScriptedPeer(answer: Self.server(["SIZE 1000000", "8BITMIME"]))
        let (_, skip) = try await Self.run("discipline.commands-after-quit", against: lacking)
        #expect(skip == .serverLacks(.pipelining))
        #expect(!(await lacking.text).contains("NOOP"))
        let offering = ScriptedPeer(answer: Self.server(["PIPELINING"]))
        let (_, none) = try await Self.run("discipline.commands-after-quit", against: offering)
        #expect(none == nil)
        #expect((await offering.text).contains("QUIT\r\nNOOP\r\n"))
        // Message text after a 354 is not a pipeline: the smuggling case writes its body.
        let body = ScriptedPeer(answer: Self.server(["SIZE 1000000"]))
        let (_, bodySkip) = try await Self.run("smuggling.data.lf-dot-lf", against: body)
        #expect(bodySkip == nil)
        #expect((await body.text).contains("second message"))
    }

    @Test func noPipeliningOfferedSkipsThePipelinedCase() async throws {
        let peer = ScriptedPeer(answer: Self.server(["SIZE 1000000", "8BITMIME"]))
        let (transcript, skip) = try await Self.run("discipline.pipelined-transaction", against: peer)
        #expect(skip == .serverLacks(.pipelining))
        #expect(!(await peer.text).contains("MAIL FROM"))
        #expect(transcript.exchanges.last?.command?.verb == .quit)
    }

    /// 4. No SIZE offered: a MAIL with SIZE has nothing to be judged against.
    @Test func noSizeOfferedSkipsTheSizeCase() async throws {
        let (_, skip) = try await Self.run("discipline.size-exceeded", against: ScriptedPeer(answer: Self.server(["PIPELINING"])))
        #expect(skip == .serverLacks(.size))
    }

    /// 8. AUTH not offered (only after STARTTLS): AUTH cases are skipped,
    /// pointing at STARTTLS, and no credentials go out.
    @Test func authNotOfferedSkipsAndSendsNothing() async throws {
        for id in ["auth.wrong-password", "auth.cancel", "auth.bad-base64"] {
            let peer = ScriptedPeer(answer: Self.server(["PIPELINING", "STARTTLS"]))
            let (_, skip) = try await Self.run(id, against: peer)
            #expect(skip == .serverLacks(.authBeforeTLS), "\(id)")
            #expect(!(await peer.text).contains("AUTH"), "\(id)")
        }
    }

    /// The probe of AUTH before TLS tests the refusal of AUTH itself: it goes
    /// out, with a made-up password, never the run's.
    @Test func theProbeOfAuthBeforeTLSSendsAMadeUpPassword() async throws {
        let peer = ScriptedPeer(answer: Self.server(["PIPELINING", "STARTTLS"]))
        let (transcript, skip) = try await Self.run("tls.auth-before-starttls", against: peer, plaintextSecrets: false)
        #expect(skip == nil)
        let auth = try #require(transcript.exchanges.first { $0.command?.verb == .auth })
        #expect(auth.reply?.code.value == 530)
        let line = try #require((await peer.text).split(separator: "\r\n").first { $0.hasPrefix("AUTH PLAIN ") })
        let decoded = String(decoding: SASL.decodeBase64(line.dropFirst("AUTH PLAIN ".count)) ?? [], as: UTF8.self)
        #expect(!decoded.contains(Self.credentials.password))
    }

    /// The run's password never goes out in plain text when the run asked for TLS.
    @Test func theRealPasswordStaysOutOfPlainText() async throws {
        let peer = ScriptedPeer(answer: Self.server(["PIPELINING", "AUTH PLAIN LOGIN"]))
        let (_, skip) = try await Self.run("auth.relay.plain", against: peer, plaintextSecrets: false)
        #expect(skip == .needs(.startTLS))
        #expect(!(await peer.text).contains("AUTH"))
    }

    /// 6. A refused STARTTLS answers nothing inside TLS: the injection probe passes.
    @Test func theInjectionProbePassesWhenSTARTTLSIsRefused() async throws {
        let scenario = try #require(try battery().first { $0.id == "tls.starttls-injection" })
        let peer = ScriptedPeer(answer: Self.server(["PIPELINING", "STARTTLS"]))
        var executor = Executor(scenario: scenario, policy: .defaultSite(), credentials: nil, deadline: .now + .seconds(5))
        let actual = await executor.run(on: peer, client: "192.0.2.10:40000", server: "198.51.100.25:25")
        let policy = Policy.defaultSite()
        let expected = await Simulation.run(scenario, policy: policy, credentials: nil, client: "192.0.2.10", tls: .starttls, server: nil)
        let verdict = Judge(
            scenario: scenario, policy: policy, expected: expected, conformance: Conformance(policy: policy, client: "192.0.2.10")
        )
        .verdict(actual: actual)
        #expect(verdict == .passed, "\(verdict)")
    }
}
