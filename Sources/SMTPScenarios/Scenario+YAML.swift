import Foundation
import SMTPPolicy
import SMTPProtocol

extension Scenario {
    static let fields: Set<String> = ["id", "title", "refs", "tags", "as", "steps", "expect", "tls", "matrix"]
    static let stepFields: Set<String> = [
        "send", "pipeline", "raw", "replies", "body", "auth", "starttls", "bdat", "expect", "repeat", "before_greeting", "pause_ms",
    ]
    /// Placeholders a step may use; secrets are never among them.
    public static var placeholders: Set<String> { Placeholders.names }

    /// Parses one scenario file.
    public static func parse(_ text: String, file: String) throws(InputFileError) -> Scenario {
        let root = try YAMLValue.parse(text, file: file)
        let fields = try root.fields(allowed: fields)
        func required(_ key: String) throws(InputFileError) -> YAMLValue {
            guard let value = fields[key] else { throw root.error("missing required field '\(key)'") }
            return value
        }
        let idValue = try required("id")
        let id = try idValue.string()
        guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
            throw idValue.error("an id is letters, digits, '.', '-' and '_'")
        }
        let identity = try fields["as"]?.choice("identity", as: Identity.self) ?? .external
        let stepsValue = try required("steps")
        var steps: [Step] = []
        for (index, item) in try stepsValue.sequence().enumerated() {
            let step = try parseStep(item)
            if step.beforeGreeting && index > 0 { throw item.error("only the first step can go before the greeting") }
            steps.append(step)
        }
        guard !steps.isEmpty else { throw stepsValue.error("a scenario needs at least one step") }
        let tls = try fields["tls"]?.choice("TLS use", as: TLSUse.self) ?? .auto
        var refused: [RuleID] = []
        var accepted = false
        var noInjectedReply = false
        var noExtraReplies = false
        if let value = fields["expect"] {
            let expect = try value.fields(allowed: ["refused", "accepted", "no_injected_reply", "no_extra_replies"])
            if let flag = expect["no_injected_reply"] { noInjectedReply = try flag.bool() }
            if let flag = expect["no_extra_replies"] { noExtraReplies = try flag.bool() }
            if let rules = expect["refused"] {
                for name in try rules.strings() {
                    let rule = RuleID(rawValue: name)
                    guard RuleCatalogue.documented[rule] != nil else { throw rules.error("unknown rule '\(name)'") }
                    refused.append(rule)
                }
            }
            if let flag = expect["accepted"] { accepted = try flag.bool() }
            if accepted && !refused.isEmpty { throw value.error("a case cannot expect both 'accepted' and 'refused'") }
        }
        if steps.contains(where: { if case .starttls = $0.action { true } else { false } }) && tls != .manual {
            throw root.error("a case with a starttls step drives TLS itself: give it 'tls: manual'")
        }
        if noInjectedReply && !steps.contains(where: { if case .starttls(let injected) = $0.action { injected != nil } else { false } }) {
            throw root.error("'no_injected_reply' needs a starttls step with 'inject'")
        }
        if refused.isEmpty && !accepted && !noInjectedReply && !noExtraReplies && !steps.contains(where: { $0.expectation != nil }) {
            throw root.error("the scenario states no expectation: give 'expect:' or a step's 'expect:'")
        }
        var scenario = Scenario(
            id: id, title: try required("title").string(), refs: try fields["refs"]?.strings() ?? [],
            tags: try fields["tags"]?.strings() ?? [], identity: identity, steps: steps, refusedBy: refused,
            acceptedThroughout: accepted, noInjectedReply: noInjectedReply, noExtraReplies: noExtraReplies, tls: tls, file: file,
            line: root.line ?? 1)
        scenario.matrix = try fields["matrix"]?.bool() ?? false
        return scenario
    }

    static func parseStep(_ item: YAMLValue) throws(InputFileError) -> Step {
        let fields = try item.fields(allowed: stepFields)
        let actions = ["send", "pipeline", "raw", "body", "auth", "starttls", "bdat"].compactMap { key in fields[key].map { (key, $0) } }
        guard actions.count == 1, let (name, value) = actions.first else {
            let found = actions.isEmpty ? "none" : actions.map(\.0).joined(separator: ", ")
            throw item.error("a step has exactly one of send, pipeline, raw, body, auth, starttls, bdat (found: \(found))")
        }
        let action: Step.Action
        switch name {
        case "send":
            let text = try value.string()
            try checkLine(text, value)
            action = .send(text)
        case "pipeline":
            let lines = try value.strings()
            guard lines.count >= 2 else { throw value.error("a pipeline holds at least two commands") }
            for line in lines { try checkLine(line, value) }
            action = .pipeline(lines)
        case "raw":
            let bytes = try decodeEscapes(try value.string(), value)
            let replies = try fields["replies"]?.int(in: 0...100) ?? 1
            action = .raw(bytes, replies: replies)
        case "body":
            action = .body(try value.string())
        case "bdat":
            let spec = try value.fields(allowed: ["chunk", "last"])
            guard let chunk = spec["chunk"] else { throw value.error("a bdat step needs 'chunk'") }
            let text = try chunk.string()
            action = .bdat(chunk: text.isEmpty ? [] : try decodeEscapes(text, chunk), last: try spec["last"]?.bool() ?? true)
        case "starttls":
            if value.isScalar {
                guard try value.bool() else { throw value.error("starttls is 'true' or {inject: COMMAND}") }
                action = .starttls(injected: nil)
            } else {
                let spec = try value.fields(allowed: ["inject"])
                guard let inject = spec["inject"] else { throw value.error("starttls is 'true' or {inject: COMMAND}") }
                let text = try inject.string()
                try checkLine(text, inject)
                action = .starttls(injected: text)
            }
        default:
            action = .auth(try parseAuth(value))
        }
        if fields["replies"] != nil && name != "raw" {
            throw item.error("'replies' goes with a raw step only")
        }
        var repeatCount = Step.RepeatCount.times(1)
        if let value = fields["repeat"] {
            if try value.string() == "error_limit" {
                repeatCount = .errorLimit
            } else if try value.string() == "max_recipients" {
                repeatCount = .maxRecipients
            } else {
                repeatCount = .times(try value.int(in: 1...10_000))
            }
        }
        var expectation: StepExpectation?
        if let value = fields["expect"] { expectation = try parseExpectation(value) }
        var step = Step(action: action, expectation: expectation, repeatCount: repeatCount, line: item.line ?? 0)
        if let value = fields["pause_ms"] {
            guard case .raw(_, replies: 0) = action else { throw value.error("pause_ms goes with a raw step that has 'replies: 0'") }
            step.pauseMilliseconds = try value.int(in: 1...10_000)
        }
        if let value = fields["before_greeting"] {
            step.beforeGreeting = try value.bool()
            guard case .send = action else { throw value.error("before_greeting goes with a send step") }
        }
        return step
    }

    static func checkLine(_ text: String, _ value: YAMLValue) throws(InputFileError) {
        do {
            _ = try SMTPCommand(text)
        } catch {
            throw value.error(error.description)
        }
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            let name = String(rest[rest.index(after: open)..<close])
            if !placeholders.contains(name) {
                throw value.error(
                    "unknown placeholder {\(name)} (known: \(placeholders.sorted().map { "{\($0)}" }.joined(separator: ", ")))")
            }
            rest = rest[rest.index(after: close)...]
        }
    }

    /// `\r`, `\n`, `\t`, `\0`, `\\` and `\xNN` in a raw step.
    static func decodeEscapes(_ text: String, _ value: YAMLValue) throws(InputFileError) -> [UInt8] {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                continue
            }
            guard let next = bytes.popFirst() else { throw value.error("a raw step ends in a lone backslash") }
            switch next {
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "x"):
                let hex = bytes.prefix(2)
                guard hex.count == 2, let value = UInt8(String(decoding: hex, as: UTF8.self), radix: 16) else {
                    throw value.error("\\x needs two hex digits")
                }
                out.append(value)
                bytes = bytes.dropFirst(2)
            default:
                throw value.error("unknown escape \\\(Character(Unicode.Scalar(next))) (known: \\r \\n \\t \\0 \\\\ \\xNN)")
            }
        }
        guard !out.isEmpty else { throw value.error("a raw step sends at least one octet") }
        return out
    }

    static func parseAuth(_ value: YAMLValue) throws(InputFileError) -> AuthStep {
        let fields = try value.fields(allowed: ["mechanism", "initial", "password", "cancel"])
        guard let mechanismValue = fields["mechanism"] else { throw value.error("an auth step needs 'mechanism'") }
        let name = try mechanismValue.string().uppercased()
        guard let mechanism = AuthStep.Mechanism(rawValue: name) else {
            throw mechanismValue.error(
                "unknown mechanism '\(name)' (expected one of: \(AuthStep.Mechanism.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var password = AuthStep.Password.configured
        if let passwordValue = fields["password"] {
            let text = try passwordValue.string()
            guard let parsed = AuthStep.Password(rawValue: text) else {
                throw passwordValue.error("password is 'configured' or 'wrong' (secrets never go in scenario files)")
            }
            password = parsed
        }
        let initial = try fields["initial"]?.bool() ?? (mechanism == .plain || mechanism == .xoauth2)
        if initial && mechanism == .cramMD5, let value = fields["initial"] {
            throw value.error("CRAM-MD5 has no initial response (the server speaks first)")
        }
        return AuthStep(mechanism: mechanism, initialResponse: initial, password: password, cancel: try fields["cancel"]?.bool() ?? false)
    }

    static func parseExpectation(_ value: YAMLValue) throws(InputFileError) -> StepExpectation {
        if value.isScalar {
            switch try value.string() {
            case "accepted": return .accepted
            case "refused": return .refused
            case let text: throw value.error("'\(text)' is not an expectation (accepted, refused, or rule:/code:/class:)")
            }
        }
        let fields = try value.fields(allowed: ["rule", "code", "class"])
        guard fields.count == 1, let (key, item) = fields.first else { throw value.error("give one of rule, code, class") }
        switch key {
        case "rule":
            let rule = RuleID(rawValue: try item.string())
            guard RuleCatalogue.documented[rule] != nil else { throw item.error("unknown rule '\(rule)'") }
            return .rule(rule)
        case "code":
            return .code(ReplyCode(try item.int(in: 200...599)))
        default:
            return .replyClass(try item.int(in: 2...5))
        }
    }
}

/// Loads the scenario files under the given paths.
public enum ScenarioLoader {
    /// Every `.yaml`/`.yml` file under `paths` (folders searched recursively,
    /// `policies/` folders skipped), sorted by id. Duplicate ids are errors.
    public static func load(_ paths: [String]) throws(InputFileError) -> [Scenario] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw InputFileError(file: path, message: "no such file or folder")
            }
            if isDirectory.boolValue {
                let enumerator = FileManager.default.enumerator(atPath: path)
                while let relative = enumerator?.nextObject() as? String {
                    if relative.split(separator: "/").contains("policies") { continue }
                    if relative.hasSuffix(".yaml") || relative.hasSuffix(".yml") { files.append(path + "/" + relative) }
                }
            } else {
                files.append(path)
            }
        }
        var texts: [(file: String, text: String)] = []
        for file in files.sorted() {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw InputFileError(file: file, message: "cannot read the file")
            }
            guard let text = String(data: data, encoding: .utf8) else { throw InputFileError(file: file, message: "not UTF-8 text") }
            texts.append((file, text))
        }
        return try Self.parse(texts)
    }

    /// The built-in battery, with the cases of `paths` added: a case whose
    /// id is built in replaces that one (its id is in `replaced`).
    public static func loadBuiltIn(adding paths: [String] = []) throws(InputFileError) -> (
        scenarios: [Scenario], replaced: [String]
    ) {
        let added = paths.isEmpty ? [] : try Self.load(paths)
        let addedIDs = Set(added.map(\.id))
        let builtIn = try Self.parse(Self.builtIn)
        let replaced = builtIn.map(\.id).filter { addedIDs.contains($0) }
        return ((builtIn.filter { !addedIDs.contains($0.id) } + added).sorted { $0.id < $1.id }, replaced)
    }

    /// Scenario files already read: each file's name (for errors) and text.
    /// Files are parsed over the cores (the built-in battery is parsed at
    /// every start); what they hold, and the first error, come in file order.
    public static func parse(_ files: [(file: String, text: String)]) throws(InputFileError) -> [Scenario] {
        let parsed = Self.parseEach(files)
        var scenarios: [Scenario] = []
        var seen: [String: String] = [:]
        for ((file, _), result) in zip(files, parsed) {
            let scenario = try result.get()
            if let other = seen[scenario.id] {
                throw InputFileError(file: file, line: scenario.line, field: "id", message: "id '\(scenario.id)' is also used by \(other)")
            }
            seen[scenario.id] = file
            scenarios.append(contentsOf: scenario.variants)
        }
        return scenarios.sorted { $0.id < $1.id }
    }

    private static func parseEach(_ files: [(file: String, text: String)]) -> [Result<Scenario, InputFileError>] {
        let workers = min(files.count, max(1, ProcessInfo.processInfo.activeProcessorCount))
        let results = [Result<Scenario, InputFileError>?](unsafeUninitializedCapacity: files.count) { buffer, count in
            buffer.initialize(repeating: nil)
            count = files.count
            // Each worker writes only its own indices.
            nonisolated(unsafe) let slots = buffer
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for index in stride(from: worker, to: files.count, by: workers) {
                    slots[index] = Result { () throws(InputFileError) in try Scenario.parse(files[index].text, file: files[index].file) }
                }
            }
        }
        return results.compactMap { $0 }
    }
}
