/// JSON written straight to text, octet for octet what `JSONEncoder` with
/// `[.sortedKeys, .withoutEscapingSlashes]` writes: the capture commands
/// write a record a session, and the encoder's boxing cost more than the
/// judging (JSONTextTests compares the two on every record kind).
///
/// An object's fields are given in sorted order (UTF-8 order, as the
/// encoder sorts); a `nil` field is left out, as the encoder's
/// `encodeIfPresent` leaves it.
///
/// Objects nest by writing into their parent's text, one buffer for the
/// whole record.
struct JSONObject {
    private(set) var text = ""
    private var empty = true
    #if DEBUG
        private var lastKey = ""
    #endif

    /// Appends an object to `out`, its fields written by `body`.
    static func write(into out: inout String, _ body: (inout JSONObject) -> Void) {
        var object = JSONObject()
        // The buffer is moved in and out, so that appends stay in place.
        swap(&object.text, &out)
        object.text += "{"
        body(&object)
        object.text += "}"
        swap(&object.text, &out)
    }

    /// A record on its own: a string holding one object.
    static func record(_ body: (inout JSONObject) -> Void) -> String {
        var out = ""
        out.reserveCapacity(1024)
        Self.write(into: &out, body)
        return out
    }

    /// A nested object, if there is one.
    mutating func add<Value>(_ key: String, object value: Value?, _ body: (Value, inout JSONObject) -> Void) {
        guard let value else { return }
        self.key(key)
        Self.write(into: &self.text) { body(value, &$0) }
    }

    /// An array of objects.
    mutating func add<Value>(_ key: String, objects values: [Value], _ body: (Value, inout JSONObject) -> Void) {
        self.key(key)
        self.text += "["
        for (index, value) in values.enumerated() {
            if index > 0 { self.text += "," }
            Self.write(into: &self.text) { body(value, &$0) }
        }
        self.text += "]"
    }

    private mutating func key(_ key: String) {
        #if DEBUG
            assert(self.empty || self.lastKey.utf8.lexicographicallyPrecedes(key.utf8), "JSON keys out of order: \(self.lastKey), \(key)")
            self.lastKey = key
        #endif
        if !self.empty { self.text += "," }
        self.empty = false
        self.text += "\""
        self.text += key
        self.text += "\":"
    }

    mutating func add(_ key: String, _ value: String?) {
        guard let value else { return }
        self.key(key)
        JSONText.string(value, into: &self.text)
    }

    mutating func add(_ key: String, _ value: Int?) {
        guard let value else { return }
        self.key(key)
        self.text += String(value)
    }

    mutating func add(_ key: String, _ value: Double?) {
        guard let value else { return }
        self.key(key)
        self.text += JSONText.number(value)
    }

    mutating func add(_ key: String, _ value: Bool?) {
        guard let value else { return }
        self.key(key)
        self.text += value ? "true" : "false"
    }

    mutating func add(_ key: String, _ values: [String]?) {
        guard let values else { return }
        self.key(key)
        JSONText.array(values, into: &self.text)
    }

    /// A value that is JSON text already (an object, an array).
    mutating func add(_ key: String, json: String?) {
        guard let json else { return }
        self.key(key)
        self.text += json
    }
}

enum JSONText {
    /// A string in quotes: `"` and `\` escaped, control characters as
    /// `\b \t \n \f \r` or `\u00xx`; everything else (a slash, DEL,
    /// non-ASCII) as it is.
    static func string(_ value: String, into out: inout String) {
        out += "\""
        // Indices stay on octets: a quote followed by a combining mark is
        // one Character, and slicing the String there would round down.
        let utf8 = value.utf8
        var plainFrom = utf8.startIndex
        var index = plainFrom
        while index != utf8.endIndex {
            let octet = utf8[index]
            if octet >= 0x20 && octet != 0x22 && octet != 0x5C {
                utf8.formIndex(after: &index)
                continue
            }
            out += String(decoding: utf8[plainFrom..<index], as: UTF8.self)
            switch octet {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x08: out += "\\b"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0C: out += "\\f"
            case 0x0D: out += "\\r"
            default: out += octet < 0x10 ? "\\u000\(String(octet, radix: 16))" : "\\u00\(String(octet, radix: 16))"
            }
            utf8.formIndex(after: &index)
            plainFrom = index
        }
        if plainFrom == utf8.startIndex {
            out += value
        } else {
            out += String(decoding: utf8[plainFrom..<index], as: UTF8.self)
        }
        out += "\""
    }

    static func array(_ values: [String], into out: inout String) {
        out += "["
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            Self.string(value, into: &out)
        }
        out += "]"
    }

    /// As the encoder writes a Double: its shortest form, a whole number
    /// without `.0` (infinities and NaN, which the encoder refuses, as 0).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let text = value.description
        return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }
}

// The records' fields, in the order the encoder sorts them.

extension JSONLinesReporter.CaseRecord {
    /// `nil` for a record that carries the whole case (only the encoder writes that).
    var json: String? {
        guard self.result == nil else { return nil }
        return JSONObject.record { object in
            object.add("duration", self.duration)
            object.add("failures", objects: self.failures) { $0.write(&$1) }
            object.add("file", self.file)
            object.add("id", self.id)
            object.add("identity", self.identity)
            object.add("reason", self.reason)
            object.add("refs", self.refs)
            object.add("suite", self.suite)
            object.add("tags", self.tags)
            object.add("title", self.title)
            object.add("transcript", object: self.transcript) { $0.write(&$1) }
            object.add("type", self.type)
            object.add("verdict", self.verdict)
        }
    }
}

extension JSONLinesReporter.FailureRecord {
    func write(_ object: inout JSONObject) {
        object.add("expected", self.expected)
        object.add("got", self.got)
        object.add("mismatch", self.mismatch)
        object.add("rule", self.rule)
        object.add("step", self.step)
    }
}

extension JSONLinesReporter.TranscriptRecord {
    func write(_ object: inout JSONObject) {
        object.add("client", self.client)
        object.add("end", self.end)
        object.add("exchanges", objects: self.exchanges) { $0.write(&$1) }
        object.add("notes", self.notes)
        object.add("server", self.server)
        object.add("startTime", self.startTime)
        object.add("tls", object: self.tls) { $0.write(&$1) }
    }
}

extension JSONLinesReporter.TLSRecordJSON {
    func write(_ object: inout JSONObject) {
        object.add("at", self.at)
        object.add("certificate", object: self.certificate) { $0.write(&$1) }
        object.add("droppedPlaintextOctets", self.droppedPlaintextOctets)
        object.add("mode", self.mode)
        object.add("version", self.version)
    }
}

extension JSONLinesReporter.CertificateJSON {
    func write(_ object: inout JSONObject) {
        object.add("issuer", self.issuer)
        object.add("notValidAfter", self.notValidAfter)
        object.add("notValidBefore", self.notValidBefore)
        object.add("sha256", self.sha256)
        object.add("subject", self.subject)
        object.add("subjectAlternativeNames", self.subjectAlternativeNames)
        object.add("verification", self.verification)
        object.add("verified", self.verified)
    }
}

extension JSONLinesReporter.ExchangeRecord {
    func write(_ object: inout JSONObject) {
        object.add("encrypted", self.encrypted)
        object.add("kind", self.kind)
        object.add("malformed", self.malformed)
        object.add("notes", self.notes)
        object.add("pipelineGroup", self.pipelineGroup)
        object.add("redacted", self.redacted)
        object.add("repliedAt", self.repliedAt)
        object.add("reply", object: self.reply) { $0.write(&$1) }
        object.add("sent", self.sent)
        object.add("sentAt", self.sentAt)
        object.add("sentOctets", self.sentOctets)
        object.add("step", self.step)
        object.add("verb", self.verb)
    }
}

extension JSONLinesReporter.ReplyRecord {
    func write(_ object: inout JSONObject) {
        object.add("code", self.code)
        object.add("enhanced", self.enhanced)
        object.add("findings", self.findings)
        object.add("lines", self.lines)
    }
}

extension JSONLinesReporter.Field {
    /// The field's value as JSON text.
    var json: String {
        switch self {
        case .text(let text):
            var out = ""
            JSONText.string(text, into: &out)
            return out
        case .number(let number): return String(number)
        case .flag(let flag): return flag ? "true" : "false"
        }
    }
}
