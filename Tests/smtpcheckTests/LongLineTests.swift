import Foundation
import SMTPTestSupport
import Testing

/// Issue 14: the console shortens long lines (a 4 KB NOOP argument was
/// printed whole, in the transcript and in the "got" line), and says how long
/// they were; a machine format keeps them.
@Suite struct LongLineTests {
    @Test func longLinesAreShortenedOnTheConsole() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-long-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let argument = String(repeating: "x", count: 4096)
        // The server refuses the 4 KB line (the case passes): its transcript shows it.
        try """
        id: long.noop
        title: A NOOP with a 4 KB argument
        tags: [discipline]
        as: external
        steps:
          - send: EHLO client.example.org
          - send: NOOP \(argument)
            expect: refused
        """.write(toFile: folder + "/noop.yaml", atomically: true, encoding: .utf8)
        // An open relay accepts a recipient with a 248-octet domain: the
        // case fails, and its "got" line names the recipient.
        let domain = Array(repeating: String(repeating: "y", count: 60), count: 4).joined(separator: ".") + ".org"
        try """
        id: long.relay
        title: Relay to a long domain is refused
        tags: [relay]
        as: external
        steps:
          - send: EHLO client.example.org
          - send: MAIL FROM:<sender@client.example.org>
          - send: RCPT TO:<someone@\(domain)>
            expect: {rule: relay.denied}
        """.write(toFile: folder + "/relay.yaml", atomically: true, encoding: .utf8)
        let output = try await Tool.run("run", [folder, "--verbose", "--fault", "open-relay"])
        let lines = output.stdout.split(separator: "\n")
        #expect(output.status == 1, "\(output.stdout.prefix(500)) \(output.stderr)")
        #expect(lines.allSatisfy { $0.count < 260 }, "\(lines.map(\.count).max() ?? 0)")
        #expect(lines.contains { $0.contains("got: 250") && $0.contains("octets in all)") }, "\(output.stdout.prefix(1500))")
        #expect(lines.contains { $0.contains("C: NOOP xxx") && $0.contains("octets in all)") })
        #expect(!output.stdout.contains(argument))
        // A machine format keeps them.
        let json = try await Tool.run("run", [folder, "--format", "json", "--fault", "open-relay"])
        #expect(json.stdout.contains("NOOP " + String(repeating: "x", count: 900)))
        #expect(json.stdout.contains(domain))
    }
}
