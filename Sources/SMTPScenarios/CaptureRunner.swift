import NIOCore
import SMTPCapture
import SMTPPolicy
import SMTPProtocol

/// Runs scenarios against the sessions of a capture: each case is judged on
/// the first recorded session whose client side follows its steps; a case no
/// session follows is not covered.
public struct CaptureRunner: Sendable {
    public let policy: Policy
    public let credentials: Credentials?

    public init(policy: Policy, credentials: Credentials? = nil) {
        self.policy = policy
        self.credentials = credentials
    }

    public func run(_ scenarios: [Scenario], sessions: [CapturedSession], capture: String) async -> RunResult {
        let started = NIODeadline.now()
        var cases: [CaseResult] = []
        for scenario in scenarios { cases.append(await self.judge(scenario, sessions: sessions)) }
        return RunResult(
            target: "capture \(capture)", policy: self.policy.source, profile: self.policy.profile, cases: cases,
            duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
    }

    /// What a client following the scenario sends, as the policy's own session answers it.
    func simulate(_ scenario: Scenario, client: String, server: String) async -> (Transcript, [PolicySession.Reply], String?) {
        var policy = self.policy
        if let credentials = self.credentials {
            policy.authUsers = [
                Policy.AuthUser(
                    name: credentials.user, password: credentials.password, passwordSource: "the command line",
                    oauthToken: credentials.oauthToken)
            ]
        } else {
            policy.supplyMissingPasswords("(from the capture)")
        }
        let peer = SimulatedPeer(policy: policy, clientAddress: client, tls: scenario.tls == .implicit ? .implicit : .starttls)
        var simulator = Executor(scenario: scenario, policy: policy, credentials: self.credentials, deadline: .now() + .seconds(60))
        simulator.keepSecrets = true
        simulator.serverAddress = server
        let transcript = await simulator.run(on: peer, client: client, server: "policy")
        return (transcript, await peer.annotations, simulator.unsupported)
    }

    /// The client units of a transcript that a match compares, with their positions.
    static func units(_ transcript: Transcript) -> [(index: Int, exchange: Transcript.Exchange)] {
        transcript.exchanges.enumerated().compactMap { index, exchange in
            exchange.sent != nil && exchange.kind != .unsolicited ? (index, exchange) : nil
        }
    }

    /// Whether a captured client unit is the one the scenario's client sends.
    /// Secrets are compared by their octets (the credentials are known); a
    /// CRAM-MD5 response by the password behind its digest, since each
    /// response answers its own one-time challenge.
    func same(_ wanted: Transcript.Exchange, _ captured: Transcript.Exchange, challenges: (wanted: [UInt8]?, captured: [UInt8]?)) -> Bool {
        guard let want = wanted.sent, let have = captured.sent else { return false }
        if wanted.kind == .body || captured.kind == .body { return wanted.kind == captured.kind }
        guard (wanted.kind == .saslResponse) == (captured.kind == .saslResponse) else { return false }
        let wantBytes = want.withheld ?? (Printable.unescape(want.text) + [0x0D, 0x0A])
        guard let haveBytes = have.withheld else { return want.text.caseInsensitiveCompare(have.text) == .orderedSame }
        if let wantChallenge = challenges.wanted, let haveChallenge = challenges.captured, let wantCram = Self.cram(wantBytes),
            let haveCram = Self.cram(haveBytes), let configured = self.credentials?.password
        {
            let password = [configured, configured + "-wrong"].first {
                SASL.cramMD5Digest(password: $0, challenge: wantChallenge) == wantCram.digest
            }
            return wantCram.user == haveCram.user
                && password.map { SASL.cramMD5Digest(password: $0, challenge: haveChallenge) == haveCram.digest } == true
        }
        return wantBytes == haveBytes
    }

    /// A CRAM-MD5 response line: user and hex digest.
    static func cram(_ line: [UInt8]) -> (user: String, digest: String)? {
        let text = String(decoding: line.prefix { $0 != 0x0D }, as: UTF8.self)
        guard let decoded = SASL.decodeBase64(text) else { return nil }
        let parts = decoded.split(separator: 0x20, maxSplits: 1)
        guard parts.count == 2, parts[1].count == 32 else { return nil }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
    }

    /// The decoded 334 challenge just before an exchange, if there is one.
    static func challenge(before index: Int, in transcript: Transcript) -> [UInt8]? {
        guard index > 0, let reply = transcript.exchanges[index - 1].reply, reply.code == .authContinue else { return nil }
        return SASL.decodeBase64(reply.lines.first ?? "")
    }

    func judge(_ scenario: Scenario, sessions: [CapturedSession]) async -> CaseResult {
        func skip(_ reason: String) -> CaseResult {
            CaseResult(scenario: scenario, verdict: .skipped(reason), transcript: nil, duration: 0)
        }
        if scenario.tls == .implicit { return skip("not covered: a capture cannot read sessions that are TLS from the first octet") }
        if scenario.derivedExpectations { return skip("not covered: identity variants are run live only") }
        if scenario.steps.contains(where: { if case .raw = $0.action { true } else { false } }) {
            return skip("not covered: raw steps are judged live only (a capture splits their octets into other units)")
        }
        if scenario.identity == .authenticated && self.credentials == nil {
            return skip("not covered: an authenticated case needs --user and --password-env to recognise its session")
        }
        // Behind a PROXY header the session is the named client's: identity
        // variants are run live only, so such sessions match no case here.
        for session in sessions where !session.implicitTLS && session.proxiedClient == nil {
            let client = session.client.addressText
            let trusted = self.policy.isTrusted(address: client)
            guard (scenario.identity == .trusted) == trusted else { continue }
            let (expected, annotations, unsupported) = await self.simulate(scenario, client: client, server: session.server.description)
            if unsupported != nil { continue }
            // The steps' units, in order, QUIT excepted.
            let wanted = Self.units(expected).filter { expected.exchanges[$0.index].step != nil }
            let recorded = Self.units(session.transcript)
            guard wanted.count <= recorded.count else { continue }
            var follows = true
            for (want, have) in zip(wanted, recorded) {
                let challenges = (
                    Self.challenge(before: want.index, in: expected), Self.challenge(before: have.index, in: session.transcript)
                )
                if !self.same(want.exchange, have.exchange, challenges: challenges) {
                    follows = false
                    break
                }
            }
            guard follows else { continue }
            var actual = session.transcript
            for index in actual.exchanges.indices { actual.exchanges[index].step = nil }
            for (want, have) in zip(wanted, recorded) { actual.exchanges[have.index].step = want.exchange.step }
            // The policy's own session may end before the steps do (a 421 and
            // close); commands the real client still sent belong to the steps
            // they spell, so their replies are judged where they came.
            var nextStep = (wanted.last?.exchange.step ?? -1) + 1
            let expander = Executor(scenario: scenario, policy: self.policy, credentials: self.credentials, deadline: .now())
            for have in recorded.dropFirst(wanted.count) where nextStep < scenario.steps.count {
                guard case .send(let template) = scenario.steps[nextStep].action,
                    have.exchange.sent?.text.caseInsensitiveCompare(expander.expand(template)) == .orderedSame
                else { break }
                actual.exchanges[have.index].step = nextStep
                nextStep += 1
            }
            // An unsolicited reply belongs to the step before it.
            var last: Int?
            for index in actual.exchanges.indices {
                if actual.exchanges[index].kind == .unsolicited {
                    actual.exchanges[index].step = last
                } else if let step = actual.exchanges[index].step {
                    last = step
                }
            }
            let judge = Judge(scenario: scenario, oracle: PolicyOracle(policy: self.policy), expected: expected, annotations: annotations)
            var verdict = judge.verdict(actual: actual)
            if case .error = verdict, case .failed = actual.end {
                verdict = .error("the captured session ended early: \(actual.end?.description ?? "")")
            }
            return CaseResult(scenario: scenario, verdict: verdict, transcript: actual, duration: 0)
        }
        return skip("not covered: no session in the capture follows these steps")
    }
}
