import Foundation
import NIOCore
import SMTPCapture
import SMTPClient
import SMTPProtocol

/// Re-drives the client side of captured sessions against a live server and
/// shows every reply that changed: code, enhanced code, or text once queue
/// ids, dates, host names and session ids are taken out.
public struct Replayer: Sendable {
    public struct Options: Sendable {
        public var target: TargetAddress
        public var timeout: TimeAmount
        /// Replay AUTH exchanges with the captured credentials.
        public var authFromCapture: Bool
        /// More patterns (regular expressions) to take out before comparing.
        public var normalize: [String]
        public var sourceAddress: String?

        public init(
            target: TargetAddress, timeout: TimeAmount = .seconds(30), authFromCapture: Bool = false, normalize: [String] = [],
            sourceAddress: String? = nil
        ) {
            self.target = target
            self.timeout = timeout
            self.authFromCapture = authFromCapture
            self.normalize = normalize
            self.sourceAddress = sourceAddress
        }
    }

    public let options: Options
    private let normalizer: Normalizer

    public init(_ options: Options) throws {
        self.options = options
        self.normalizer = try Normalizer(extra: options.normalize)
    }

    /// One case per session: passed when every reply is the same after
    /// normalisation, failed with each difference.
    public func replay(_ session: CapturedSession, capture: String) async -> CaseResult {
        let started = NIODeadline.now()
        let scenario = Scenario(
            id: "session-\(session.number)", title: "replay of \(session.client) -> \(session.server)", tags: ["replay"], file: capture)
        func result(_ verdict: Verdict, _ transcript: Transcript?) -> CaseResult {
            CaseResult(
                scenario: scenario, verdict: verdict, transcript: transcript,
                duration: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
        }
        if session.implicitTLS { return result(.skipped("TLS from the first octet: nothing to replay"), nil) }
        let recorded = session.transcript.exchanges
        guard recorded.contains(where: { $0.sent != nil }) else { return result(.skipped("the client sent nothing"), nil) }
        // On loopback the captured client's own address can be bound again, so
        // that a client the policy trusts is trusted in the replay too.
        var source = self.options.sourceAddress
        if source == nil && self.options.target.isLoopback && session.client.address.count == 4 && session.client.address[0] == 127 {
            source = session.client.addressText
        }
        let connection: SMTPClientConnection
        do {
            connection = try await SMTPClientConnection.connect(
                .init(host: self.options.target.host, port: self.options.target.port, sourceAddress: source))
        } catch {
            return result(.error(error.description), nil)
        }
        let deadline = started + self.options.timeout
        var live = Transcript(client: connection.localAddress, server: connection.remoteAddress)
        var differences: [Failure] = []
        var hosts = Set<String>()
        func remaining() -> TimeAmount { max(deadline - NIODeadline.now(), .zero) }
        func read() async -> ServerResponse? {
            if case .response(let response) = await connection.nextEvent(timeout: remaining()) { return response }
            return nil
        }
        // The greeting names the host on both sides: those names are normalised away.
        let banner = await read()
        if let name = recorded.first(where: { $0.kind == .banner })?.reply?.textLines.first?.split(separator: " ").first {
            hosts.insert(String(name))
        }
        if let name = banner?.reply?.textLines.first?.split(separator: " ").first { hosts.insert(String(name)) }
        live.exchanges.append(.init(kind: .banner, response: banner))
        var index = recorded.firstIndex { $0.kind != .banner } ?? recorded.count
        var stopped: String?
        while index < recorded.count, stopped == nil {
            // A pipelined group goes out in one write, as it was captured.
            var group = [index]
            if let id = recorded[index].pipelineGroup {
                while let next = group.last.map({ $0 + 1 }), next < recorded.count, recorded[next].pipelineGroup == id {
                    group.append(next)
                }
            }
            var bytes: [UInt8] = []
            for member in group {
                let exchange = recorded[member]
                guard let sent = exchange.sent else { continue }
                if sent.redacted && !self.options.authFromCapture {
                    stopped = "stopped before AUTH (exchange \(member)): replay AUTH with --auth-from-capture"
                    break
                }
                if sent.text.uppercased().hasPrefix("AUTH CRAM-MD5") {
                    stopped =
                        "stopped before AUTH CRAM-MD5 (exchange \(member)): its response answers a one-time challenge and cannot be replayed"
                    break
                }
                bytes += self.octets(for: exchange)
            }
            if stopped != nil && bytes.isEmpty { break }
            let sendable = group.filter { recorded[$0].sent != nil }
            if !bytes.isEmpty {
                do {
                    try await connection.send(bytes)
                } catch {
                    stopped = error.description
                    break
                }
            }
            for member in sendable {
                let exchange = recorded[member]
                let now = await read()
                var replayed = Transcript.Exchange(kind: exchange.kind, step: member, sent: exchange.sent, response: now)
                replayed.sent?.withheld = nil
                live.exchanges.append(replayed)
                if let difference = self.compare(recorded: exchange.response, now: now, hosts: hosts) {
                    differences.append(
                        Failure(
                            step: member, rule: nil, expected: "as captured: \(difference.recorded)",
                            got: "\(difference.now) (\(difference.what))"))
                }
                if exchange.sent?.text.uppercased() == "STARTTLS", now?.reply?.code == .serviceReady {
                    stopped = "stopped at STARTTLS: the rest of the captured session is encrypted"
                }
                if now == nil { stopped = "the server stopped answering" }
                if stopped != nil { break }
            }
            index = (group.last ?? index) + 1
        }
        if let stopped { live.notes.append(stopped) }
        await connection.close()
        live.end = .closedByClient(at: Double((NIODeadline.now() - started).nanoseconds) / 1e9)
        return result(differences.isEmpty ? .passed : .failed(differences), live)
    }

    /// What to send for a captured exchange: the command as captured, or a
    /// stand-in body of the captured size (bodies are not kept).
    func octets(for exchange: Transcript.Exchange) -> [UInt8] {
        guard let sent = exchange.sent else { return [] }
        if let withheld = sent.withheld { return withheld }
        if exchange.kind == .body {
            let header = Array("X-Smtpcheck-Replay: a stand-in for a captured body of \(sent.octets) octets\r\n\r\n".utf8)
            return DotStuffing.encode(header)
        }
        if sent.text.hasPrefix("BDAT "), let range = sent.text.range(of: " <chunk of ") {
            let line = String(sent.text[..<range.lowerBound])
            let size = Int(sent.text[range.upperBound...].prefix { $0.isNumber }) ?? 0
            return Array("\(line)\r\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: size)
        }
        return Printable.unescape(sent.text) + [0x0D, 0x0A]
    }

    /// How a reply differs from the captured one.
    public struct Difference: Sendable {
        public var recorded: String
        public var now: String
        public var what: String
    }

    /// `nil` when the two replies are the same after normalisation.
    public func compare(recorded: ServerResponse?, now: ServerResponse?, hosts: Set<String>) -> Difference? {
        let before = recorded?.singleLine ?? "no reply"
        let after = now?.singleLine ?? "no reply"
        guard let old = recorded?.reply, let new = now?.reply else {
            return before == after ? nil : Difference(recorded: before, now: after, what: "reply missing")
        }
        var what: [String] = []
        if old.code != new.code { what.append("code") }
        if old.enhancedCode != new.enhancedCode { what.append("enhanced code") }
        if self.normalizer.normalize(old.text, hosts: hosts) != self.normalizer.normalize(new.text, hosts: hosts) { what.append("text") }
        return what.isEmpty ? nil : Difference(recorded: before, now: after, what: what.joined(separator: ", ") + " changed")
    }
}

/// Takes out of reply texts what differs between two runs of the same server.
struct Normalizer: Sendable {
    private let patterns: [(NSRegularExpression, String)]

    init(extra: [String]) throws {
        let builtIn: [(String, String)] = [
            (#"queued as [A-Za-z0-9]+"#, "queued as <id>"),
            (#"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), +\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}( [+-]\d{4})?( \([A-Z]+\))?"#, "<date>"),
            (#"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"#, "<date>"),
            (#"\[(\d{1,3}\.){3}\d{1,3}\]"#, "[<ip>]"),
            // Session ids and challenges: long tokens mixing letters and digits.
            (#"\b(?=[A-Za-z0-9+/=._-]*\d)(?=[A-Za-z0-9+/=._-]*[A-Za-z])[A-Za-z0-9+/=._-]{10,}\b"#, "<id>"),
        ]
        var patterns: [(NSRegularExpression, String)] = []
        for (pattern, replacement) in builtIn { patterns.append((try NSRegularExpression(pattern: pattern), replacement)) }
        for pattern in extra { patterns.append((try NSRegularExpression(pattern: pattern), "<pattern>")) }
        self.patterns = patterns
    }

    func normalize(_ text: String, hosts: Set<String>) -> String {
        var out = text
        for host in hosts.sorted(by: { $0.count > $1.count }) where !host.isEmpty {
            out = out.replacingOccurrences(of: host, with: "<host>")
        }
        for (expression, replacement) in self.patterns {
            out = expression.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: replacement)
        }
        return out
    }
}
