import Foundation
import SMTPTestSupport
import Testing

/// `smtpcheck run` against each hostile behaviour, as a user runs it: the
/// case ends with a clear reason within its time-out, and the process's own
/// peak resident size (from `wait4`) stays under a stated bound.
@Suite(.serialized) struct HostileServerRunTests {
    /// The time-out each run is given, and the slack over it a run may take
    /// to start, connect, report and exit on a loaded machine.
    static let timeout = 2
    static let slack = 5.0
    /// Peak resident size allowed to one run of the debug binary: about 40 MB
    /// at rest; before the bounds, an endless reply took over a gigabyte.
    static let memoryBoundKilobytes = 150 * 1024

    static let relayCase = HostileServer.relayCase

    struct Expectation: Sendable, CustomTestStringConvertible {
        var behaviour: HostileServer.Behaviour
        var tls: String
        /// Words the report must hold: the reason, in the user's terms (any
        /// one of them: which bound a streaming server meets first depends
        /// on how fast the client reads).
        var reasons: [String]
        var testDescription: String { self.behaviour.rawValue }
    }

    static let expectations: [Expectation] = [
        .init(behaviour: .stalledSTARTTLSHandshake, tls: "starttls", reasons: ["the TLS handshake did not complete within"]),
        .init(behaviour: .stalledImplicitHandshake, tls: "implicit", reasons: ["the TLS handshake did not complete within"]),
        // Which end comes first depends on how fast the client reads: a bound,
        // or on a loaded machine the case's own time-out (the time check
        // below is what fails if --timeout is ignored).
        .init(
            behaviour: .streamedReplies, tls: "none",
            reasons: ["before they were asked for", "100 replies nobody asked for", "timed out waiting"]),
        .init(behaviour: .endlessMultilineReply, tls: "none", reasons: ["reply over 1000 lines"]),
        .init(behaviour: .tricklingBanner, tls: "none", reasons: ["no greeting"]),
        .init(behaviour: .garbage, tls: "none", reasons: ["malformed reply"]),
        .init(behaviour: .closeMidReply, tls: "none", reasons: ["250-PIPEL"]),
        .init(behaviour: .reset, tls: "none", reasons: ["reset"]),
    ]

    @Test(arguments: Self.expectations)
    func endsWithAReasonInTimeAndBoundedMemory(_ expectation: Expectation) async throws {
        let server = try await HostileServer.start(expectation.behaviour)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let scenario = folder.appendingPathComponent("relay.yaml").path
        try Self.relayCase.write(toFile: scenario, atomically: true, encoding: .utf8)
        let arguments = [
            "run", "--target", "127.0.0.1:\(server.port)", "--tls", expectation.tls, "--timeout", "\(Self.timeout)", "--verbose", scenario,
        ]
        let run = try await offThePool { try MeasuredProcess.run(Tool.path, arguments) }
        try await server.stop()
        // Not a pass: either the case failed on what the server sent, or it
        // could not be judged; never a crash (a signal gives 128 + N).
        #expect([1, 2].contains(run.status), "exit \(run.status):\n\(run.output)")
        #expect(expectation.reasons.contains { run.output.contains($0) }, "\(run.output)")
        if !TestEnvironment.sanitized {
            #expect(run.seconds < Double(Self.timeout) + Self.slack, "took \(run.seconds) s")
            #expect(run.peakResidentKilobytes < Self.memoryBoundKilobytes, "peak \(run.peakResidentKilobytes) KB")
        }
        print("hostile \(expectation.behaviour.rawValue): exit \(run.status), \(run.seconds) s, peak \(run.peakResidentKilobytes) KB")
    }
}
