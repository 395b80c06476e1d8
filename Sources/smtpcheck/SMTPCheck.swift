import ArgumentParser
import Foundation
import SMTPPolicy
import SMTPReport
import SMTPScenarios
import SMTPServer

@main
struct SMTPCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smtpcheck",
        abstract: "Conformance tests for SMTP servers, judged against a written policy.",
        discussion: """
            Exit codes: 0 every case met the policy; 1 at least one case broke it; 2 a case \
            could not be run and none broke it; 64 bad usage; 65 a bad input file.
            """,
        version: "0.1.0",
        subcommands: [Run.self, Serve.self, List.self, Explain.self, Sessions.self, Check.self, Replay.self, Merge.self],
        defaultSubcommand: Run.self
    )
}

/// Exit code 65 (EX_DATAERR) for a bad scenario or policy file, with its location.
struct BadInputFile: Error, CustomStringConvertible {
    var error: InputFileError
    var description: String { "smtpcheck: \(self.error)" }
}

enum ExitCodes {
    static let badInput: Int32 = 65
    /// The run could not happen: a target nobody answers at, a port that
    /// cannot be bound.
    static let couldNotRun: Int32 = 2

    /// Loads or reports: a bad file prints its location and exits 65.
    static func loading<T>(_ body: () throws(InputFileError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            StandardStreams.err("smtpcheck: \(error)\n")
            throw ExitCode(badInput)
        }
    }
}

struct PolicyOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A policy file, or a built-in policy: default, documented, postfix, portable (the default site under each profile), or a shipped one: \(Policy.builtInFiles.map(\.name).joined(separator: ", ")).",
            valueName: "policy"),
        completion: .custom { _, _, prefix in Completions.policies(prefix) })
    var policy: String = "default"

    func load() throws -> Policy { try Self.load(self.policy) }

    /// A policy by name or path; a bad file prints its location and exits 65.
    static func load(_ nameOrPath: String) throws -> Policy {
        try ExitCodes.loading { () throws(InputFileError) in
            try Policy.load(nameOrPath, environment: ProcessInfo.processInfo.environment)
        }
    }
}

struct ScenarioSelection: ParsableArguments {
    @Argument(help: "Scenario files or folders to run instead of the built-in battery.", completion: .file(extensions: ["yaml", "yml"]))
    var paths: [String] = []

    @Option(
        name: .customLong("scenarios"),
        help: ArgumentHelp(
            "Scenario files or folders added to the built-in battery (repeat for several); a case whose id is built in replaces it.",
            valueName: "path"),
        completion: .file(extensions: ["yaml", "yml"]))
    var added: [String] = []

    @Option(
        name: .long, help: "Only cases with this tag (repeat for any of several).",
        completion: .custom { _, _, prefix in Completions.tags(prefix) })
    var tag: [String] = []

    func validate() throws {
        if !self.paths.isEmpty && !self.added.isEmpty {
            throw ValidationError("give scenario paths to run them instead of the battery, or --scenarios to add them to it, not both")
        }
    }

    /// The selected cases. A selection that matches none is a usage error,
    /// not an empty green run.
    func load() throws -> [Scenario] {
        let all: [Scenario]
        let source: String
        if self.paths.isEmpty {
            let (battery, replaced) = try ExitCodes.loading { () throws(InputFileError) in
                try ScenarioLoader.loadBuiltIn(adding: self.added)
            }
            for id in replaced { StandardStreams.err("smtpcheck: \(id) from --scenarios replaces the built-in case\n") }
            all = battery
            source = "the built-in battery" + (self.added.isEmpty ? "" : " and " + self.added.joined(separator: ", "))
        } else {
            all = try ExitCodes.loading { () throws(InputFileError) in try ScenarioLoader.load(self.paths) }
            source = self.paths.joined(separator: ", ")
        }
        guard !all.isEmpty else { throw ValidationError("no scenario file under \(source)") }
        guard !self.tag.isEmpty else { return all }
        let selected = all.filter { !Set($0.tags).isDisjoint(with: self.tag) }
        guard !selected.isEmpty else {
            let known = Set(all.flatMap(\.tags)).sorted().joined(separator: ", ")
            throw ValidationError("no case has the tag \(self.tag.joined(separator: " or ")) (known tags: \(known))")
        }
        return selected
    }
}

extension ServerFaults {
    static func parse(_ names: [String]) throws -> ServerFaults {
        var faults: ServerFaults = []
        for name in names {
            guard let fault = ServerFaults.byName[name] else {
                throw ValidationError("unknown fault '\(name)' (known: \(ServerFaults.catalogue.map(\.name).joined(separator: ", ")))")
            }
            faults.insert(fault)
        }
        return faults
    }

    /// The faults for `--help`.
    static var helpText: String {
        "Give the in-process server a deliberate defect: " + self.catalogue.map { "\($0.name) (\($0.breaks))" }.joined(separator: "; ")
    }
}

extension Wording {
    /// The library's words, with this command line's flags for what a skipped case needed.
    static let commandLine = Wording { hint in
        switch hint {
        case .credentials: "--user NAME --password-env VAR"
        case .trustedSource: "--source ADDR"
        case .xclientSource, .proxySource: "bind an address of the policy's hosts on loopback, or run from one of them"
        case .proxyListener: "--proxy-target HOST:PORT"
        case .implicitTLS: "--tls implicit"
        case .startTLS: "--tls starttls"
        case .bearerToken: "--oauth-token-env VAR"
        case .authFromCapture: "--auth-from-capture"
        }
    }
}

/// Standard output and error, written so that a reader that went away
/// (`smtpcheck serve | head -2`) ends the program quietly, as a closed pipe
/// ends other tools (status 141, 128 + SIGPIPE), instead of a trap.
enum StandardStreams {
    static func out(_ text: String) { Self.write(text, to: .standardOutput) }
    static func err(_ text: String) { Self.write(text, to: .standardError) }

    static func write(_ text: String, to handle: FileHandle) {
        do {
            try handle.write(contentsOf: Data(text.utf8))
        } catch {
            if handle === FileHandle.standardOutput { Self.closed() }
        }
    }

    /// Standard output closed under us.
    static func closed() -> Never { exit(141) }
}

/// What the shells complete option values with: built-in names, tags from
/// the battery, and files.
enum Completions {
    /// Built-in and shipped policies, and policy files under the prefix's folder.
    static func policies(_ prefix: String) -> [String] {
        (Policy.builtInNames + self.files(prefix, extensions: ["yaml", "yml"])).filter { $0.hasPrefix(prefix) }
    }

    /// Every tag of the built-in battery.
    static func tags(_ prefix: String) -> [String] {
        let scenarios = (try? ScenarioLoader.loadBuiltIn().scenarios) ?? []
        return Set(scenarios.flatMap(\.tags)).sorted().filter { $0.hasPrefix(prefix) }
    }

    /// Files with these extensions, and folders, in the folder the prefix names.
    static func files(_ prefix: String, extensions: [String]) -> [String] {
        let folder = prefix.contains("/") ? String(prefix[...(prefix.lastIndex(of: "/") ?? prefix.startIndex)]) : ""
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.isEmpty ? "." : folder)) ?? []
        return names.compactMap { name in
            var isDirectory: ObjCBool = false
            let path = folder + name
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
            if isDirectory.boolValue { return path + "/" }
            return extensions.contains((name as NSString).pathExtension) ? path : nil
        }.sorted()
    }
}
