import Foundation
import NIOCore
import NIOPosix
import SMTPCapture
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPServer

/// `HOST[:PORT]`: an IPv4 address, `[IPv6]:port` or a bare IPv6 address, or a name.
public struct TargetAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `allowsPortZero`: for listening, where port 0 picks a free port.
    public init?(_ text: String, defaultPort: Int = 25, allowsPortZero: Bool = false) {
        let ports = allowsPortZero ? 0...65535 : 1...65535
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            var port = defaultPort
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let value = Int(rest.dropFirst()), ports.contains(value) else { return nil }
                port = value
            }
            guard IPAddressText.ipv6(host) != nil else { return nil }
            self.init(host: host, port: port)
            return
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 {
            guard IPAddressText.ipv6(text) != nil else { return nil }
            self.init(host: text, port: defaultPort)
            return
        }
        var host = text
        var port = defaultPort
        if colons == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let value = Int(text[text.index(after: colon)...]), ports.contains(value) else { return nil }
            port = value
        }
        guard !host.isEmpty, IPAddressText.ipv4(host) != nil || DomainName.isValid(host) else { return nil }
        self.init(host: host, port: port)
    }

    /// On this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`).
    public var isLoopback: Bool {
        self.host == "localhost" || IPNetwork("127.0.0.0/8")?.contains(address: self.host) == true
            || IPNetwork.addressBytes(self.host) == IPNetwork.addressBytes("::1")
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// Runs scenarios against a target and judges every case.
public struct ScenarioRunner: Sendable {
    public enum Target: Sendable {
        /// The in-process reference server on 127.0.0.1, a fresh port, with
        /// optional deliberate defects.
        case reference(faults: PolicySession.Faults)
        case live(TargetAddress)
    }

    public struct Configuration: Sendable {
        public var target: Target
        public var policy: Policy
        /// For `authenticated` cases. For the reference target, made up when absent.
        public var credentials: Credentials?
        /// The source address for `trusted` cases; found on loopback when absent.
        public var trustedSource: String?
        /// Cases run at once.
        public var jobs: Int
        /// Per case, connect to QUIT.
        public var caseTimeout: TimeAmount
        /// How sessions use TLS.
        public var tls: TransportTLS
        public var tlsOptions: ClientTLSOptions
        /// Write every session's traffic to this pcap file.
        public var recordTo: String?
        /// A listener of the target that expects PROXY headers, for the proxy identities.
        public var proxyTarget: TargetAddress?

        public init(
            target: Target, policy: Policy, credentials: Credentials? = nil, trustedSource: String? = nil, jobs: Int = 4,
            caseTimeout: TimeAmount = .seconds(30), tls: TransportTLS = .none, tlsOptions: ClientTLSOptions = ClientTLSOptions(),
            recordTo: String? = nil, proxyTarget: TargetAddress? = nil
        ) {
            self.recordTo = recordTo
            self.proxyTarget = proxyTarget
            self.tls = tls
            self.tlsOptions = tlsOptions
            self.target = target
            self.policy = policy
            self.credentials = credentials
            self.trustedSource = trustedSource
            self.jobs = jobs
            self.caseTimeout = caseTimeout
        }
    }

    /// How the sessions of a run use TLS (`--tls`).
    public enum TransportTLS: String, Sendable, Hashable, CaseIterable {
        /// Plaintext; cases with `tls: manual` drive STARTTLS themselves.
        case none
        /// Every `tls: auto` case upgrades with STARTTLS before its steps.
        case starttls
        /// TLS from the first byte (RFC 8314; port 465 by default).
        case implicit
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// Runs every scenario, at most `jobs` at a time; results in scenario order.
    public func run(_ scenarios: [Scenario]) async throws -> RunResult {
        let started = NIODeadline.now()
        var policy = self.configuration.policy
        var credentials = self.configuration.credentials
        var address: TargetAddress
        var implicitAddress: TargetAddress?
        var proxyAddress = self.configuration.proxyTarget
        var servers: [ReferenceServer] = []
        var tlsOptions = self.configuration.tlsOptions
        switch self.configuration.target {
        case .reference(let faults):
            if credentials == nil {
                let password = policy.authUsers.first?.password ?? Self.madeUpPassword()
                policy.supplyMissingPasswords(password)
                if !policy.authUsers.isEmpty && policy.authUsers[0].oauthToken == nil {
                    policy.authUsers[0].oauthToken = Self.madeUpPassword()
                }
                if let user = policy.authUsers.first {
                    credentials = Credentials(user: user.name, password: user.password ?? password, oauthToken: user.oauthToken)
                }
            }
            // One certificate made now for both listeners; the client trusts it by name.
            let identity = try TLSIdentity.selfSigned(hostname: policy.serverName)
            if tlsOptions.caFile == nil {
                tlsOptions.trustedCertificatesPEM = identity.certificatePEM
                tlsOptions.serverName = tlsOptions.serverName ?? policy.serverName
            }
            let plain = try await ReferenceServer.start(
                .init(policy: policy, faults: faults, tls: .init(mode: .starttls, identity: identity)))
            servers.append(plain)
            let implicit = try await ReferenceServer.start(
                .init(policy: policy, faults: faults, tls: .init(mode: .implicit, identity: identity)))
            servers.append(implicit)
            var proxyConfiguration = ReferenceServer.Configuration(
                policy: policy, faults: faults, tls: .init(mode: .starttls, identity: identity))
            proxyConfiguration.proxyProtocol = true
            let proxy = try await ReferenceServer.start(proxyConfiguration)
            servers.append(proxy)
            proxyAddress = TargetAddress(host: "127.0.0.1", port: proxy.port)
            address = TargetAddress(host: "127.0.0.1", port: plain.port)
            implicitAddress = TargetAddress(host: "127.0.0.1", port: implicit.port)
            if self.configuration.tls == .implicit, let implicitAddress { address = implicitAddress }
        case .live(let target):
            address = target
            if self.configuration.tls == .implicit { implicitAddress = target }
            if let credentials {
                policy.authUsers = [
                    Policy.AuthUser(
                        name: credentials.user, password: credentials.password, passwordSource: "the command line",
                        oauthToken: credentials.oauthToken)
                ]
            }
        }
        let context = CaseContext(
            policy: policy, credentials: credentials, address: address,
            trustedSource: self.configuration.trustedSource ?? Self.loopbackTrustedSource(policy: policy, target: address),
            timeout: self.configuration.caseTimeout, tls: self.configuration.tls, tlsOptions: tlsOptions, implicitAddress: implicitAddress,
            record: self.configuration.recordTo != nil, proxyAddress: proxyAddress,
            xclientSource: Self.loopbackSource(in: policy.xclientHosts, target: address),
            proxySource: Self.loopbackSource(in: policy.proxyHosts, target: proxyAddress ?? address))
        if case .live = self.configuration.target, let unreachable = await context.probe() {
            let cases = scenarios.map { CaseResult(scenario: $0, verdict: .error(unreachable), transcript: nil, duration: 0) }
            return RunResult(
                target: address.description, policy: policy.source, profile: policy.profile, cases: cases,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
        }
        let results = await withTaskGroup(of: (Int, CaseResult).self) { group in
            var results = [CaseResult?](repeating: nil, count: scenarios.count)
            var next = 0
            for _ in 0..<min(max(self.configuration.jobs, 1), scenarios.count) {
                let index = next
                group.addTask { (index, await context.run(scenarios[index])) }
                next += 1
            }
            while let (index, result) = await group.next() {
                results[index] = result
                if next < scenarios.count {
                    let index = next
                    group.addTask { (index, await context.run(scenarios[index])) }
                    next += 1
                }
            }
            return results.compactMap { $0 }
        }
        for server in servers { try await server.stop() }
        if let path = self.configuration.recordTo {
            let packets = results.flatMap(\.packets).enumerated().sorted {
                ($0.element.timestamp, $0.offset) < ($1.element.timestamp, $1.offset)
            }.map(\.element)
            guard
                FileManager.default.createFile(
                    atPath: path, contents: Data(PcapWriter.pcap(packets, linkType: SyntheticLink.ethernet.linkType)))
            else {
                throw RecordError(path: path)
            }
        }
        let target: String
        switch self.configuration.target {
        case .reference(let faults):
            let names = PolicySession.Faults.byName.filter { faults.contains($0.value) }.keys.sorted()
            target = "in-process reference server" + (names.isEmpty ? "" : " with faults: \(names.joined(separator: ", "))")
        case .live(let live): target = live.description
        }
        return RunResult(
            target: target, policy: policy.source, profile: policy.profile, cases: results,
            duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
    }

    /// A random password for AUTH users whose variable is unset.
    public static func madeUpPassword() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }

    /// A trusted-network address the harness can bind on loopback, when the
    /// target is on loopback too.
    static func loopbackTrustedSource(policy: Policy, target: TargetAddress) -> String? {
        self.loopbackSource(in: policy.trustedNetworks, target: target)
    }

    /// An address in one of `networks` the harness can bind on loopback.
    static func loopbackSource(in networks: [IPNetwork], target: TargetAddress) -> String? {
        guard target.isLoopback else { return nil }
        let loopback = IPNetwork("127.0.0.0/8")
        for network in networks where network.address.count == 4 {
            let candidate = network.prefixLength == 32 ? network.firstAddressText : network.firstAddressText.incrementedIPv4
            if loopback?.contains(address: candidate) == true && network.contains(address: candidate) { return candidate }
        }
        return nil
    }
}

extension String {
    /// `127.0.0.0` → `127.0.0.1` (a network's first host).
    fileprivate var incrementedIPv4: String {
        guard var octets = IPAddressText.ipv4(self), octets[3] < 255 else { return self }
        octets[3] += 1
        return octets.map(String.init).joined(separator: ".")
    }
}

/// What every case of one run shares.
struct CaseContext: Sendable {
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

    /// The client a proxy or XCLIENT names: an address in a trusted network,
    /// or a documentation address (RFC 5737) that is in none.
    func impersonated(trusted: Bool) -> String {
        trusted ? (self.policy.trustedNetworks.first?.firstAddressText ?? "127.0.0.2") : "192.0.2.25"
    }

    /// Connects once; `nil` when the target answers, else why not. Every case
    /// is then an error, not a skip: nothing could be judged.
    func probe() async -> String? {
        do {
            let connection = try await SMTPClientConnection.connect(
                .init(
                    host: self.address.host, port: self.address.port, connectTimeout: min(self.timeout, .seconds(10)),
                    implicitTLS: self.tls == .implicit ? self.tlsOptions : nil))
            await connection.close()
            return nil
        } catch {
            return error.description
        }
    }

    func run(_ scenario: Scenario) async -> CaseResult {
        let started = NIODeadline.now()
        func result(_ verdict: Verdict, _ transcript: Transcript? = nil) -> CaseResult {
            CaseResult(
                scenario: scenario, verdict: verdict, transcript: transcript,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
        }
        var source: String?
        var preamble: [UInt8]?
        var prelude = Executor.Prelude.none
        var proxied: String?
        let identity = scenario.identity
        switch identity {
        case .external:
            break
        case .trusted:
            guard let trusted = self.trustedSource else {
                return result(.skipped("a trusted case needs --source ADDR, an address of this machine in a trusted network of the policy"))
            }
            source = trusted
        case .authenticated:
            guard self.credentials != nil else {
                return result(.skipped("an authenticated case needs credentials: --user NAME --password-env VAR"))
            }
            if scenario.derivedExpectations { prelude = .authenticate }
        case .xclient, .xclientTrusted:
            guard let xclient = self.xclientSource else {
                return result(.skipped("an XCLIENT case needs a source address of this machine among the policy's xclient_hosts"))
            }
            source = xclient
            prelude = .xclient(self.impersonated(trusted: identity.isTrusted))
        case .proxyV1, .proxyV1Trusted, .proxyV2, .proxyV2Trusted:
            guard let proxyAddress = self.proxyAddress else {
                return result(.skipped("a PROXY case needs a listener that expects PROXY headers: --proxy-target HOST:PORT"))
            }
            guard let proxy = self.proxySource else {
                return result(.skipped("a PROXY case needs a source address of this machine among the policy's proxy_hosts"))
            }
            source = proxy
            let client = self.impersonated(trusted: identity.isTrusted)
            proxied = client
            let header = identity == .proxyV2 || identity == .proxyV2Trusted ? ProxyHeader.v2 : ProxyHeader.v1
            preamble = header(client, proxyAddress.host, 40_000, UInt16(proxyAddress.port))
        }
        let implicit: Bool
        switch (scenario.tls, self.tls) {
        case (.manual, .implicit):
            return result(.skipped("the case drives STARTTLS itself; with --tls implicit the whole session is in TLS"))
        case (.implicit, _):
            guard self.implicitAddress != nil else {
                return result(.skipped("the case needs TLS from the first byte: run it with --tls implicit (port 465)"))
            }
            implicit = true
        case (.auto, .implicit):
            implicit = true
        default:
            implicit = false
        }
        if proxied != nil && implicit {
            return result(.skipped("PROXY cases run on the listener that expects PROXY headers, not over implicit TLS"))
        }
        let address =
            proxied != nil ? (self.proxyAddress ?? self.address) : implicit ? (self.implicitAddress ?? self.address) : self.address
        let startTLSFirst = scenario.tls == .auto && self.tls == .starttls
        let deadline = started + self.timeout
        let connection: SMTPClientConnection
        do {
            connection = try await SMTPClientConnection.connect(
                .init(
                    host: address.host, port: address.port, sourceAddress: source, connectTimeout: min(self.timeout, .seconds(10)),
                    implicitTLS: implicit ? self.tlsOptions : nil, record: self.record, preamble: preamble))
        } catch {
            return result(.error(error.description))
        }
        var executor = Executor(scenario: scenario, policy: self.policy, credentials: self.credentials, deadline: deadline)
        executor.tlsOptions = self.tlsOptions
        executor.startTLSFirst = startTLSFirst
        executor.prelude = prelude
        var transcript = await executor.run(
            on: connection, client: connection.localAddress, server: connection.remoteAddress, implicitTLS: connection.implicitTLSOutcome)
        if let proxied, let preamble {
            let version = preamble.first == UInt8(ascii: "P") ? "v1" : "v2"
            transcript.notes.insert(
                "a PROXY \(version) header named the client \(proxied) before the greeting (\(preamble.count) octets)", at: 0)
        }
        let packets = self.record ? Self.packets(connection) : []
        func finished(_ verdict: Verdict, _ transcript: Transcript? = nil) -> CaseResult {
            var value = CaseResult(
                scenario: scenario, verdict: verdict, transcript: transcript,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
            value.packets = packets
            return value
        }
        if let reason = executor.unsupported { return finished(.skipped(reason), transcript) }

        let clientIP = Self.ip(of: transcript.client) ?? source ?? "0.0.0.0"
        // Whom the policy judges: the socket's peer, or the client a proxy or XCLIENT names.
        let seen: String
        switch prelude {
        case .xclient(let address): seen = address
        default: seen = proxied ?? clientIP
        }
        let trusted = self.policy.isTrusted(address: seen)
        if identity.isTrusted && !trusted {
            return finished(.skipped("the client \(seen) is in no trusted network of the policy"), transcript)
        }
        if !identity.isTrusted && trusted {
            return finished(
                .skipped("the client address \(clientIP) is in a trusted network; \(scenario.identity) cases need a source outside it"),
                transcript)
        }
        let peer = SimulatedPeer(
            policy: self.policy, clientAddress: proxied ?? clientIP, tls: implicit ? .implicit : .starttls,
            peer: proxied != nil ? clientIP : nil)
        var simulator = Executor(scenario: scenario, policy: self.policy, credentials: self.credentials, deadline: .now() + .seconds(60))
        simulator.startTLSFirst = startTLSFirst
        simulator.serverAddress = transcript.server
        simulator.prelude = prelude
        let expected = await simulator.run(
            on: peer, client: transcript.client, server: "policy",
            implicitTLS: implicit ? SMTPClientConnection.TLSOutcome(version: "simulated", certificate: nil, droppedPlaintext: []) : nil)
        if let reason = simulator.unsupported { return finished(.skipped("the policy: \(reason)"), transcript) }
        let judge = Judge(
            scenario: scenario, oracle: PolicyOracle(policy: self.policy), expected: expected, annotations: await peer.annotations)
        return finished(judge.verdict(actual: transcript), transcript)
    }

    /// One recorded connection as packets of a synthetic TCP flow.
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

    /// The IP address of `ip:port` or `[ipv6]:port`; `nil` for anything else.
    static func ip(of endpoint: String?) -> String? {
        guard let endpoint else { return nil }
        let host: String
        if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
            host = String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
        } else {
            host = endpoint.split(separator: ":").first.map(String.init) ?? ""
        }
        return IPAddressText.ipv4(host) != nil || IPAddressText.ipv6(host) != nil ? host : nil
    }
}

public struct RecordError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var description: String { "cannot write the recording to \(self.path)" }
}
