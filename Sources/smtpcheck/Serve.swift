import ArgumentParser
import Foundation
import NIOCore
import SMTPCodec
import SMTPPolicy
import SMTPProtocol
import SMTPReport
import SMTPRunner
import SMTPServer
import Synchronization

extension SMTPCheck {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the reference server on its own, for other tools to talk to.")

        @OptionGroup var policyOptions: PolicyOptions

        @Option(
            name: .long,
            help: "Address and port to listen on (port 0 picks a free one; default 127.0.0.1:2525, or :465 with --tls implicit).")
        var listen: String?

        enum TLSMode: String, ExpressibleByArgument, CaseIterable {
            case starttls, implicit, none
        }

        @Option(name: .long, help: "starttls (offer STARTTLS, the default), implicit (TLS from the first byte), none.")
        var tls: TLSMode = .starttls

        @Option(name: .customLong("tls-cert"), help: "PEM certificate chain; without it a self-signed certificate is made at start.")
        var tlsCert: String?

        @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
        var tlsKey: String?

        @Flag(
            name: .customLong("proxy-protocol"),
            help: "Expect a PROXY protocol header (v1 or v2) first, from the policy's proxy_hosts only.")
        var proxyProtocol = false

        var listenAddress: String { self.listen ?? (self.tls == .implicit ? "127.0.0.1:465" : "127.0.0.1:2525") }

        @Flag(
            name: .customLong("allow-remote"),
            help: "Listen on an address other machines can reach (not loopback): the server then takes their mail.")
        var allowRemote = false

        @Option(name: .long, help: "Also write accepted messages to this Maildir.")
        var maildir: String?

        @Option(
            name: .long, help: ArgumentHelp(ServerFaults.helpText, valueName: "fault"),
            completion: .list(ServerFaults.catalogue.map(\.name)))
        var fault: [String] = []

        enum LogFormat: String, ExpressibleByArgument, CaseIterable {
            case text, json, none
        }

        @Option(
            name: .customLong("log-format"),
            help:
                "One line per session on standard output as it ends (client, identity, HELO name, TLS, rules that fired, messages, how it ended): text, json, or none."
        )
        var logFormat: LogFormat = .text

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Event-loop threads (default: half the cores, at least one; its clients share the machine).", valueName: "n"))
        var threads: Int?

        func validate() throws {
            if let threads = self.threads, !(1...256).contains(threads) {
                throw ValidationError("--threads must be from 1 to 256")
            }
            guard let address = TargetAddress(self.listenAddress, defaultPort: 2525, allowsPortZero: true) else {
                throw ValidationError("--listen '\(self.listenAddress)' is not HOST:PORT")
            }
            if !address.isLoopback && !self.allowRemote {
                throw ValidationError(
                    "--listen \(address) is not a loopback address: other machines could reach the reference server; "
                        + "add --allow-remote to mean it")
            }
            if (self.tlsCert == nil) != (self.tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
            _ = try ServerFaults.parse(self.fault)
        }

        func run() async throws {
            // The signals are caught from the start: a SIGTERM sent as soon as
            // the address is printed must stop the server, not be lost.
            let termination = Termination()
            var policy = try self.policyOptions.load()
            guard let address = TargetAddress(self.listenAddress, defaultPort: 2525, allowsPortZero: true) else {
                throw ValidationError("bad --listen")
            }
            var tls: ReferenceServer.Configuration.TLS?
            var certificateLine: String?
            if self.tls != .none {
                let identity: TLSIdentity
                if let certificate = self.tlsCert, let key = self.tlsKey {
                    do {
                        identity = try TLSIdentity.load(certificateFile: certificate, keyFile: key)
                    } catch {
                        StandardStreams.err("smtpcheck: cannot load --tls-cert/--tls-key: \(error)\n")
                        throw ExitCode(ExitCodes.badInput)
                    }
                    certificateLine = "TLS certificate \(certificate), SHA-256 \(identity.fingerprint)"
                } else {
                    identity = try TLSIdentity.selfSigned(hostname: policy.serverName)
                    certificateLine = "TLS certificate self-signed for \(policy.serverName), SHA-256 \(identity.fingerprint)"
                }
                tls = .init(mode: self.tls == .implicit ? .implicit : .starttls, identity: identity)
            }
            var generated: String?
            if policy.authUsers.contains(where: { $0.password == nil }) {
                let password = Secrets.generate()
                policy.supplyMissingPasswords(password)
                generated = password
            }
            var generatedToken: String?
            if !policy.authUsers.isEmpty && policy.authUsers[0].oauthToken == nil {
                generatedToken = Secrets.generate()
                policy.authUsers[0].oauthToken = generatedToken
            }
            var configuration = ReferenceServer.Configuration(
                policy: policy, host: address.host, port: address.port, faults: try ServerFaults.parse(self.fault),
                maildir: self.maildir,
                tls: tls)
            configuration.proxyProtocol = self.proxyProtocol
            let logFormat = self.logFormat
            if logFormat != .none {
                configuration.sessionEnded = { summary in StandardStreams.out(SessionLog.line(summary, logFormat) + "\n") }
            }
            if !address.isLoopback {
                StandardStreams.err("smtpcheck: warning: listening on \(address), beyond loopback: other machines can reach this server\n")
            }
            let server: ReferenceServer
            do {
                server = try await ReferenceServer.start(configuration, threads: self.threads ?? ReferenceServer.defaultThreads)
            } catch {
                StandardStreams.err("smtpcheck: \(error)\n")
                throw ExitCode(ExitCodes.couldNotRun)
            }
            var lines = [
                "smtpcheck reference server for \(policy.serverName) listening on \(TargetAddress(host: address.host, port: server.port))"
            ]
            lines.append("policy: \(policy.source) (profile \(policy.profile.rawValue), HELO refusals \(policy.heloTiming.rawValue))")
            if let generated {
                for user in policy.authUsers where user.passwordSource.hasPrefix("$") {
                    lines.append("AUTH user \(user.name): \(user.passwordSource) is unset, generated password: \(generated)")
                }
            }
            if let token = generatedToken, let user = policy.authUsers.first {
                lines.append("XOAUTH2 for \(user.name): generated bearer token: \(token)")
            }
            if let maildir = self.maildir { lines.append("accepted messages also go to \(maildir)") }
            lines.append(tls.map { "TLS: \($0.mode.rawValue)" } ?? "TLS: none")
            if let certificateLine { lines.append(certificateLine) }
            lines.append("stop with Ctrl-C (SIGINT) or SIGTERM")
            StandardStreams.out((lines.joined(separator: "\n") + "\n"))
            await termination.wait()
            try await server.stop()
            StandardStreams.out("stopped after \(server.store.count) accepted messages\n")
        }

        /// SIGINT or SIGTERM, caught from the moment it is made; `wait()`
        /// returns once one has come (at once, if one came already).
        final class Termination: @unchecked Sendable {
            private let lock = NSLock()
            private var arrived = false
            private var continuation: CheckedContinuation<Void, Never>?

            init() {
                SignalSources.onTermination { [self] in self.signal() }
            }

            private func signal() {
                self.lock.lock()
                self.arrived = true
                let continuation = self.continuation
                self.continuation = nil
                self.lock.unlock()
                continuation?.resume()
            }

            func wait() async {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    self.lock.lock()
                    if self.arrived {
                        self.lock.unlock()
                        continuation.resume()
                    } else {
                        self.continuation = continuation
                        self.lock.unlock()
                    }
                }
            }
        }
    }
}

/// Runs handlers at SIGINT or SIGTERM, instead of the default end of the
/// process: a signal handler of our own writes the signal's number to a
/// pipe, and a thread of its own reads it and runs the handlers, in the
/// order they were added.
///
/// The handler is in place when `onTermination` returns. libdispatch's
/// signal sources were not: the signal had to be ignored first, and the
/// source took it over later, on libdispatch's own thread; on a busy
/// machine a SIGTERM sent just after `serve` printed its address came in
/// between, was ignored, and `serve` ran on (17 of 150 tries with the
/// cores busy, 0 of 150 since).
enum SignalSources {
    /// The pipe's write end, for the signal handler (set before it is installed).
    private static let writeEnd = Atomic<Int32>(-1)
    private static let handlers = Mutex<[@Sendable () -> Void]>([])

    static func onTermination(_ handler: @escaping @Sendable () -> Void) {
        // The first handler starts the watch.
        let first = Self.handlers.withLock { handlers in
            defer { handlers.append(handler) }
            return handlers.isEmpty
        }
        if first { Self.start() }
    }

    private static func start() {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            StandardStreams.err("smtpcheck: cannot watch for SIGINT and SIGTERM: \(String(cString: strerror(errno)))\n")
            return
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        // A handler never blocks: signals past what the pipe holds are one signal.
        _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)
        Self.writeEnd.store(ends[1], ordering: .releasing)
        let readEnd = ends[0]
        Thread.detachNewThread {
            var number: UInt8 = 0
            while true {
                let count = read(readEnd, &number, 1)
                if count < 0 && errno == EINTR { continue }
                guard count == 1 else { return }
                for handler in Self.handlers.withLock({ $0 }) { handler() }
            }
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signalNumber in
            // Only what is safe in a signal handler: one write, errno kept.
            let saved = errno
            var number = UInt8(truncatingIfNeeded: signalNumber)
            _ = write(SignalSources.writeEnd.load(ordering: .acquiring), &number, 1)
            errno = saved
        }
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        for signalNumber in [SIGINT, SIGTERM] { sigaction(signalNumber, &action, nil) }
    }
}

/// `serve`'s log line for a session.
enum SessionLog {
    static func line(_ summary: SessionSummary, _ format: SMTPCheck.Serve.LogFormat) -> String {
        let time = TimeText.iso8601(sinceEpoch: Date().timeIntervalSince1970)
        let rules = summary.rules.map(\.rawValue)
        switch format {
        case .json:
            var fields: [String: JSONLinesReporter.Field] = [
                "time": .text(time), "client": .text(summary.client), "identity": .text(summary.identity), "tls": .flag(summary.tls),
                "messages": .number(summary.messages), "outcome": .text(summary.outcome),
                "milliseconds": .number(Int((summary.seconds * 1000).rounded())),
            ]
            if let peer = summary.peer { fields["peer"] = .text(peer) }
            if let user = summary.user { fields["user"] = .text(user) }
            if let helo = summary.helo { fields["helo"] = .text(helo) }
            return JSONLinesReporter.line(fields, list: ("rules", rules))
        case .text, .none:
            var out = "\(time) session \(summary.client)"
            if let peer = summary.peer { out += " (via \(peer))" }
            out += " \(summary.identity)" + (summary.user.map { " as \($0)" } ?? "")
            out += " helo=\(summary.helo.map { Printable.escape($0.utf8) } ?? "-") tls=\(summary.tls ? "yes" : "no")"
            out += " rules=\(rules.isEmpty ? "-" : rules.joined(separator: ",")) messages=\(summary.messages)"
            return out + " \(summary.outcome) " + String(format: "%.3f s", summary.seconds)
        }
    }
}
