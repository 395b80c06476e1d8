import SMTPTestSupport
import Testing

/// Every command's `--help` against a golden file, at a fixed width: the
/// help is the reference users read first, so a change to it is seen.
@Suite struct HelpGoldenTests {
    static let commands: [[String]] = [[], ["run"], ["serve"], ["list"], ["sessions"], ["check"], ["replay"]]

    @Test(arguments: commands)
    func helpMatchesItsGoldenFile(command: [String]) async throws {
        let output = try await Tool.run("help", command, environment: ["COLUMNS": "100", "LINES": "40"])
        #expect(output.status == 0, "\(output.stderr)")
        let name = "help/\(command.first ?? "smtpcheck").txt"
        #expect(Golden.compare(output.stdout, name) == nil, "\(Golden.compare(output.stdout, name) ?? "")")
    }
}
