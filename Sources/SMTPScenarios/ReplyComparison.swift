import Foundation
import SMTPProtocol

/// Compares a reply with the one a capture holds: code, enhanced code, and
/// text once queue ids, dates, host names and session ids are taken out.
public struct ReplyComparison: Sendable {
    private let patterns: [(NSRegularExpression, String)]

    /// `extra`: more regular expressions to take out (`--normalize`).
    public init(extra: [String]) throws {
        let builtIn: [(String, String)] = [
            (#"queued as [A-Za-z0-9]+"#, "queued as <id>"),
            (#"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), +\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}( [+-]\d{4})?( \([A-Z]+\))?"#, "<date>"),
            (#"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"#, "<date>"),
            (#"\[(\d{1,3}\.){3}\d{1,3}\]"#, "[<ip>]"),
            // Session ids and challenges: long tokens mixing letters and digits.
            (#"\b(?=[A-Za-z0-9+/=._-]*\d)(?=[A-Za-z0-9+/=._-]*[A-Za-z])[A-Za-z0-9+/=._-]{10,}\b"#, "<id>"),
        ]
        var patterns: [(NSRegularExpression, String)] = []
        for (pattern, replacement) in builtIn { patterns.append((try NSRegularExpression(pattern: pattern), replacement)) }
        for pattern in extra { patterns.append((try NSRegularExpression(pattern: pattern), "<pattern>")) }
        self.patterns = patterns
    }

    /// The fields in which `now` differs from `recorded`; empty when they are the same.
    public func changes(recorded: ServerResponse?, now: ServerResponse?, hosts: Set<String>) -> [ReplyField] {
        guard let old = recorded?.reply, let new = now?.reply else {
            return recorded == now || (recorded?.singleLine == now?.singleLine) ? [] : [.presence]
        }
        var fields: [ReplyField] = []
        if old.code != new.code { fields.append(.code) }
        if old.enhancedCode != new.enhancedCode { fields.append(.enhancedCode) }
        if self.normalize(old.text, hosts: hosts) != self.normalize(new.text, hosts: hosts) { fields.append(.text) }
        return fields
    }

    public func normalize(_ text: String, hosts: Set<String>) -> String {
        var out = text
        for host in hosts.sorted(by: { $0.count > $1.count }) where !host.isEmpty {
            out = out.replacingOccurrences(of: host, with: "<host>")
        }
        for (expression, replacement) in self.patterns {
            out = expression.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: replacement)
        }
        return out
    }
}
