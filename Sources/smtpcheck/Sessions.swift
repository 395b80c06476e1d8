import ArgumentParser
import Foundation
import SMTPCapture
import SMTPReport

struct CaptureInputOptions: ParsableArguments {
    @Option(name: .long, help: "A BPF filter applied while reading, e.g. 'port 587'.")
    var filter: String?

    @Option(name: .long, help: "Another port to take as an SMTP server port (besides 25, 465, 587, 2525).")
    var port: [UInt16] = []

    /// Reads a capture; an unusable file prints its error and exits 65.
    func read(_ path: String, keepSessions: Bool = true, each: (CapturedSession) -> Void = { _ in }) throws -> CaptureSummary {
        let options = CaptureOptions(extraPorts: Set(self.port), filter: self.filter, keepSessions: keepSessions)
        do {
            return try CaptureReader.read(path, options: options, session: each)
        } catch {
            FileHandle.standardError.write(Data("smtpcheck: \(error)\n".utf8))
            throw ExitCode(ExitCodes.badInput)
        }
    }
}

extension SMTPCheck {
    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the SMTP sessions of a capture, each command paired with its reply.")

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case text, json
        }

        @Argument(help: "A pcap or pcapng file.")
        var capture: String

        @OptionGroup var input: CaptureInputOptions

        @Option(name: .long, help: "text, or json (one JSON object per session).")
        var format: Format = .text

        func run() async throws {
            let format = self.format
            // Each session is printed as it ends and then let go.
            let summary = try self.input.read(self.capture, keepSessions: false) { session in
                switch format {
                case .text:
                    FileHandle.standardOutput.write(Data(Self.text(session).utf8))
                case .json:
                    var fields = [
                        "type": "session", "number": String(session.number), "client": session.client.description,
                        "server": session.server.description,
                    ]
                    if session.implicitTLS { fields["implicitTLS"] = "true" }
                    let line = JSONLinesReporter.encode(session.transcript, extra: fields, wording: .commandLine)
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                }
            }
            var closing = "\(summary.sessionCount) SMTP sessions in \(summary.packets) packets"
            if summary.otherFlows > 0 { closing += "; \(summary.otherFlows) other TCP connections" }
            let lines = [closing] + summary.notes
            if format == .text {
                FileHandle.standardOutput.write(Data((lines.map { "# \($0)" }.joined(separator: "\n") + "\n").utf8))
            } else {
                FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            }
        }

        static func text(_ session: CapturedSession) -> String {
            var out = "session \(session.number): \(session.client) -> \(session.server)"
            if let start = session.transcript.startTime {
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                out += ", \(formatter.string(from: Date(timeIntervalSince1970: start)))"
            }
            out += ", \(session.transcript.exchanges.count) exchanges\n"
            for line in TranscriptText(wording: .commandLine).lines(session.transcript, timestamps: true)
            where !line.hasPrefix("# \(session.client)") {
                out += "  " + line + "\n"
            }
            return out + "\n"
        }
    }
}
