import Yams

/// A YAML node that remembers its file, line and field path, so that every
/// error about it can say where it is. Used for policy and scenario files.
public struct YAMLValue {
    public let node: Node
    public let file: String
    public let path: String

    /// Parses `text`; a syntax error becomes an ``InputFileError`` with its line.
    public static func parse(_ text: String, file: String) throws(InputFileError) -> YAMLValue {
        do {
            // Scalars are read as text and typed by the field that holds
            // them, so no tag is resolved (the default resolver's regular
            // expressions ran on every key the duplicate check hashed), and
            // the encoding is named (the default looks it up in the
            // environment on every parse).
            guard let node = try Yams.compose(yaml: text, .basic, .default, .utf8) else {
                throw InputFileError(file: file, line: 1, message: "the file is empty")
            }
            return YAMLValue(node: node, file: file, path: "")
        } catch let error as InputFileError {
            throw error
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
                throw InputFileError(file: file, line: mark.line, column: mark.column, message: "YAML: \(problem)")
            case .duplicatedKeysInMapping(let duplicates, let context):
                throw InputFileError(
                    file: file, line: context.mark.line, message: "YAML: duplicated key \(duplicates.joined(separator: ", "))")
            default:
                throw InputFileError(file: file, message: "YAML: \(error)")
            }
        } catch {
            throw InputFileError(file: file, message: "YAML: \(error)")
        }
    }

    public var line: Int? { self.node.mark?.line }

    public func error(_ message: String) -> InputFileError {
        InputFileError(
            file: self.file, line: self.line, column: self.node.mark?.column, field: self.path.isEmpty ? nil : self.path, message: message)
    }

    private func child(_ node: Node, _ component: String) -> YAMLValue {
        YAMLValue(
            node: node, file: self.file,
            path: self.path.isEmpty ? component : component.hasPrefix("[") ? self.path + component : "\(self.path).\(component)")
    }

    /// The entries of a mapping, in file order, keys as strings.
    public func mapping() throws(InputFileError) -> [(key: String, value: YAMLValue)] {
        try self.entries().map { ($0.key, $0.value) }
    }

    private func entries() throws(InputFileError) -> [(key: String, keyNode: YAMLValue, value: YAMLValue)] {
        guard case .mapping(let mapping) = self.node else { throw self.error("expected a mapping of key: value") }
        var out: [(key: String, keyNode: YAMLValue, value: YAMLValue)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else { throw self.error("a key must be a plain string") }
            out.append((scalar.string, self.child(key, scalar.string), self.child(value, scalar.string)))
        }
        return out
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are errors
    /// (a typo should not be silently ignored).
    public func fields(allowed: Set<String>) throws(InputFileError) -> [String: YAMLValue] {
        var out: [String: YAMLValue] = [:]
        for (key, keyNode, value) in try self.entries() {
            guard allowed.contains(key) else {
                throw keyNode.error("unknown field '\(key)' (expected one of: \(allowed.sorted().joined(separator: ", ")))")
            }
            out[key] = value
        }
        return out
    }

    public func sequence() throws(InputFileError) -> [YAMLValue] {
        guard case .sequence(let sequence) = self.node else { throw self.error("expected a list") }
        return sequence.enumerated().map { self.child($0.element, "[\($0.offset)]") }
    }

    public var isScalar: Bool {
        if case .scalar = self.node { return true }
        return false
    }

    public func string() throws(InputFileError) -> String {
        guard case .scalar(let scalar) = self.node else { throw self.error("expected a single value") }
        return scalar.string
    }

    public func int(in range: ClosedRange<Int>? = nil) throws(InputFileError) -> Int {
        let text = try self.string()
        guard let value = Int(text) else { throw self.error("'\(text)' is not a whole number") }
        if let range, !range.contains(value) { throw self.error("\(value) is outside \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    public func bool() throws(InputFileError) -> Bool {
        switch try self.string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let text: throw self.error("'\(text)' is not true or false")
        }
    }

    /// A list of strings; a single string is a list of one.
    /// One of an enumeration's raw values; an error lists them all. `what`
    /// names the field in the message ("profile", "TLS use").
    public func choice<Choice: RawRepresentable & CaseIterable>(_ what: String, as: Choice.Type = Choice.self) throws(InputFileError)
        -> Choice where Choice.RawValue == String
    {
        let text = try self.string()
        guard let parsed = Choice(rawValue: text) else {
            throw self.error("unknown \(what) '\(text)' (expected one of: \(Choice.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return parsed
    }

    public func strings() throws(InputFileError) -> [String] {
        if self.isScalar { return [try self.string()] }
        var out: [String] = []
        for item in try self.sequence() { out.append(try item.string()) }
        return out
    }
}
