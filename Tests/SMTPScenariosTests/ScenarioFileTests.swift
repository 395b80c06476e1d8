import Foundation
import SMTPPolicy
import SMTPScenarios
import SMTPTestSupport
import Testing

@Suite struct ScenarioFileTests {
    @Test(arguments: [
        ("id: x\ntitle: t\nsteps:\n  - send: HELO a\n    expct: accepted\n", 5, "steps[0].expct", "unknown field 'expct'"),
        ("title: t\nsteps:\n  - send: HELO a\nexpect: {accepted: true}\n", 1, nil as String?, "missing required field 'id'"),
        ("id: x\ntitle: t\nsteps:\n  - send: HELO a\n    body: b\nexpect: {accepted: true}\n", 4, "steps[0]", "exactly one of"),
        ("id: x\ntitle: t\nsteps:\n  - send: HELO {nope}\nexpect: {accepted: true}\n", 4, "steps[0].send", "unknown placeholder {nope}"),
        ("id: x\ntitle: t\nsteps:\n  - send: \"HELO a\\r\\nMAIL\"\nexpect: {accepted: true}\n", 4, "steps[0].send", "CR, LF or NUL"),
        ("id: x\ntitle: t\nsteps:\n  - raw: \"abc\\\\q\"\n", 4, "steps[0].raw", "unknown escape"),
        ("id: x\ntitle: t\nsteps:\n  - send: HELO a\nexpect: {refused: relay.denyd}\n", 5, "expect.refused", "unknown rule"),
        ("id: x\ntitle: t\nas: admin\nsteps:\n  - send: HELO a\nexpect: {accepted: true}\n", 3, "as", "unknown identity"),
        ("id: x\ntitle: t\nsteps:\n  - send: HELO a\n", 1, nil, "states no expectation"),
        ("id: x\ntitle: t\nsteps:\n  - auth: {mechanism: PLAIN, password: hunter2}\n", 4, "steps[0].auth.password", "secrets never go"),
        ("id: x\ntitle: t\nsteps:\n  - send: HELO a\n    repeat: 0\n    expect: accepted\n", 5, "steps[0].repeat", "outside"),
        ("id: x\ntitle: [t\n", 3, nil, "YAML"),
        ("id: x\ntitle: t\nsteps:\n  - starttls: true\n    expect: accepted\n", 1, nil, "tls: manual"),
        ("id: x\ntitle: t\ntls: sometimes\nsteps:\n  - send: NOOP\n    expect: accepted\n", 3, "tls", "unknown TLS use"),
        ("id: x\ntitle: t\nsteps:\n  - auth: {mechanism: DIGEST-MD5}\n", 4, "steps[0].auth.mechanism", "unknown mechanism"),
        ("id: x\ntitle: t\nsteps:\n  - auth: {mechanism: CRAM-MD5, initial: true}\n", 4, "steps[0].auth.initial", "no initial response"),
        ("id: x\ntitle: t\ntls: manual\nsteps:\n  - starttls: true\nexpect: {no_injected_reply: true}\n", 1, nil, "inject"),
    ])
    func badScenarioNamesFileLineAndField(text: String, line: Int, field: String?, message: String) {
        do {
            _ = try Scenario.parse(text, file: "case.yaml")
            Issue.record("should not parse:\n\(text)")
        } catch {
            #expect(error.file == "case.yaml")
            #expect(error.line == line, "\(error)")
            if let field { #expect(error.field == field, "\(error)") }
            #expect(error.description.contains(message), "\(error)")
        }
    }

    /// Every placeholder a file may name has a value, and every value a name a file may use.
    @Test func everyPlaceholderHasAValue() {
        let values = Placeholders(policy: .defaultSite(), credentials: nil, serverIP: "127.0.0.1").values
        #expect(Set(values.keys) == Placeholders.names)
        #expect(values["sender"] == "alice@example.net")
    }

    @Test func rawEscapesDecode() throws {
        let scenario = try Scenario.parse(
            "id: x\ntitle: t\nsteps:\n  - raw: \"A\\\\r\\\\n\\\\x00\\\\t\"\n    replies: 0\n    expect: accepted\n", file: "f")
        #expect(scenario.steps.first?.action == .raw([0x41, 0x0D, 0x0A, 0x00, 0x09], replies: 0))
    }

    /// Files are parsed over the cores: the error reported is still the
    /// first in file order, and the cases come in id order.
    @Test func theFirstBadFileInOrderIsTheOneReported() throws {
        let good = (0..<40).map { number in
            (file: "good-\(number).yaml", text: "id: good.\(number)\ntitle: t\nsteps:\n  - send: NOOP\n    expect: accepted\n")
        }
        #expect(try ScenarioLoader.parse(good.reversed()).map(\.id) == good.map { "good.\($0.file.dropFirst(5).dropLast(5))" }.sorted())
        let files =
            good[..<20] + [(file: "first-bad.yaml", text: "id: first\n")] + good[20...] + [(file: "second-bad.yaml", text: "steps: [\n")]
        do {
            _ = try ScenarioLoader.parse(Array(files))
            Issue.record("two bad files parsed")
        } catch {
            #expect(error.file == "first-bad.yaml")
        }
    }

    @Test func duplicateIdsAreRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-dup-\(UInt32.random(in: 0...UInt32.max))")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let text = "id: same\ntitle: t\nsteps:\n  - send: NOOP\n    expect: accepted\n"
        _ = FileManager.default.createFile(atPath: folder + "/a.yaml", contents: Data(text.utf8))
        _ = FileManager.default.createFile(atPath: folder + "/b.yaml", contents: Data(text.utf8))
        #expect(throws: InputFileError.self) { try ScenarioLoader.load([folder]) }
    }

    @Test func theBatteryHoldsTheSeedCases() throws {
        let scenarios = try ScenarioLoader.load([Repository.scenarios])
        let named = scenarios.reduce(into: Set<RuleID>()) { $0.formUnion($1.rulesNamed) }
        // Every rule of docs/policy.md's table that the default site enforces has a case.
        for rule in RuleCatalogue.policyTable where Policy.defaultSite().isEnabled(rule) {
            #expect(named.contains(rule), "no case names \(rule)")
        }
        #expect(Set(scenarios.map(\.identity)) == Set(Scenario.Identity.allCases))
    }
}
