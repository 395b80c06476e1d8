import Foundation
import SMTPProtocol
import SMTPScenarios

/// One JSON object per case, then one summary object: `"type"` tells them
/// apart, so shards of a run merge by concatenation.
public enum JSONLinesReporter {
    struct CaseRecord: Encodable {
        var type = "case"
        var id: String
        var title: String
        var file: String
        var tags: [String]
        var refs: [String]
        var identity: String
        var verdict: String
        var reason: String?
        var failures: [FailureRecord]
        var duration: Double
        var transcript: TranscriptRecord?
        /// The target of a run over several (`run --targets`).
        var suite: String?
        /// The whole case, for `smtpcheck merge` (sharded runs only).
        var result: CaseResult?
    }

    struct FailureRecord: Encodable {
        var step: Int?
        var rule: String?
        var expected: String
        var got: String
        var mismatch: String?
    }

    struct TranscriptRecord: Encodable {
        var client: String?
        var server: String?
        var exchanges: [ExchangeRecord]
        var end: String?
        var notes: [String]
        var tls: TLSRecordJSON?
        var startTime: Double?
    }

    struct TLSRecordJSON: Encodable {
        var mode: String
        var at: Double
        var version: String?
        var certificate: CertificateJSON?
        var droppedPlaintextOctets: Int?
    }

    struct CertificateJSON: Encodable {
        var subject: String
        var issuer: String
        var subjectAlternativeNames: [String]
        var notValidBefore: String
        var notValidAfter: String
        var sha256: String
        var verified: Bool
        var verification: String
    }

    struct ExchangeRecord: Encodable {
        var step: Int?
        var kind: String
        var sent: String?
        var verb: String?
        var sentOctets: Int?
        var redacted: Bool?
        var pipelineGroup: Int?
        var sentAt: Double?
        var repliedAt: Double?
        var reply: ReplyRecord?
        var malformed: String?
        var encrypted: Bool?
        var notes: [String]?
    }

    struct ReplyRecord: Encodable {
        var code: Int
        var enhanced: String?
        var lines: [String]
        var findings: [String]?
    }

    struct SummaryRecord: Encodable {
        var type = "summary"
        var target: String
        var policy: String
        var profile: String
        var passed: Int
        var failed: Int
        var errors: Int
        var skipped: Int
        var duration: Double
        /// A sharded run's part: `I/N`, and whether its cases come in several suites.
        var shard: String?
        var grouped: Bool?
    }

    /// A transcript as one JSON object (for `smtpcheck sessions --format json`).
    public static func encode(_ transcript: Transcript, extra: [String: Field] = [:], wording: Wording = Wording()) -> String {
        // Keys sorted as the encoder sorts them: by their UTF-8; the
        // transcript among them.
        let keys = Set(extra.keys).union(["transcript"]).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let record = self.record(transcript, wording)
        return JSONObject.record { object in
            for key in keys {
                if let field = extra[key], key != "transcript" {
                    object.add(runtimeKey: key, json: field.json)
                } else {
                    object.add(runtimeKey: key, object: record) { $0.write(&$1) }
                }
            }
        }
    }

    /// One JSON object of fields and, under `list.name`, a list of strings (keys sorted).
    public static func line(_ fields: [String: Field], list: (name: String, values: [String])) -> String {
        struct Line: Encodable {
            var fields: [String: Field]
            var list: (name: String, values: [String])
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: DynamicKey.self)
                for (key, value) in self.fields { try container.encode(value, forKey: DynamicKey(stringValue: key)) }
                try container.encode(self.list.values, forKey: DynamicKey(stringValue: self.list.name))
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Self.encode(Line(fields: fields, list: list), encoder)
    }

    /// A field beside a session's transcript, as JSON types it: a number is a number.
    public enum Field: Encodable, Sendable, Hashable, ExpressibleByStringLiteral {
        case text(String)
        case number(Int)
        case flag(Bool)

        public init(stringLiteral value: String) { self = .text(value) }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .text(let text): try container.encode(text)
            case .number(let number): try container.encode(number)
            case .flag(let flag): try container.encode(flag)
            }
        }
    }

    /// A key chosen at run time.
    struct DynamicKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func record(_ transcript: Transcript, _ wording: Wording) -> TranscriptRecord {
        TranscriptRecord(
            client: transcript.client, server: transcript.server,
            exchanges: transcript.exchanges.map { exchange in
                var record = ExchangeRecord(
                    step: exchange.step.map { $0 + 1 }, kind: exchange.kind.rawValue, sent: exchange.sent.map(wording.unit),
                    verb: exchange.command?.verb?.rawValue, sentOctets: exchange.sent?.octets,
                    redacted: exchange.sent?.isRedacted == true ? true : nil,
                    pipelineGroup: exchange.pipelineGroup, sentAt: exchange.sentAt, repliedAt: exchange.repliedAt,
                    encrypted: exchange.encrypted ? true : nil, notes: exchange.notes.isEmpty ? nil : exchange.notes.map(wording.note))
                switch exchange.response {
                case .reply(let reply):
                    record.reply = ReplyRecord(
                        code: reply.code.value, enhanced: reply.enhancedCode?.description, lines: reply.lines,
                        findings: reply.findings.isEmpty ? nil : reply.findings.map(\.description))
                case .malformed(let malformed):
                    record.malformed = malformed.description
                case nil:
                    break
                }
                return record
            },
            end: transcript.end.map { wording.end($0, awaiting: wording.awaited(transcript)) }, notes: transcript.notes.map(wording.note),
            tls: transcript.tls.map { tls in
                TLSRecordJSON(
                    mode: tls.mode.rawValue, at: tls.at, version: tls.version,
                    certificate: tls.certificate.map {
                        CertificateJSON(
                            subject: $0.subject, issuer: $0.issuer, subjectAlternativeNames: $0.subjectAlternativeNames,
                            notValidBefore: $0.notValidBefore, notValidAfter: $0.notValidAfter, sha256: $0.sha256, verified: $0.verified,
                            verification: $0.verification)
                    },
                    droppedPlaintextOctets: tls.droppedPlaintext.isEmpty ? nil : tls.droppedPlaintext.count)
            }, startTime: transcript.startTime)
    }

    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        var stream = JSONLinesStream(wording: wording)
        return stream.renderAll(run)
    }

    static func caseLine(_ result: CaseResult, wording: Wording, encoder: JSONEncoder, whole: Bool = false) -> String {
        let record = Self.caseRecord(result, wording: wording, whole: whole)
        return record.json ?? encode(record, encoder)
    }

    static func caseRecord(_ result: CaseResult, wording: Wording, whole: Bool = false) -> CaseRecord {
        var reason: String?
        var failures: [FailureRecord] = []
        switch result.verdict {
        case .passed: break
        case .error(let why): reason = wording.error(why, transcript: result.transcript)
        case .skipped(let why): reason = wording.skip(why)
        case .failed(let list):
            failures = list.map {
                FailureRecord(
                    step: $0.step.map { $0 + 1 }, rule: $0.rule?.rawValue, expected: wording.expected($0),
                    got: wording.observed($0.got),
                    mismatch: $0.mismatch.map(wording.mismatch))
            }
        }
        return CaseRecord(
            id: result.scenario.id, title: result.scenario.title, file: result.scenario.file, tags: result.scenario.tags,
            refs: result.scenario.refs, identity: result.scenario.identity.rawValue, verdict: result.verdict.label.lowercased(),
            reason: reason, failures: failures, duration: result.duration,
            transcript: result.transcript.map { Self.record($0, wording) }, suite: result.suite, result: whole ? result : nil)
    }

    static func summaryLine(_ heading: RunHeading, _ tally: RunTally, duration: Double, encoder: JSONEncoder) -> String {
        let summary = SummaryRecord(
            target: heading.target, policy: heading.policy, profile: heading.profile.rawValue, passed: tally.count("PASS"),
            failed: tally.count("FAIL"), errors: tally.count("ERROR"), skipped: tally.count("SKIP"), duration: duration,
            shard: heading.shard, grouped: heading.shard == nil ? nil : heading.groupedByFile)
        return encode(summary, encoder)
    }

    static func encode(_ value: some Encodable, _ encoder: JSONEncoder) -> String {
        guard let data = try? encoder.encode(value) else { return "{\"type\":\"error\",\"message\":\"cannot encode a record\"}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// JSON Lines as cases come: a line a case, the summary last.
public struct JSONLinesStream: ReportStream {
    let wording: Wording
    let encoder: JSONEncoder
    private var heading = RunHeading(target: "", policy: "", profile: .documented)

    public init(wording: Wording = Wording()) {
        self.wording = wording
        self.encoder = JSONEncoder()
        self.encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) { self.heading = heading }

    public func add(_ result: CaseResult, to sink: inout some ReportSink) {
        sink.write(
            JSONLinesReporter.caseLine(result, wording: self.wording, encoder: self.encoder, whole: self.heading.shard != nil) + "\n")
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let wording = self.wording
        let whole = self.heading.shard != nil
        return { result in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return JSONLinesReporter.caseLine(result, wording: wording, encoder: encoder, whole: whole) + "\n"
        }
    }

    public func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        sink.write(rendered)
    }

    public func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        sink.write(JSONLinesReporter.summaryLine(self.heading, tally, duration: duration, encoder: self.encoder) + "\n")
    }
}
