/// A three-digit SMTP reply code (RFC 5321 section 4.2).
///
/// Any three digits are representable, so that a server's wrong code can be
/// recorded as it was sent; ``isWellFormed`` says whether it is one RFC 5321
/// allows (first digit 2 to 5, second digit 0 to 5).
public struct ReplyCode: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public let value: Int

    /// - Precondition: `value` is in 0...999. Codes from the wire go through
    ///   ``init(digits:)``, which cannot fail this way.
    public init(_ value: Int) {
        precondition((0...999).contains(value), "a reply code has three digits")
        self.value = value
    }

    /// Three ASCII digits, or `nil`.
    public init?(digits: some Collection<UInt8>) {
        guard digits.count == 3 else { return nil }
        var value = 0
        for byte in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        self.value = value
    }

    /// The reply class: the first digit.
    public var replyClass: ReplyClass? { ReplyClass(rawValue: self.value / 100) }

    public var isWellFormed: Bool {
        (2...5).contains(self.value / 100) && (0...5).contains((self.value / 10) % 10)
    }

    /// 2xx or 3xx: the command was accepted (or the server waits for more).
    public var isPositive: Bool { self.value / 100 == 2 || self.value / 100 == 3 }

    public var description: String {
        let digits = String(self.value)
        return String(repeating: "0", count: 3 - digits.count) + digits
    }

    public static func < (lhs: ReplyCode, rhs: ReplyCode) -> Bool { lhs.value < rhs.value }

    public static let systemStatus = ReplyCode(211)
    public static let serviceReady = ReplyCode(220)
    public static let closing = ReplyCode(221)
    public static let authenticationSucceeded = ReplyCode(235)
    public static let ok = ReplyCode(250)
    public static let cannotVerify = ReplyCode(252)
    public static let authContinue = ReplyCode(334)
    public static let startMailInput = ReplyCode(354)
    public static let serviceNotAvailable = ReplyCode(421)
    public static let syntaxError = ReplyCode(500)
    public static let parameterSyntaxError = ReplyCode(501)
    public static let notImplemented = ReplyCode(502)
    public static let badSequence = ReplyCode(503)
    public static let parameterNotImplemented = ReplyCode(504)
    public static let authenticationFailed = ReplyCode(535)
    public static let mailboxUnavailable = ReplyCode(550)
    public static let exceededStorage = ReplyCode(552)
    public static let transactionFailed = ReplyCode(554)
}

/// The first digit of a reply code. Matching a code against a class uses `~=`:
/// `case .permanentNegative:` matches 550 and 554 alike.
public enum ReplyClass: Int, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case positiveCompletion = 2
    case positiveIntermediate = 3
    case transientNegative = 4
    case permanentNegative = 5

    public var description: String { "\(self.rawValue)xx" }

    public static func ~= (pattern: ReplyClass, code: ReplyCode) -> Bool {
        code.replyClass == pattern
    }
}

/// An enhanced mail system status code, `class.subject.detail` (RFC 3463).
public struct EnhancedStatusCode: Sendable, Hashable, Codable, CustomStringConvertible {
    public let codeClass: Int
    public let subject: Int
    public let detail: Int

    public init(_ codeClass: Int, _ subject: Int, _ detail: Int) {
        self.codeClass = codeClass
        self.subject = subject
        self.detail = detail
    }

    /// Parses `2.1.0`: class 2, 4 or 5; subject and detail of one to three digits.
    public init?(_ text: some StringProtocol) {
        // One pass over the octets (every reply read is tried): three runs
        // of digits between two dots, the first run one digit long.
        var codeClass: Int?
        var subject: Int?
        var value = 0
        var digits = 0
        for octet in text.utf8 {
            switch octet {
            case UInt8(ascii: "."):
                guard digits > 0, subject == nil else { return nil }
                if codeClass == nil { codeClass = value } else { subject = value }
                value = 0
                digits = 0
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                digits += 1
                guard digits <= (codeClass == nil ? 1 : 3) else { return nil }
                value = value * 10 + Int(octet - UInt8(ascii: "0"))
            default:
                return nil
            }
        }
        guard let codeClass, let subject, digits > 0, codeClass == 2 || codeClass == 4 || codeClass == 5 else { return nil }
        self.init(codeClass, subject, value)
    }

    public var description: String { "\(self.codeClass).\(self.subject).\(self.detail)" }
}
