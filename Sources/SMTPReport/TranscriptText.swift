import Foundation
import SMTPProtocol
import SMTPScenarios

/// A transcript as text lines, `C:` for the client and `S:` for the server,
/// each prefixed with its step. Every text format shows it this way.
public struct TranscriptText: Sendable {
    public var wording: Wording

    public init(wording: Wording = Wording()) {
        self.wording = wording
    }

    /// With `timestamps`, each line starts with the seconds since the session began.
    public func lines(_ transcript: Transcript, timestamps: Bool = false) -> [String] {
        var out: [String] = []
        func stamp(_ time: Double?) -> String {
            guard timestamps else { return "" }
            guard let time else { return "         " }
            return TimeText.seconds(time) + " "
        }
        if let client = transcript.client, let server = transcript.server { out.append("# \(client) -> \(server)") }
        var lastGroup: Int?
        var tlsShown = false
        var repeated = 0
        for (index, exchange) in transcript.exchanges.enumerated() {
            // A server repeating one reply unasked is shown once, with a count.
            if index > 0, exchange.role == .unsolicited, exchange.sent == nil, exchange.notes.isEmpty,
                transcript.exchanges[index - 1].role == .unsolicited, transcript.exchanges[index - 1].response == exchange.response
            {
                repeated += 1
                continue
            }
            if repeated > 0 {
                out.append("\(stamp(nil))    ! the same reply \(repeated) more times, unasked")
                repeated = 0
            }
            if exchange.encrypted && !tlsShown, let tls = transcript.tls {
                out += self.tlsLines(tls)
                tlsShown = true
            }
            let step = exchange.step.map { "[\($0 + 1)] " } ?? "    "
            if let sent = exchange.sent {
                let pipelined = exchange.pipelineGroup != nil && exchange.pipelineGroup != lastGroup ? " (pipelined)" : ""
                out.append("\(stamp(exchange.sentAt))\(step)C: \(self.wording.unit(sent))\(pipelined)")
            }
            lastGroup = exchange.pipelineGroup
            let marker = exchange.role == .unsolicited ? "S (unsolicited): " : "S: "
            switch exchange.response {
            case .reply(let reply):
                for (index, line) in reply.displayLines.enumerated() {
                    out.append(
                        "\(stamp(index == 0 ? exchange.repliedAt : nil))\(index == 0 ? step : "    ")\(marker)\(Printable.escape(line.utf8))"
                    )
                }
                for finding in reply.findings { out.append("\(stamp(nil))    ! \(finding)") }
            case .malformed(let malformed):
                out.append("\(stamp(exchange.repliedAt))\(step)\(marker)\(malformed.description)")
            case nil:
                if exchange.sent != nil { out.append("\(stamp(nil))\(step)S: (no reply)") }
            }
            for note in exchange.notes { out.append("\(stamp(nil))    ! \(self.wording.note(note))") }
        }
        if repeated > 0 { out.append("\(stamp(nil))    ! the same reply \(repeated) more times, unasked") }
        for note in transcript.notes { out.append("# \(self.wording.note(note))") }
        if let end = transcript.end { out.append("# \(self.wording.end(end, awaiting: self.wording.awaited(transcript)))") }
        return out
    }

    func tlsLines(_ tls: TLSRecord) -> [String] {
        var out = ["# TLS (\(tls.mode.rawValue)) up\(tls.version.map { ": \($0)" } ?? "")"]
        if let certificate = tls.certificate {
            out.append("#   certificate: \(certificate.subject); SANs: \(certificate.subjectAlternativeNames.joined(separator: ", "))")
            out.append("#   issuer: \(certificate.issuer); valid \(certificate.notValidBefore) to \(certificate.notValidAfter)")
            out.append("#   SHA-256 \(certificate.sha256); verification: \(certificate.verification)")
        }
        if !tls.droppedPlaintext.isEmpty {
            out.append("#   ! \(tls.droppedPlaintext.count) octets of plaintext after the 220 were dropped")
        }
        return out
    }

    /// A line that fits: its start, and how long it was. A 4 KB command
    /// argument is not a report line.
    public static func shorten(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit, text.count > limit else { return text }
        return String(text.prefix(limit)) + "… (\(text.utf8.count) octets in all)"
    }

    /// The verdict's details: failures, or the reason of an error or skip.
    public func details(_ result: CaseResult) -> [String] {
        self.wording.verdictDetails(result.verdict, transcript: result.transcript)
    }
}
