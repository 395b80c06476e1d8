import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SMTPCapture
import SMTPClient
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPScenarios
import SMTPServer

/// Runs scenarios against a target and judges every case.
public struct ScenarioRunner: Sendable {
    public enum Target: Sendable {
        /// The in-process reference server on 127.0.0.1, a fresh port, with
        /// optional deliberate defects.
        case reference(faults: ServerFaults)
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

    /// How the sessions of a run use TLS.
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

    /// What a run is called in reports: the live target, or the in-process server and its faults.
    public var targetDescription: String {
        switch self.configuration.target {
        case .reference(let faults):
            "in-process reference server" + (faults.isEmpty ? "" : " with faults: \(faults.names.joined(separator: ", "))")
        case .live(let live): live.description
        }
    }

    /// Runs `scenarios`; `completed` gets each case's result as soon as it
    /// is known (in the order the cases end), before the run's result is.
    public func run(_ scenarios: [Scenario], completed: (@Sendable (CaseResult) -> Void)? = nil) async throws -> RunResult {
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
                let password = policy.authUsers.first?.password ?? Secrets.generate()
                policy.supplyMissingPasswords(password)
                if !policy.authUsers.isEmpty && policy.authUsers[0].oauthToken == nil {
                    policy.authUsers[0].oauthToken = Secrets.generate()
                }
                if let user = policy.authUsers.first {
                    credentials = Credentials(user: user.name, password: user.password ?? password, oauthToken: user.oauthToken)
                }
            }
            // One certificate made now for every listener; the client trusts it by name.
            let identity = try TLSIdentity.selfSigned(hostname: policy.serverName)
            if tlsOptions.caFile == nil {
                tlsOptions.trustedCertificatesPEM = identity.certificatePEM
                tlsOptions.serverName = tlsOptions.serverName ?? policy.serverName
            }
            func start(_ mode: ReferenceServer.Configuration.TLS.Mode, proxy: Bool = false) async throws -> TargetAddress {
                var configuration = ReferenceServer.Configuration(
                    policy: policy, faults: faults, tls: .init(mode: mode, identity: identity))
                configuration.proxyProtocol = proxy
                let server = try await ReferenceServer.start(configuration)
                servers.append(server)
                return TargetAddress(host: "127.0.0.1", port: server.port)
            }
            address = try await start(.starttls)
            implicitAddress = try await start(.implicit)
            proxyAddress = try await start(.starttls, proxy: true)
            if self.configuration.tls == .implicit, let implicitAddress { address = implicitAddress }
        case .live(let target):
            address = target
            if self.configuration.tls == .implicit { implicitAddress = target }
            if let credentials { policy = policy.using(credentials) }
        }
        let context = LiveCase(
            policy: policy, credentials: credentials, address: address,
            trustedSource: self.configuration.trustedSource ?? Self.loopbackSource(in: policy.trustedNetworks, target: address),
            timeout: self.configuration.caseTimeout, tls: self.configuration.tls, tlsOptions: tlsOptions, implicitAddress: implicitAddress,
            record: self.configuration.recordTo != nil, proxyAddress: proxyAddress,
            xclientSource: Self.loopbackSource(in: policy.xclientHosts, target: address),
            proxySource: Self.loopbackSource(in: policy.proxyHosts, target: proxyAddress ?? address))
        if case .live = self.configuration.target, let unreachable = await context.probe() {
            let cases = scenarios.map { CaseResult(scenario: $0, verdict: .error(.connect(unreachable)), transcript: nil, duration: 0) }
            var result = RunResult(
                target: address.description, policy: policy.source, profile: policy.profile, cases: cases,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
            result.unreachable = unreachable
            return result
        }
        // `jobs` workers, each on an event loop of its own choosing, take the
        // next case in launch order as they finish one: a case starts on the
        // thread the last one ended on, with no hop through the concurrency
        // pool between cases (on 2 cores those hops were a tenth of a case).
        // The identity variants' preludes are tried once, not in every
        // variant, on the first worker's loop while that worker waits (the
        // run stays within `jobs` connections) and the others start on the
        // cases that need none; a variant (they start last) waits for them.
        let order = Self.launchOrder(scenarios, jobs: self.configuration.jobs)
        let cursor = NIOLockedValueBox(0)
        let loops = (0..<min(max(self.configuration.jobs, 1), scenarios.count)).map { _ in MultiThreadedEventLoopGroup.singleton.next() }
        let preludesTried = Task { [loops] in
            await EventLoopExecutor.run(on: loops.first ?? MultiThreadedEventLoopGroup.singleton.next()) {
                await context.probePreludes(for: scenarios)
            }
        }
        let results = await withTaskGroup(of: [(Int, LiveCase.Outcome)].self) { group in
            for (worker, loop) in loops.enumerated() {
                group.addTask {
                    await EventLoopExecutor.run(on: loop) {
                        if worker == 0 { _ = await preludesTried.value }
                        var done: [(Int, LiveCase.Outcome)] = []
                        while let index = cursor.withLockedValue({ next -> Int? in
                            guard next < order.count else { return nil }
                            defer { next += 1 }
                            return order[next]
                        }) {
                            let scenario = scenarios[index]
                            let preludes = scenario.derivedExpectations ? await preludesTried.value : Preludes()
                            let outcome = await context.run(scenario, preludes: preludes)
                            completed?(outcome.result)
                            done.append((index, outcome))
                        }
                        return done
                    }
                }
            }
            var results = [LiveCase.Outcome?](repeating: nil, count: scenarios.count)
            for await done in group {
                for (index, outcome) in done { results[index] = outcome }
            }
            return results.compactMap { $0 }
        }
        let preludes = await preludesTried.value
        for server in servers { try await server.stop() }
        if let path = self.configuration.recordTo { try Self.record(results.flatMap(\.packets), to: path) }
        let target = self.targetDescription
        // A prelude shows in the report when it is what kept variants from running.
        let shown = preludes.results.filter { $0.verdict.isFailure || $0.verdict.label == "ERROR" }
        for result in shown { completed?(result) }
        return RunResult(
            target: target, policy: policy.source, profile: policy.profile, cases: shown + results.map(\.result),
            duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
    }

    /// The order cases start in. Cases that pause (waiting to see whether
    /// the server answers early) start first, so that their waits overlap
    /// the work of the others instead of ending the run; the identity
    /// variants, which wait for their preludes, start last. Results stay in
    /// scenario order. One at a time, cases run in the battery's order.
    public static func launchOrder(_ scenarios: [Scenario], jobs: Int) -> [Int] {
        guard jobs > 1 else { return Array(scenarios.indices) }
        func rank(_ scenario: Scenario) -> Int { scenario.pauses ? 0 : scenario.derivedExpectations ? 2 : 1 }
        return scenarios.indices.sorted { left, right in
            let (l, r) = (rank(scenarios[left]), rank(scenarios[right]))
            return l != r ? l < r : left < right
        }
    }

    /// Writes the run's traffic as one pcap file, readable by its owner only:
    /// it holds the AUTH exchanges as they went over the wire.
    static func record(_ packets: [PcapWriter.Packet], to path: String) throws {
        let ordered = packets.enumerated().sorted { ($0.element.timestamp, $0.offset) < ($1.element.timestamp, $1.offset) }.map(\.element)
        let data = Data(PcapWriter.pcap(ordered, linkType: SyntheticLink.ethernet.linkType))
        // Created 0600 from the start (no moment where another user could
        // open it), and an existing file is made 0600 before it is written.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw RecordError(path: path) }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0 else { throw RecordError(path: path) }
        let written = data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let count = write(descriptor, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }
        guard written else { throw RecordError(path: path) }
    }

    /// An address in one of `networks` the harness can bind on loopback,
    /// when the target is on loopback too: `::1` for an IPv6 target where a
    /// network holds it, else an IPv4 one (which a case then finds to be of
    /// the other family, and says so).
    static func loopbackSource(in networks: [IPNetwork], target: TargetAddress) -> String? {
        guard target.isLoopback else { return nil }
        if target.isIPv6 && networks.contains(where: { $0.contains(address: "::1") }) { return "::1" }
        let loopback = IPNetwork("127.0.0.0/8")
        for network in networks where network.address.count == 4 {
            let candidate = network.prefixLength == 32 ? network.firstAddressText : Self.next(network.firstAddressText)
            if loopback?.contains(address: candidate) == true && network.contains(address: candidate) { return candidate }
        }
        return nil
    }

    /// `127.0.0.0` → `127.0.0.1` (a network's first host).
    private static func next(_ address: String) -> String {
        guard var octets = IPAddressText.ipv4(address), octets[3] < 255 else { return address }
        octets[3] += 1
        return octets.map(String.init).joined(separator: ".")
    }
}

public struct RecordError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var description: String { "cannot write the recording to \(self.path)" }
}
