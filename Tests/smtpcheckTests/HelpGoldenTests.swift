import SMTPTestSupport
import Testing

/// Every command's `--help` against a golden file, at a fixed width: the
/// help is the reference users read first, so a change to it is seen.
@Suite struct HelpGoldenTests {
    static let commands: [[String]] = [[], ["run"], ["serve"], ["list"], ["sessions"], ["check"], ["replay"], ["merge"], ["explain"]]

    @Test(arguments: commands)
    func helpMatchesItsGoldenFile(command: [String]) async throws {
        let output = try await Tool.run("help", command, environment: ["COLUMNS": "100", "LINES": "40"])
        #expect(output.status == 0, "\(output.stderr)")
        let name = "help/\(command.first ?? "smtpcheck").txt"
        #expect(Golden.compare(output.stdout, name) == nil, "\(Golden.compare(output.stdout, name) ?? "")")
    }
}

/// docs/policy.md's rule reference is what `explain --markdown` writes from
/// the rule catalogue: a rule added, or a reply changed, without `make docs`
/// fails here, so the reference cannot drift from the code.
@Suite struct PolicyReferenceTests {
    @Test func docsPolicyHoldsTheCataloguesRules() async throws {
        let generated = try await Tool.run("explain", "--markdown")
        #expect(generated.status == 0, "\(generated.stderr)")
        let document = try String(contentsOfFile: Repository.root + "/docs/policy.md", encoding: .utf8)
        let first = try #require(generated.stdout.split(separator: "\n").first.map(String.init))
        let start = try #require(document.range(of: first), "docs/policy.md has no generated rules: run make docs")
        let part = document[start.lowerBound...].prefix(generated.stdout.count)
        #expect(String(part) == generated.stdout, "docs/policy.md's rules differ from the catalogue: run make docs")
        #expect(generated.stdout.contains("| `relay.denied` |"))
    }
}
