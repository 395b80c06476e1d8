import Foundation
import SMTPPolicy
import SMTPScenarios
import SMTPTestSupport
import Testing

/// The battery the binary carries is the one in scenarios/: `make built-in`
/// writes it again after a scenario or policy file changes.
@Suite struct BuiltInBatteryTests {
    static func files(policies: Bool) throws -> [String: String] {
        let root = URL(fileURLWithPath: Repository.scenarios).deletingLastPathComponent().path
        var found: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: Repository.scenarios)
        while let relative = enumerator?.nextObject() as? String {
            guard relative.hasSuffix(".yaml") || relative.hasSuffix(".yml") else { continue }
            guard relative.split(separator: "/").contains("policies") == policies else { continue }
            let path = "scenarios/" + relative
            found[path] = try String(contentsOfFile: root + "/" + path, encoding: .utf8)
        }
        return found
    }

    @Test func theBinarysScenariosAreTheFiles() throws {
        let embedded = Dictionary(ScenarioLoader.builtIn.map { ($0.file, $0.text) }, uniquingKeysWith: { first, _ in first })
        let files = try Self.files(policies: false)
        #expect(!files.isEmpty)
        for (path, text) in files {
            #expect(embedded[path] == text, "\(path) differs from the binary's copy: run make built-in")
        }
        #expect(Set(embedded.keys) == Set(files.keys), "scenario files added or removed: run make built-in")
        #expect(try ScenarioLoader.loadBuiltIn().scenarios.map(\.id) == ScenarioLoader.load([Repository.scenarios]).map(\.id))
    }

    @Test func theBinarysPoliciesAreTheFiles() throws {
        let files = try Self.files(policies: true)
        #expect(files.count == Policy.builtInFiles.count)
        for entry in Policy.builtInFiles {
            #expect(files[entry.file] == entry.text, "\(entry.file) differs from the binary's copy: run make built-in")
            #expect(throws: Never.self) { _ = try Policy.load(entry.name, environment: [:]) }
        }
    }

    @Test func anAddedCaseReplacesTheBuiltInOneWithTheSameID() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-added-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let builtIn = try ScenarioLoader.loadBuiltIn().scenarios
        let first = try #require(ScenarioLoader.builtIn.first)
        try first.text.replacingOccurrences(of: "title:", with: "title: replaced").write(
            toFile: folder + "/replacing.yaml", atomically: true, encoding: .utf8)
        let (scenarios, replaced) = try ScenarioLoader.loadBuiltIn(adding: [folder])
        #expect(!replaced.isEmpty)
        #expect(scenarios.count == builtIn.count)
        let id = try #require(replaced.first)
        #expect(scenarios.first { $0.id == id }?.file == folder + "/replacing.yaml")
    }
}
