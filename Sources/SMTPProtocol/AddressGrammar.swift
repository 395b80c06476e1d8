/// The domain, address-literal and mailbox grammar of RFC 5321 4.1.2 and 4.1.3.
public enum DomainName {
    /// RFC 5321 `Domain`: `sub-domain *("." sub-domain)`, each sub-domain a
    /// letter or digit, then letters, digits and hyphens, ending in a letter or
    /// digit; labels of at most 63 octets and the whole at most 255 (4.5.3.1.2).
    public static func isValid(_ name: some StringProtocol) -> Bool {
        let octets = name.utf8
        guard !octets.isEmpty, octets.count <= 255 else { return false }
        // One pass over the octets, label by label (every name a session
        // gives is checked: an array and its split were two allocations).
        var labelLength = 0
        var previous: UInt8 = 0
        for octet in octets {
            if octet == UInt8(ascii: ".") {
                guard labelLength > 0, isLetDig(previous) else { return false }
                labelLength = 0
            } else {
                guard isLetDig(octet) || (labelLength > 0 && octet == UInt8(ascii: "-")) else { return false }
                labelLength += 1
                guard labelLength <= 63 else { return false }
            }
            previous = octet
        }
        return labelLength > 0 && isLetDig(previous)
    }

    static func isLetDig(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

/// An address literal, `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[tag:content]`.
public enum AddressLiteral: Sendable, Hashable, CustomStringConvertible {
    case ipv4([UInt8])
    case ipv6([UInt16])
    case general(tag: String, content: String)

    public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        case missingBrackets
        case malformedIPv4(String)
        case malformedIPv6(String)
        case malformedGeneral(String)

        public var description: String {
            switch self {
            case .missingBrackets: "an address literal is enclosed in [ ]"
            case .malformedIPv4(let text): "'\(text)' is not an IPv4 address"
            case .malformedIPv6(let text): "'\(text)' is not an IPv6 address"
            case .malformedGeneral(let text): "'\(text)' is not a general address literal"
            }
        }
    }

    /// Parses a literal with its brackets.
    public static func parse(_ text: some StringProtocol) -> Result<AddressLiteral, ParseError> {
        guard text.hasPrefix("["), text.hasSuffix("]"), text.count >= 2 else { return .failure(.missingBrackets) }
        let inner = String(text.dropFirst().dropLast())
        if let colon = inner.firstIndex(of: ":") {
            let tag = inner[..<colon]
            let content = String(inner[inner.index(after: colon)...])
            if tag.lowercased() == "ipv6" {
                guard let groups = IPAddressText.ipv6(content, rfc5321: true) else { return .failure(.malformedIPv6(content)) }
                return .success(.ipv6(groups))
            }
            let contentOK = !content.isEmpty && content.utf8.allSatisfy { (33...90).contains($0) || (94...126).contains($0) }
            let tagOK =
                !tag.isEmpty && tag.utf8.allSatisfy { DomainName.isLetDig($0) || $0 == UInt8(ascii: "-") }
                && tag.utf8.last.map(DomainName.isLetDig) == true
            guard tagOK, contentOK else { return .failure(.malformedGeneral(inner)) }
            return .success(.general(tag: String(tag), content: content))
        }
        guard let octets = IPAddressText.ipv4(inner) else { return .failure(.malformedIPv4(inner)) }
        return .success(.ipv4(octets))
    }

    public var description: String {
        switch self {
        case .ipv4(let octets): "[" + octets.map(String.init).joined(separator: ".") + "]"
        case .ipv6(let groups): "[IPv6:" + groups.map { String($0, radix: 16) }.joined(separator: ":") + "]"
        case .general(let tag, let content): "[\(tag):\(content)]"
        }
    }
}

/// Textual IP addresses, parsed exactly (no leading zeros beyond three digits, no shorthand).
public enum IPAddressText {
    /// Dotted quad: four decimal octets of one to three digits, each at most 255.
    public static func ipv4(_ text: some StringProtocol) -> [UInt8]? {
        // One pass over the octets: every server session checks its client
        // against the policy's networks, and splitting into substrings was
        // a noticeable part of a short session's cost.
        var octets: [UInt8] = []
        octets.reserveCapacity(4)
        var value = 0
        var digits = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets.count < 3 else { return nil }
                octets.append(UInt8(value))
                value = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                digits += 1
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                guard digits <= 3, value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets.count == 3 else { return nil }
        octets.append(UInt8(value))
        return octets
    }

    /// Eight 16-bit groups. With `rfc5321`, "::" must stand for at least two
    /// groups, as RFC 5321 4.1.3's IPv6-comp grammar says.
    public static func ipv6(_ text: some StringProtocol, rfc5321: Bool = false) -> [UInt16]? {
        let text = String(text)
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, allowIPv4Tail, piece.contains("."), let v4 = ipv4(piece) {
                    result.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    result.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy(\.isHexDigit), let value = UInt16(piece, radix: 16) else {
                    return nil
                }
                result.append(value)
            }
            return result
        }
        if halves.count == 1 {
            guard let all = groups(text, allowIPv4Tail: true), all.count == 8 else { return nil }
            return all
        }
        guard let left = groups(halves[0], allowIPv4Tail: false), let right = groups(halves[1], allowIPv4Tail: true) else {
            return nil
        }
        let present = left.count + right.count
        guard present <= (rfc5321 ? 6 : 7) else { return nil }
        return left + Array(repeating: 0, count: 8 - present) + right
    }
}

/// The part of a mailbox after `@`.
public enum MailDomain: Sendable, Hashable, CustomStringConvertible {
    case name(String)
    case literal(AddressLiteral)

    public var description: String {
        switch self {
        case .name(let name): name
        case .literal(let literal): literal.description
        }
    }
}

/// `Local-part "@" ( Domain / address-literal )`.
public struct Mailbox: Sendable, Hashable, CustomStringConvertible {
    /// The local part as written, quotes and escapes included.
    public var localPart: String
    public var domain: MailDomain

    public init(localPart: String, domain: MailDomain) {
        self.localPart = localPart
        self.domain = domain
    }

    /// The local part with quoting undone: `"a@b"` is `a@b`.
    public var localPartValue: String {
        guard self.localPart.hasPrefix("\""), self.localPart.count >= 2 else { return self.localPart }
        var out = ""
        var escaped = false
        for character in self.localPart.dropFirst().dropLast() {
            if escaped {
                out.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                out.append(character)
            }
        }
        return out
    }

    public var description: String { "\(self.localPart)@\(self.domain)" }

    /// RFC 5321 `atext` (RFC 5322 3.2.3).
    static func isAtext(_ byte: UInt8) -> Bool {
        DomainName.isLetDig(byte) || "!#$%&'*+-/=?^_`{|}~".utf8.contains(byte)
    }

    public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        case missingAt
        case badLocalPart
        case localPartTooLong
        case badDomain(String)
        case badAddressLiteral(AddressLiteral.ParseError)

        public var description: String {
            switch self {
            case .missingAt: "no '@' between local part and domain"
            case .badLocalPart: "the local part is neither a dot-string nor a quoted string"
            case .localPartTooLong: "the local part is over 64 octets"
            case .badDomain(let domain): "'\(domain)' is not a domain name"
            case .badAddressLiteral(let error): error.description
            }
        }
    }

    public static func parse(_ text: some StringProtocol) -> Result<Mailbox, ParseError> {
        let bytes = Array(text.utf8)
        var index = 0
        if bytes.first == UInt8(ascii: "\"") {
            index = 1
            var closed = false
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\") {
                    guard index + 1 < bytes.count, (32...126).contains(bytes[index + 1]) else { return .failure(.badLocalPart) }
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") {
                    closed = true
                    index += 1
                    break
                }
                guard byte == 32 || byte == 33 || (35...91).contains(byte) || (93...126).contains(byte) else {
                    return .failure(.badLocalPart)
                }
                index += 1
            }
            guard closed else { return .failure(.badLocalPart) }
        } else {
            while index < bytes.count, bytes[index] != UInt8(ascii: "@") { index += 1 }
            let local = bytes[..<index]
            let atoms = local.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard !local.isEmpty, atoms.allSatisfy({ !$0.isEmpty && $0.allSatisfy(isAtext) }) else {
                return index == bytes.count && !local.isEmpty ? .failure(.missingAt) : .failure(.badLocalPart)
            }
        }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "@") else { return .failure(.missingAt) }
        guard index <= 64 else { return .failure(.localPartTooLong) }
        let localPart = String(decoding: bytes[..<index], as: UTF8.self)
        let domainText = String(decoding: bytes[(index + 1)...], as: UTF8.self)
        if domainText.hasPrefix("[") {
            switch AddressLiteral.parse(domainText) {
            case .success(let literal): return .success(Mailbox(localPart: localPart, domain: .literal(literal)))
            case .failure(let error): return .failure(.badAddressLiteral(error))
            }
        }
        guard DomainName.isValid(domainText) else { return .failure(.badDomain(domainText)) }
        return .success(Mailbox(localPart: localPart, domain: .name(domainText)))
    }
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
public struct MailPath: Sendable, Hashable, CustomStringConvertible {
    /// Source-route domains (`@relay1,@relay2:`), which RFC 5321 says to ignore.
    public var sourceRoute: [String]
    public var mailbox: Mailbox

    public var description: String {
        let route = self.sourceRoute.isEmpty ? "" : self.sourceRoute.map { "@" + $0 }.joined(separator: ",") + ":"
        return "<\(route)\(self.mailbox)>"
    }

    public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        case missingAngleBrackets
        case badSourceRoute
        case badMailbox(Mailbox.ParseError)

        public var description: String {
            switch self {
            case .missingAngleBrackets: "the address is not enclosed in < >"
            case .badSourceRoute: "the source route is not '@domain,...:'"
            case .badMailbox(let error): error.description
            }
        }
    }

    /// Parses a path including its angle brackets.
    public static func parse(_ text: some StringProtocol) -> Result<MailPath, ParseError> {
        guard text.hasPrefix("<"), text.hasSuffix(">"), text.count >= 2 else { return .failure(.missingAngleBrackets) }
        var inner = Substring(text.dropFirst().dropLast())
        var route: [String] = []
        if inner.hasPrefix("@") {
            guard let colon = inner.firstIndex(of: ":") else { return .failure(.badSourceRoute) }
            for hop in inner[..<colon].split(separator: ",", omittingEmptySubsequences: false) {
                guard hop.hasPrefix("@"), DomainName.isValid(hop.dropFirst()) else { return .failure(.badSourceRoute) }
                route.append(String(hop.dropFirst()))
            }
            inner = inner[inner.index(after: colon)...]
        }
        switch Mailbox.parse(inner) {
        case .success(let mailbox): return .success(MailPath(sourceRoute: route, mailbox: mailbox))
        case .failure(let error): return .failure(.badMailbox(error))
        }
    }
}

/// An ESMTP parameter after the path: `SIZE=1000`, `BODY=8BITMIME`.
public struct ESMTPParameter: Sendable, Hashable, CustomStringConvertible {
    public var keyword: String
    public var value: String?

    public init(keyword: String, value: String?) {
        self.keyword = keyword
        self.value = value
    }

    public var description: String { self.value.map { "\(self.keyword)=\($0)" } ?? self.keyword }
}
