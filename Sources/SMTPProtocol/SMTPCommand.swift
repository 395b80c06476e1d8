/// One command line: a verb and the rest of the line.
///
/// Built from text for sending (``init(_:)``, which refuses CR, LF and NUL:
/// deliberate protocol violations go through a raw step instead), or read
/// from the wire (``init(line:)``, which never fails).
public struct SMTPCommand: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Verb: String, Sendable, Hashable, CaseIterable {
        case helo = "HELO", ehlo = "EHLO", mail = "MAIL", rcpt = "RCPT", data = "DATA", bdat = "BDAT"
        case rset = "RSET", noop = "NOOP", quit = "QUIT", vrfy = "VRFY", expn = "EXPN", help = "HELP"
        case auth = "AUTH", starttls = "STARTTLS", xclient = "XCLIENT"
    }

    /// The verb as sent.
    public var verbText: String
    /// Everything after the verb and the one space that follows it.
    public var argument: String

    /// The verb, when it is one this project knows.
    public var verb: Verb? { Verb(spelled: self.verbText) }

    public struct BuildError: Error, Sendable, Hashable, CustomStringConvertible {
        public var text: String
        public var description: String {
            "a command line cannot hold CR, LF or NUL (\(Printable.escape(self.text.utf8))); use a raw step to send such bytes"
        }
    }

    /// A command to send. `text` is the whole line without CRLF.
    public init(_ text: String) throws(BuildError) {
        guard !text.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }) else { throw BuildError(text: text) }
        self.init(parsing: text)
    }

    /// A command as received; the line's octets without CRLF.
    public init(line: some Collection<UInt8>) {
        self.init(parsing: String(decoding: line, as: UTF8.self))
    }

    private init(parsing text: String) {
        if let space = text.firstIndex(of: " ") {
            self.verbText = String(text[..<space])
            self.argument = String(text[text.index(after: space)...])
        } else {
            self.verbText = text
            self.argument = ""
        }
    }

    /// The line as sent, CRLF added.
    public var wireBytes: [UInt8] { Array(self.description.utf8) + [0x0D, 0x0A] }

    public var description: String { self.argument.isEmpty ? self.verbText : "\(self.verbText) \(self.argument)" }
}

/// The arguments of MAIL and RCPT (RFC 5321 4.1.1.2, 4.1.1.3).
public enum EnvelopeArgument {
    public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The `FROM:` or `TO:` keyword is missing.
        case missingKeyword(String)
        case badPath(MailPath.ParseError)
        case badParameter(String)

        public var description: String {
            switch self {
            case .missingKeyword(let keyword): "the argument does not start with \(keyword)"
            case .badPath(let error): error.description
            case .badParameter(let text): "'\(text)' is not an ESMTP parameter"
            }
        }
    }

    /// `FROM:<reverse-path> [parameters]`. `nil` path: the null sender `<>`.
    public static func parseMail(_ argument: String) -> Result<(path: MailPath?, parameters: [ESMTPParameter]), ParseError> {
        switch split(argument, keyword: "FROM:") {
        case .failure(let error): return .failure(error)
        case .success(let (pathText, parameters)):
            if pathText == "<>" { return .success((nil, parameters)) }
            return MailPath.parse(pathText).map { ($0, parameters) }.mapError { .badPath($0) }
        }
    }

    public enum ForwardPath: Sendable, Hashable, CustomStringConvertible {
        /// `<Postmaster>` with no domain, which every server must accept.
        case postmaster
        case path(MailPath)

        public var description: String {
            switch self {
            case .postmaster: "<Postmaster>"
            case .path(let path): path.description
            }
        }
    }

    /// `TO:<forward-path> [parameters]`.
    public static func parseRcpt(_ argument: String) -> Result<(path: ForwardPath, parameters: [ESMTPParameter]), ParseError> {
        switch split(argument, keyword: "TO:") {
        case .failure(let error): return .failure(error)
        case .success(let (pathText, parameters)):
            if pathText.lowercased() == "<postmaster>" { return .success((.postmaster, parameters)) }
            return MailPath.parse(pathText).map { (.path($0), parameters) }.mapError { .badPath($0) }
        }
    }

    /// Whether `argument` begins with the (upper-case ASCII) `keyword` in
    /// any case, as `argument.uppercased().hasPrefix(keyword)` says. Where
    /// the octets are ASCII up to and after it, that is an octet comparison
    /// and needs no upper-cased copy of the whole argument.
    static func hasKeyword(_ argument: String, _ keyword: String) -> Bool {
        let octets = argument.utf8
        let wanted = keyword.utf8
        var index = octets.startIndex
        for expected in wanted {
            guard index < octets.endIndex, octets[index] < 0x80 else { return argument.uppercased().hasPrefix(keyword) }
            let octet = octets[index]
            let upper = octet >= UInt8(ascii: "a") && octet <= UInt8(ascii: "z") ? octet - 0x20 : octet
            guard upper == expected else { return false }
            index = octets.index(after: index)
        }
        // An octet after it that is not ASCII may join the keyword's last
        // character (a combining mark): the character-wise answer then.
        guard index == octets.endIndex || octets[index] < 0x80 else { return argument.uppercased().hasPrefix(keyword) }
        return true
    }

    /// Splits `FROM: <path> A=B C` into the path and its parameters. One space
    /// after the colon is tolerated, as Postfix and most servers do.
    private static func split(_ argument: String, keyword: String) -> Result<(String, [ESMTPParameter]), ParseError> {
        guard Self.hasKeyword(argument, keyword) else { return .failure(.missingKeyword(keyword)) }
        var rest = Substring(argument.dropFirst(keyword.count))
        if rest.hasPrefix(" ") { rest = rest.dropFirst() }
        let pathText: Substring
        if rest.hasPrefix("<") {
            // A quoted local part may hold spaces and '>': find the closing bracket outside quotes.
            var inQuotes = false
            var escaped = false
            var end: Substring.Index?
            var index = rest.startIndex
            while index < rest.endIndex {
                let character = rest[index]
                if escaped {
                    escaped = false
                } else if character == "\\" && inQuotes {
                    escaped = true
                } else if character == "\"" {
                    inQuotes.toggle()
                } else if character == ">" && !inQuotes {
                    end = index
                    break
                }
                index = rest.index(after: index)
            }
            guard let end else { return .failure(.badPath(.missingAngleBrackets)) }
            pathText = rest[...end]
            rest = rest[rest.index(after: end)...]
        } else {
            let end = rest.firstIndex(of: " ") ?? rest.endIndex
            pathText = rest[..<end]
            rest = rest[end...]
        }
        var parameters: [ESMTPParameter] = []
        if !rest.isEmpty {
            guard rest.hasPrefix(" ") else { return .failure(.badParameter(String(rest))) }
            for token in rest.split(separator: " ") {
                let parts = token.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let keywordText = parts[0]
                guard let first = keywordText.utf8.first, DomainName.isLetDig(first),
                    keywordText.utf8.allSatisfy({ DomainName.isLetDig($0) || $0 == UInt8(ascii: "-") })
                else { return .failure(.badParameter(String(token))) }
                if parts.count == 2 {
                    guard !parts[1].isEmpty, parts[1].utf8.allSatisfy({ (33...60).contains($0) || (62...126).contains($0) })
                    else { return .failure(.badParameter(String(token))) }
                }
                parameters.append(ESMTPParameter(keyword: String(keywordText), value: parts.count == 2 ? String(parts[1]) : nil))
            }
        }
        return .success((String(pathText), parameters))
    }
}

extension SMTPCommand.Verb {
    /// The verb `text` names in any case, as `Verb(rawValue:
    /// text.uppercased())` says; where `text` is ASCII (every verb is) the
    /// octets are compared packed in a word, with no upper-cased copy
    /// (the judge asks a command's verb many times).
    init?(spelled text: String) {
        var packed: UInt64 = 0
        var count = 0
        for octet in text.utf8 {
            count += 1
            guard octet < 0x80, count <= 8 else {
                self.init(rawValue: text.uppercased())
                return
            }
            let upper = octet >= UInt8(ascii: "a") && octet <= UInt8(ascii: "z") ? octet - 0x20 : octet
            packed = packed << 8 | UInt64(upper)
        }
        guard let found = Self.packed.first(where: { $0.packed == packed && $0.count == count }) else { return nil }
        self = found.verb
    }

    private static let packed: [(packed: UInt64, count: Int, verb: Self)] = Self.allCases.map { verb in
        (verb.rawValue.utf8.reduce(0) { $0 << 8 | UInt64($1) }, verb.rawValue.utf8.count, verb)
    }
}
