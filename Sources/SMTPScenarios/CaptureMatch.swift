import SMTPPolicy
import SMTPProtocol

/// `run --capture`: each case judged on the first recorded session whose
/// client side follows its steps; a case no session follows is not covered.
public struct CaptureMatch: Sendable {
    public let policy: Policy
    public let credentials: Credentials?

    public init(policy: Policy, credentials: Credentials? = nil) {
        self.policy = policy
        self.credentials = credentials
    }

    /// The policy the simulation runs: with the run's credentials, so that
    /// captured AUTH exchanges can be recognised.
    private var simulatedPolicy: Policy {
        if let credentials = self.credentials { return self.policy.using(credentials) }
        var policy = self.policy
        policy.supplyMissingPasswords("(from the capture)")
        return policy
    }

    /// Every scenario judged on the sessions of one capture file.
    public func run(_ scenarios: [Scenario], sessions: [RecordedSession], file: String) async -> RunResult {
        let started = ContinuousClock.now
        var cases: [CaseResult] = []
        for scenario in scenarios { cases.append(await self.judge(scenario, sessions: sessions, file: file)) }
        let elapsed = ContinuousClock.now - started
        return RunResult(
            target: "capture \(file)", policy: self.policy.source, profile: self.policy.profile, cases: cases,
            duration: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    public func judge(_ scenario: Scenario, sessions: [RecordedSession], file: String) async -> CaseResult {
        func skip(_ gap: SkipReason.CoverageGap) -> CaseResult {
            CaseResult(scenario: scenario, verdict: .skipped(.notCovered(gap)), transcript: nil, duration: 0)
        }
        if scenario.tls == .implicit { return skip(.implicitTLS) }
        if scenario.derivedExpectations { return skip(.identityVariant) }
        if scenario.steps.contains(where: { if case .raw = $0.action { true } else { false } }) { return skip(.rawSteps) }
        if scenario.identity == .authenticated && self.credentials == nil { return skip(.needsCredentials) }
        // Behind a PROXY header the session is the named client's: identity
        // variants are run live only, so such sessions match no case here.
        for session in sessions where !session.implicitTLS && session.proxiedClient == nil {
            let trusted = self.policy.isTrusted(address: session.clientAddress)
            guard (scenario.identity == .trusted) == trusted else { continue }
            let expected = await Simulation.run(
                scenario, policy: self.simulatedPolicy, credentials: self.credentials, client: session.clientAddress, tls: .starttls,
                server: session.server, keepSecrets: true)
            if expected.unsupported != nil { continue }
            guard let actual = self.follow(scenario, expected: expected.transcript, session: session.transcript) else { continue }
            let judge = Judge(scenario: scenario, policy: self.policy, expected: expected, conformance: session.conformance(self.policy))
            var verdict = judge.verdict(actual: actual)
            if case .error = verdict, case .failed = actual.end { verdict = .error(.captureEnded(actual.end)) }
            return CaseResult(scenario: scenario, verdict: verdict, transcript: actual, duration: 0)
        }
        return skip(.noSessionFollows)
    }

    /// The recorded session with its exchanges numbered by the scenario's
    /// steps, if its client follows them; `nil` if it does not.
    func follow(_ scenario: Scenario, expected: Transcript, session recorded: Transcript) -> Transcript? {
        // The steps' units, in order, QUIT excepted.
        let wanted = Self.units(expected).filter { expected.exchanges[$0].step != nil }
        let captured = Self.units(recorded)
        guard wanted.count <= captured.count else { return nil }
        for (want, have) in zip(wanted, captured) {
            let challenges = (Self.challenge(before: want, in: expected), Self.challenge(before: have, in: recorded))
            guard let wantUnit = expected.exchanges[want].sent, let haveUnit = recorded.exchanges[have].sent,
                self.same(wantUnit, haveUnit, challenges: challenges)
            else { return nil }
        }
        var actual = recorded
        for index in actual.exchanges.indices { actual.exchanges[index].step = nil }
        for (want, have) in zip(wanted, captured) { actual.exchanges[have].step = expected.exchanges[want].step }
        // The policy's own session may end before the steps do (a 421 and
        // close); commands the real client still sent belong to the steps
        // they spell, so their replies are judged where they came.
        var nextStep = (wanted.last.flatMap { expected.exchanges[$0].step } ?? -1) + 1
        let placeholders = Placeholders(
            policy: self.simulatedPolicy, credentials: self.credentials, serverIP: Placeholders.literal(of: recorded.server))
        for have in captured.dropFirst(wanted.count) where nextStep < scenario.steps.count {
            guard case .send(let template) = scenario.steps[nextStep].action, let unit = actual.exchanges[have].sent,
                Self.sameLine(unit.line, Array(placeholders.expand(template).utf8))
            else { break }
            actual.exchanges[have].step = nextStep
            nextStep += 1
        }
        // An unsolicited reply belongs to the step before it.
        var last: Int?
        for index in actual.exchanges.indices {
            if actual.exchanges[index].role == .unsolicited {
                actual.exchanges[index].step = last
            } else if let step = actual.exchanges[index].step {
                last = step
            }
        }
        return actual
    }

    /// The indices of the client units a match compares.
    static func units(_ transcript: Transcript) -> [Int] {
        transcript.exchanges.indices.filter { transcript.exchanges[$0].sent != nil && transcript.exchanges[$0].role == .answer }
    }

    static func sameLine(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { ASCII.lowercased($0) == ASCII.lowercased($1) }
    }

    /// Whether a captured client unit is the one the scenario's client sends.
    /// Secrets are compared by their octets (the credentials are known); a
    /// CRAM-MD5 response by the password behind its digest, since each
    /// response answers its own one-time challenge.
    func same(_ want: ClientUnit, _ have: ClientUnit, challenges: (wanted: [UInt8]?, captured: [UInt8]?)) -> Bool {
        switch (want.payload, have.payload) {
        case (.messageBody, .messageBody):
            return true
        case (.messageBody, _), (_, .messageBody):
            return false
        case (.bdatChunk(let a), .bdatChunk(let b)):
            return a == b && Self.sameLine(want.line, have.line)
        default:
            break
        }
        // The octets each side sent: a secret by the octets behind it.
        guard let wantBytes = want.isRedacted ? want.withheld : want.line, let haveBytes = have.isRedacted ? have.withheld : have.line
        else { return false }
        if want.isRedacted || have.isRedacted {
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
        return Self.sameLine(wantBytes, haveBytes)
    }

    /// A CRAM-MD5 response line: user and hex digest.
    static func cram(_ line: [UInt8]) -> (user: String, digest: String)? {
        guard let decoded = SASL.decodeBase64(String(decoding: line, as: UTF8.self)) else { return nil }
        let parts = decoded.split(separator: 0x20, maxSplits: 1)
        guard parts.count == 2, parts[1].count == 32 else { return nil }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
    }

    /// The decoded 334 challenge just before an exchange, if there is one.
    static func challenge(before index: Int, in transcript: Transcript) -> [UInt8]? {
        guard index > 0, let reply = transcript.exchanges[index - 1].reply, reply.code == .authContinue else { return nil }
        return SASL.decodeBase64(reply.lines.first ?? "")
    }
}
