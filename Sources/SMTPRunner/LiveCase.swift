import NIOCore
import SMTPCapture
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPScenarios

/// One case against a live server: connect as the case's identity, run its
/// steps, run them again against the policy, and judge.
struct LiveCase: Sendable {
    let policy: Policy
    let credentials: Credentials?
    let address: TargetAddress
    let trustedSource: String?
    let timeout: TimeAmount
    let tls: ScenarioRunner.TransportTLS
    let tlsOptions: ClientTLSOptions
    /// Where cases that need TLS from the first byte go, if anywhere.
    let implicitAddress: TargetAddress?
    let record: Bool
    /// The listener that expects PROXY headers, if any.
    let proxyAddress: TargetAddress?
    /// Sources this machine can bind that the policy lets use XCLIENT or PROXY.
    let xclientSource: String?
    let proxySource: String?

    /// A case's result, and its traffic as packets when the run records.
    struct Outcome: Sendable {
        var result: CaseResult
        var packets: [PcapWriter.Packet] = []
    }

    /// The client a proxy or XCLIENT names: an address in a trusted network,
    /// or a documentation address (RFC 5737) that is in none.
    func impersonated(trusted: Bool) -> String {
        trusted ? (self.policy.trustedNetworks.first?.firstAddressText ?? "127.0.0.2") : "192.0.2.25"
    }

    /// Connects once and waits for the greeting: `nil` when the target
    /// speaks SMTP (whatever its greeting's code: a 554 is a server's
    /// answer), else why it cannot be tested. Every case is then an error,
    /// not a skip: nothing could be judged.
    func probe() async -> String? {
        let connection: SMTPClientConnection
        do {
            var configuration = SMTPClientConnection.Configuration(
                host: self.address.host, port: self.address.port, connectTimeout: min(self.timeout, .seconds(10)),
                implicitTLS: self.tls == .implicit ? self.tlsOptions : nil)
            configuration.handshakeTimeout = self.timeout
            connection = try await SMTPClientConnection.connect(configuration)
        } catch {
            return error.description
        }
        let event = await connection.nextEvent(timeout: self.timeout)
        await connection.close()
        func preview(_ octets: [UInt8]) -> String { Printable.escape(octets.prefix(48)) }
        switch event {
        case .response(.reply):
            return nil
        case .response(.malformed(let malformed)):
            // A greeting with a code but a flaw is SMTP, and a finding of
            // the cases; one with no three-digit code at all is not SMTP.
            let first = malformed.lines.first ?? []
            if malformed.overLimit { return malformed.description }
            if first.count >= 3 && first.prefix(3).allSatisfy({ (0x30...0x39).contains($0) }) { return nil }
            return "it does not speak SMTP: its greeting is a \(malformed.description)"
        case .closed(let unconsumed):
            return unconsumed.isEmpty
                ? "it closed the connection without a greeting" : "it sent \(preview(unconsumed)) and closed the connection: not SMTP"
        case .reset:
            return "it reset the connection without a greeting"
        case .timedOut(let unconsumed):
            let seconds = self.timeout.nanoseconds / 1_000_000_000
            return unconsumed.isEmpty
                ? "no greeting within \(seconds) s" : "no greeting within \(seconds) s: only \(preview(unconsumed)) came"
        case .plaintextAfterTLS(let octets, _):
            return "\(octets) octets of plain text came inside TLS"
        case .limitExceeded(let reason), .failed(let reason):
            return reason
        }
    }

    /// How a case connects: from where, through what, as whom.
    private struct Plan {
        var source: String?
        var preamble: [UInt8]?
        var prelude = Executor.Prelude.none
        var proxied: String?
        var implicit = false
    }

    private enum Planned {
        case plan(Plan)
        case skip(SkipReason)
    }

    /// The family a source address must have to reach the target, when one can tell.
    private func sameFamily(_ source: String, as target: TargetAddress) -> Bool {
        guard IPAddressText.ipv4(target.host) != nil || target.isIPv6 else { return true }
        return (IPAddressText.ipv4(source) != nil) == (IPAddressText.ipv4(target.host) != nil)
    }

    private func plan(_ scenario: Scenario) -> Planned {
        var plan = Plan()
        let identity = scenario.identity
        switch identity {
        case .external:
            break
        case .trusted:
            guard let trusted = self.trustedSource else { return .skip(.needs(.trustedSource)) }
            plan.source = trusted
        case .authenticated:
            guard self.credentials != nil else { return .skip(.needs(.credentials)) }
            if scenario.derivedExpectations { plan.prelude = .authenticate }
        case .xclient, .xclientTrusted:
            guard let xclient = self.xclientSource else { return .skip(.needs(.xclientSource)) }
            plan.source = xclient
            plan.prelude = .xclient(self.impersonated(trusted: identity.isTrusted))
        case .proxyV1, .proxyV1Trusted, .proxyV2, .proxyV2Trusted:
            guard let proxyAddress = self.proxyAddress else { return .skip(.needs(.proxyListener)) }
            guard let proxy = self.proxySource else { return .skip(.needs(.proxySource)) }
            plan.source = proxy
            let client = self.impersonated(trusted: identity.isTrusted)
            plan.proxied = client
            let header = identity == .proxyV2 || identity == .proxyV2Trusted ? ProxyHeader.v2 : ProxyHeader.v1
            plan.preamble = header(client, proxyAddress.host, 40_000, UInt16(proxyAddress.port))
        }
        switch (scenario.tls, self.tls) {
        case (.manual, .implicit):
            return .skip(.manualTLSUnderImplicit)
        case (.implicit, _):
            guard self.implicitAddress != nil else { return .skip(.needs(.implicitTLS)) }
            plan.implicit = true
        case (.auto, .implicit):
            plan.implicit = true
        default:
            break
        }
        if plan.proxied != nil && plan.implicit { return .skip(.proxyUnderImplicit) }
        if let source = plan.source, !self.sameFamily(source, as: plan.proxied != nil ? (self.proxyAddress ?? self.address) : self.address)
        {
            return .skip(.sourceFamily(source: source, target: self.address.host))
        }
        return .plan(plan)
    }

    func run(_ scenario: Scenario, preludes: Preludes = Preludes(), prelude forced: Executor.Prelude? = nil) async -> Outcome {
        let started = NIODeadline.now()
        func outcome(_ verdict: Verdict, _ transcript: Transcript? = nil, _ packets: [PcapWriter.Packet] = []) -> Outcome {
            let duration = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            return Outcome(
                result: CaseResult(scenario: scenario, verdict: verdict, transcript: transcript, duration: duration), packets: packets)
        }
        if let reason = preludes.skip(scenario) { return outcome(.skipped(reason)) }
        var plan: Plan
        switch self.plan(scenario) {
        case .skip(let reason): return outcome(.skipped(reason))
        case .plan(let found): plan = found
        }
        if let forced { plan.prelude = forced }

        let address =
            plan.proxied != nil
            ? (self.proxyAddress ?? self.address) : plan.implicit ? (self.implicitAddress ?? self.address) : self.address
        let startTLSFirst = scenario.tls == .auto && self.tls == .starttls
        // An implicit-TLS handshake the server stalls fails at the case's
        // time-out; the steps' own time runs from the connect (a connect
        // slowed by a loaded machine does not eat into it).
        var configuration = SMTPClientConnection.Configuration(
            host: address.host, port: address.port, sourceAddress: plan.source, connectTimeout: min(self.timeout, .seconds(10)),
            implicitTLS: plan.implicit ? self.tlsOptions : nil, record: self.record, preamble: plan.preamble)
        configuration.handshakeTimeout = self.timeout
        let connection: SMTPClientConnection
        do {
            connection = try await SMTPClientConnection.connect(configuration)
        } catch {
            return outcome(.error(.connect(error.description)))
        }
        let deadline = ContinuousClock.now + Duration.nanoseconds(self.timeout.nanoseconds)
        var executor = Executor(scenario: scenario, policy: self.policy, credentials: self.credentials, deadline: deadline)
        executor.startTLSFirst = startTLSFirst
        executor.prelude = plan.prelude
        executor.plaintextSecrets = self.tls == .none
        var transcript = await executor.run(
            on: LivePeer(connection: connection, tls: self.tlsOptions), client: connection.localAddress, server: connection.remoteAddress,
            implicitTLS: connection.implicitTLSOutcome)
        if let proxied = plan.proxied, let preamble = plan.preamble {
            let version = preamble.first == UInt8(ascii: "P") ? 1 : 2
            transcript.notes.insert(.proxyHeader(version: version, client: proxied, octets: preamble.count), at: 0)
        }
        let packets = self.record ? Recording.packets(connection) : []
        if let reason = executor.unsupported { return outcome(.skipped(reason), transcript, packets) }

        let clientIP = Endpoints.ip(of: transcript.client) ?? plan.source ?? "0.0.0.0"
        // Whom the policy judges: the socket's peer, or the client a proxy or XCLIENT names.
        let seen: String
        switch plan.prelude {
        case .xclient(let address): seen = address
        default: seen = plan.proxied ?? clientIP
        }
        let trusted = self.policy.isTrusted(address: seen)
        if scenario.identity.isTrusted != trusted {
            return outcome(
                .skipped(.clientTrust(address: seen, trusted: trusted, identity: scenario.identity.rawValue)), transcript, packets)
        }
        let tls: PolicySession.TLSAvailability = plan.implicit ? .implicit : .starttls
        let expected = await Simulation.run(
            scenario, policy: self.policy, credentials: self.credentials, client: plan.proxied ?? clientIP,
            peer: plan.proxied != nil ? clientIP : nil, tls: tls, server: transcript.server, startTLSFirst: startTLSFirst,
            prelude: plan.prelude)
        if let reason = expected.unsupported { return outcome(.skipped(reason), transcript, packets) }
        let conformance = Conformance(
            policy: self.policy, client: plan.proxied ?? clientIP, peer: plan.proxied != nil ? clientIP : nil, tls: tls)
        let judge = Judge(scenario: scenario, policy: self.policy, expected: expected, conformance: conformance)
        return outcome(judge.verdict(actual: transcript), transcript, packets)
    }
}

/// A recorded connection as packets of a synthetic TCP flow (`run --record`).
enum Recording {
    static func packets(_ connection: SMTPClientConnection) -> [PcapWriter.Packet] {
        let chunks = connection.recorded
        guard let local = connection.localAddress.flatMap(Endpoint.init), let remote = connection.remoteAddress.flatMap(Endpoint.init),
            let first = chunks.first
        else { return [] }
        var flow = SyntheticConnection(client: local, server: remote, link: .ethernet)
        flow.handshake(at: first.time)
        for chunk in chunks { flow.replay(chunk.bytes, fromClient: chunk.fromClient, at: chunk.time) }
        flow.close(at: chunks.last?.time ?? first.time)
        return flow.packets
    }
}
