import Foundation
import SMTPPolicy
import SMTPTestSupport
import Testing

/// Issue 13, 4: the GitHub Action and the GitLab CI template parse, and the
/// commands they hold run: the install step as a dry run of its make
/// target, the battery step against the in-process server with the binary
/// this suite built in the place the install would put it.
@Suite struct CITemplateTests {
    /// `key` of a mapping, or nil.
    static func value(_ mapping: [(key: String, value: YAMLValue)], _ key: String) -> YAMLValue? {
        mapping.first { $0.key == key }?.value
    }

    /// A folder laid out as an install prefix, `bin/smtpcheck` being the binary under test.
    static func prefix(in folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder + "/bin/smtpcheck", withDestinationPath: Tool.path)
    }

    static func bash(_ command: String, in folder: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", command]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    @Test func theGitHubActionInstallsAndRunsTheBattery() async throws {
        let path = Repository.root + "/action.yml"
        let action = try YAMLValue.parse(try String(contentsOfFile: path, encoding: .utf8), file: path).mapping()
        let inputs = try #require(Self.value(action, "inputs")).mapping().map(\.key)
        #expect(inputs == ["target", "policy", "arguments"])
        let runs = try #require(Self.value(action, "runs")).mapping()
        #expect(try Self.value(runs, "using")?.string() == "composite")
        let steps = try #require(Self.value(runs, "steps")).sequence().map { try $0.mapping() }
        let commands = try steps.compactMap { try Self.value($0, "run")?.string() }
        #expect(commands.count == 2)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-action-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: work) }
        try Self.prefix(in: work + "/smtpcheck")
        let environment = [
            "GITHUB_ACTION_PATH": Repository.root, "RUNNER_TEMP": work, "GITHUB_STEP_SUMMARY": work + "/summary.md",
            "SMTPCHECK_TARGET": "", "SMTPCHECK_POLICY": "mx", "SMTPCHECK_ARGUMENTS": "--tag helo",
        ]
        let install = try await offThePool {
            try Self.bash(commands[0].replacingOccurrences(of: "make ", with: "make -n "), in: work, environment: environment)
        }
        #expect(install.status == 0, "\(install.output)")
        #expect(install.output.contains("--static-swift-stdlib"))
        let run = try await offThePool { try Self.bash(commands[1], in: work, environment: environment) }
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("64 passed, 0 failed"))
        #expect(
            try String(contentsOfFile: work + "/summary.md", encoding: .utf8).contains("## smtpcheck against in-process reference server"))
    }

    @Test func theGitLabTemplateInstallsAndWritesAJUnitReport() async throws {
        let path = Repository.root + "/docs/ci/smtpcheck.gitlab-ci.yml"
        let file = try YAMLValue.parse(try String(contentsOfFile: path, encoding: .utf8), file: path).mapping()
        let job = try #require(Self.value(file, "smtpcheck")).mapping()
        #expect(try Self.value(job, "image")?.string().hasPrefix("swift:") == true)
        let script = try #require(Self.value(job, "script")).strings()
        #expect(script.count == 2)
        let report = try Self.value(try #require(Self.value(job, "artifacts")).mapping(), "reports")?.mapping()
        #expect(try report.flatMap { try Self.value($0, "junit")?.string() } == "smtpcheck.xml")
        let project = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-gitlab-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: project) }
        try Self.prefix(in: project + "/.smtpcheck")
        let environment = [
            "CI_PROJECT_DIR": project, "SMTPCHECK_SOURCE": Repository.root, "SMTPCHECK_TARGET": "", "SMTPCHECK_POLICY": "default",
            "SMTPCHECK_ARGUMENTS": "--tag relay",
        ]
        let install = try await offThePool {
            try Self.bash(script[0].replacingOccurrences(of: "make -C", with: "make -n -C"), in: project, environment: environment)
        }
        #expect(install.status == 0, "\(install.output)")
        let run = try await offThePool { try Self.bash(script[1], in: project, environment: environment) }
        #expect(run.status == 0, "\(run.output)")
        let xml = try String(contentsOfFile: project + "/smtpcheck.xml", encoding: .utf8)
        #expect(xml.hasPrefix("<?xml") && xml.contains("</testsuites>"))
    }
}
