/// A bad input file (scenario, policy): what is wrong, where. Exit code 65.
public struct InputFileError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The dotted path of the field, `steps[2].send`.
    public var field: String?
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, field: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    public var description: String {
        var location = self.file
        if let line = self.line {
            location += ":\(line)"
            if let column = self.column { location += ":\(column)" }
        }
        let field = self.field.map { "\($0): " } ?? ""
        return "\(location): \(field)\(self.message)"
    }
}
