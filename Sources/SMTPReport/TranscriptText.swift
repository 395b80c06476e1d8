import Foundation
import SMTPProtocol
import SMTPScenarios

/// A transcript as text lines, `C:` for the client and `S:` for the server,
/// each prefixed with its step. Every report format shows it this way.
public enum TranscriptText {
    /// With `timestamps`, each line starts with the seconds since the session began.
    public static func lines(_ transcript: Transcript, timestamps: Bool = false) -> [String] {
        var out: [String] = []
        func stamp(_ time: Double?) -> String {
            guard timestamps else { return "" }
            guard let time else { return "         " }
            let text = String(format: "%8.3f", time)
            return text + " "
        }
        if let client = transcript.client, let server = transcript.server { out.append("# \(client) -> \(server)") }
        var lastGroup: Int?
        var tlsShown = false
        for exchange in transcript.exchanges {
            if exchange.encrypted && !tlsShown, let tls = transcript.tls {
                out += self.tlsLines(tls)
                tlsShown = true
            }
            let step = exchange.step.map { "[\($0 + 1)] " } ?? "    "
            if let sent = exchange.sent {
                let pipelined = exchange.pipelineGroup != nil && exchange.pipelineGroup != lastGroup ? " (pipelined)" : ""
                if exchange.kind == .body {
                    out.append("\(stamp(exchange.sentAt))\(step)C: <message body, \(sent.octets) octets>\(pipelined)")
                } else {
                    out.append("\(stamp(exchange.sentAt))\(step)C: \(sent.text)\(pipelined)")
                }
            }
            lastGroup = exchange.pipelineGroup
            let marker = exchange.kind == .unsolicited ? "S (unsolicited): " : "S: "
            switch exchange.response {
            case .reply(let reply):
                for (index, line) in reply.description.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
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
            for note in exchange.notes { out.append("\(stamp(nil))    ! \(note)") }
        }
        for note in transcript.notes { out.append("# \(note)") }
        if let end = transcript.end { out.append("# \(end)") }
        return out
    }

    static func tlsLines(_ tls: TLSRecord) -> [String] {
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

    /// The verdict's details: failures, or the reason of an error or skip.
    public static func details(_ result: CaseResult) -> [String] {
        switch result.verdict {
        case .passed: return []
        case .error(let reason): return ["error: \(reason)"]
        case .skipped(let reason): return ["skipped: \(reason)"]
        case .failed(let failures):
            return failures.flatMap { failure in
                let step = failure.step.map { "step \($0 + 1)" } ?? "session"
                let rule = failure.rule.map { "rule \($0), " } ?? ""
                return ["\(rule)\(step): expected \(failure.expected)", "  got: \(failure.got)"]
            }
        }
    }
}
