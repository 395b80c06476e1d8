import Foundation
import SMTPProtocol
import SMTPScenarios
import Testing

@testable import SMTPReport

/// The JSON records are written by hand for speed; they must be, octet for
/// octet, what `JSONEncoder` (sorted keys, slashes unescaped) writes.
@Suite struct JSONTextTests {
    static func encoded(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Text that needs every escape, and text that must not be escaped.
    static let awkward: String = {
        var text = ""
        for value in 0..<0x80 { text.unicodeScalars.append(Unicode.Scalar(UInt8(value))) }
        // A quote and a backslash each followed by a combining mark (one
        // Character each), non-ASCII, an emoji, a slash.
        return text + "\"\u{301}\\\u{301}é ❄️ 😀 a/b \u{2028}"
    }()

    /// A transcript that uses every field of every record.
    static func fullTranscript() -> Transcript {
        var transcript = Transcript(client: "192.0.2.10:40000", server: "[2001:db8::25]:25")
        transcript.startTime = 1_700_000_000.123456
        var greeting = Transcript.Exchange(
            role: .greeting, response: .reply(SMTPReply(code: .serviceReady, lines: ["mx.example.net ESMTP \(awkward)"])))
        greeting.repliedAt = 0.000_012
        var ehlo = Transcript.Exchange(
            role: .answer, step: 0, sent: .command(Array("EHLO client\u{1}.example.org".utf8)),
            response: .reply(
                SMTPReply(
                    code: .ok, lines: ["mx.example.net", "PIPELINING", "STARTTLS"], enhancedCode: nil,
                    findings: [.nonASCII(line: 2), .badSeparator(line: 1, octet: 0x09)])))
        ehlo.sentAt = 3.0
        ehlo.repliedAt = 1e-7
        ehlo.pipelineGroup = 4
        ehlo.notes = [.missingData(.client, octets: 12)]
        var mail = Transcript.Exchange(
            role: .answer, step: 1, sent: .command(Array("MAIL FROM:<\"quoted\\\\\"@example.org>".utf8)),
            response: .reply(SMTPReply(.ok, EnhancedStatusCode(2, 1, 0), "Ok")))
        mail.sentAt = 123_456_789.123
        mail.repliedAt = -0.0
        let unsolicited = Transcript.Exchange(
            role: .unsolicited, response: .malformed(MalformedReply(lines: [Array("garbage\u{7f}".utf8)], reason: "no reply code")))
        let body = Transcript.Exchange(role: .answer, step: 2, sent: .messageBody(octets: 2_000_000))
        transcript.exchanges = [greeting, ehlo, mail, unsolicited, body]
        transcript.notes = [.bareLineEnds(.client, count: 3), .unterminatedServerOctets(7)]
        transcript.tls = TLSRecord(
            mode: .starttls, at: 0.25, version: "TLSv1.3",
            certificate: CertificateSummary(
                subject: "CN=mx.example.net", issuer: "CN=Test \"CA\"", subjectAlternativeNames: ["mx.example.net", "*.example.net"],
                notValidBefore: "2026-01-01T00:00:00Z", notValidAfter: "2027-01-01T00:00:00Z", sha256: "ab:cd", verified: false,
                verification: "self-signed"),
            droppedPlaintext: Array("RSET\r\n".utf8))
        transcript.end = .closedByServer(at: 1.5)
        return transcript
    }

    static func scenario(_ id: String) -> Scenario {
        Scenario(
            id: id, title: "A title with \(awkward)", refs: ["RFC 5321 4.1.1.1"], tags: ["capture", "a/b"], file: "/tmp/some \"file\".pcap")
    }

    @Test func everyRecordOfTheGoldenRunIsWhatTheEncoderWrites() async throws {
        let run = try await GoldenReportTests.run()
        for result in run.cases {
            let record = JSONLinesReporter.caseRecord(result, wording: GoldenReportTests.wording)
            #expect(record.json == (try Self.encoded(record)), "\(result.scenario.id)")
        }
    }

    @Test(arguments: [0.0, 1.0, 0.5, 1e-7, 2.5e-5, 3e15, 1e16, 1e20, 123_456_789.123, -0.0, 1_234_567.0])
    func aCaseWithEveryFieldAndAwkwardTextIsWhatTheEncoderWrites(duration: Double) throws {
        let failures = [
            Failure(
                step: 1, rule: .relayDenied,
                expected: .refusal(SMTPReply(.mailboxUnavailable, EnhancedStatusCode(5, 7, 1), "Relay access denied"), due: .here),
                got: .reply(.reply(SMTPReply(code: .ok, lines: [Self.awkward])))),
            Failure(step: nil, rule: nil, expected: .code(.ok), got: .noReply),
        ]
        for verdict in [Verdict.passed, .failed(failures), .skipped(.needs(.trustedSource)), .error(.session(.closedByServer(at: 1)))] {
            var result = CaseResult(
                scenario: Self.scenario("capture.session-1"), verdict: verdict, transcript: Self.fullTranscript(), duration: duration)
            result.suite = "suite \(Self.awkward)"
            let record = JSONLinesReporter.caseRecord(result, wording: Wording())
            #expect(record.json == (try Self.encoded(record)))
            var bare = result
            bare.transcript = nil
            bare.suite = nil
            let plain = JSONLinesReporter.caseRecord(bare, wording: Wording())
            #expect(plain.json == (try Self.encoded(plain)))
        }
    }

    @Test func aRecordThatCarriesTheWholeCaseIsLeftToTheEncoder() {
        let result = CaseResult(scenario: Self.scenario("x"), verdict: .passed, transcript: nil, duration: 0)
        #expect(JSONLinesReporter.caseRecord(result, wording: Wording(), whole: true).json == nil)
    }

    /// `sessions --format json`: the extra fields and the transcript, keys sorted.
    @Test func aSessionLineIsWhatTheEncoderWrites() throws {
        struct Reference: Encodable {
            struct Key: CodingKey {
                var stringValue: String
                var intValue: Int? { nil }
                init(stringValue: String) { self.stringValue = stringValue }
                init?(intValue: Int) { nil }
            }
            var fields: [String: JSONLinesReporter.Field]
            var transcript: JSONLinesReporter.TranscriptRecord
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: Key.self)
                for (key, value) in self.fields { try container.encode(value, forKey: Key(stringValue: key)) }
                try container.encode(self.transcript, forKey: Key(stringValue: "transcript"))
            }
        }
        let fields: [String: JSONLinesReporter.Field] = [
            "session": .number(12), "file": .text("/tmp/a \"b\".pcap"), "implicitTLS": .flag(false), "Zeta": "upper first",
            "z": .text(Self.awkward),
        ]
        let transcript = Self.fullTranscript()
        let reference = Reference(fields: fields, transcript: JSONLinesReporter.record(transcript, Wording()))
        #expect(JSONLinesReporter.encode(transcript, extra: fields) == (try Self.encoded(reference)))
    }
}
