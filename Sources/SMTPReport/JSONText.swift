/// JSON written straight to text, octet for octet what `JSONEncoder` with
/// `[.sortedKeys, .withoutEscapingSlashes]` writes: the capture commands
/// write a record a session, and the encoder's boxing cost more than the
/// judging (JSONTextTests compares the two on every record kind).
///
/// An object's fields are given in sorted order (UTF-8 order, as the
/// encoder sorts); a `nil` field is left out, as the encoder's
/// `encodeIfPresent` leaves it.
///
/// Objects nest by writing into their parent's octets, one buffer for the
/// whole record, made a String once at its end (appending to a String
/// checks its form on every append: that was half of a JSON record's cost).
struct JSONObject {
    private(set) var text: [UInt8] = []
    private var empty = true
    #if DEBUG
        private var lastKey = ""
    #endif

    /// Appends an object to `out`, its fields written by `body`.
    static func write(into out: inout [UInt8], _ body: (inout JSONObject) -> Void) {
        var object = JSONObject()
        // The buffer is moved in and out, so that appends stay in place.
        swap(&object.text, &out)
        object.text.append(UInt8(ascii: "{"))
        body(&object)
        object.text.append(UInt8(ascii: "}"))
        swap(&object.text, &out)
    }

    /// A record on its own: a string holding one object.
    static func record(_ body: (inout JSONObject) -> Void) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(2048)
        Self.write(into: &out, body)
        return String(decoding: out, as: UTF8.self)
    }

    /// A nested object, if there is one.
    mutating func add<Value>(_ key: StaticString, object value: Value?, _ body: (Value, inout JSONObject) -> Void) {
        guard let value else { return }
        self.key(key)
        Self.write(into: &self.text) { body(value, &$0) }
    }

    /// An array of objects.
    mutating func add<Value>(_ key: StaticString, objects values: [Value], _ body: (Value, inout JSONObject) -> Void) {
        self.key(key)
        self.text.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { self.text.append(UInt8(ascii: ",")) }
            Self.write(into: &self.text) { body(value, &$0) }
        }
        self.text.append(UInt8(ascii: "]"))
    }

    private mutating func key(_ key: StaticString) {
        key.withUTF8Buffer { self.key($0) }
    }

    private mutating func key(_ key: UnsafeBufferPointer<UInt8>) {
        #if DEBUG
            let name = String(decoding: key, as: UTF8.self)
            assert(self.empty || self.lastKey.utf8.lexicographicallyPrecedes(name.utf8), "JSON keys out of order: \(self.lastKey), \(name)")
            self.lastKey = name
        #endif
        if !self.empty { self.text.append(UInt8(ascii: ",")) }
        self.empty = false
        self.text.append(UInt8(ascii: "\""))
        self.text.append(contentsOf: key)
        self.text.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    /// A key known only at run time (a session's extra fields).
    private mutating func key(_ key: String) {
        var key = key
        key.withUTF8 { self.key($0) }
    }

    mutating func add(_ key: StaticString, _ value: String?) {
        guard let value else { return }
        self.key(key)
        JSONText.string(value, into: &self.text)
    }

    mutating func add(_ key: StaticString, _ value: Int?) {
        guard let value else { return }
        self.key(key)
        JSONText.integer(value, into: &self.text)
    }

    mutating func add(_ key: StaticString, _ value: Double?) {
        guard let value else { return }
        self.key(key)
        self.text.append(contentsOf: JSONText.number(value).utf8)
    }

    mutating func add(_ key: StaticString, _ value: Bool?) {
        guard let value else { return }
        self.key(key)
        self.text.append(contentsOf: (value ? "true" : "false").utf8)
    }

    mutating func add(_ key: StaticString, _ values: [String]?) {
        guard let values else { return }
        self.key(key)
        JSONText.array(values, into: &self.text)
    }

    /// A value that is JSON text already, under a key known at run time.
    mutating func add(runtimeKey key: String, json: [UInt8]) {
        self.key(key)
        self.text.append(contentsOf: json)
    }

    /// A nested object under a key known at run time.
    mutating func add<Value>(runtimeKey key: String, object value: Value, _ body: (Value, inout JSONObject) -> Void) {
        self.key(key)
        Self.write(into: &self.text) { body(value, &$0) }
    }
}

enum JSONText {
    /// A string in quotes: `"` and `\` escaped, control characters as
    /// `\b \t \n \f \r` or `\u00xx`; everything else (a slash, DEL,
    /// non-ASCII) as it is.
    static func string(_ value: String, into out: inout [UInt8]) {
        var value = value
        value.withUTF8 { Self.string($0, into: &out) }
    }

    /// The same, for the string's octets (valid UTF-8: they come from a String).
    static func string(_ octets: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var plainFrom = 0
        for index in octets.indices {
            let octet = octets[index]
            if octet >= 0x20 && octet != 0x22 && octet != 0x5C { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: octets[plainFrom..<index]))
            switch octet {
            case 0x22: out.append(contentsOf: #"\""#.utf8)
            case 0x5C: out.append(contentsOf: #"\\"#.utf8)
            case 0x08: out.append(contentsOf: #"\b"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0C: out.append(contentsOf: #"\f"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            default:
                out.append(contentsOf: (octet < 0x10 ? #"\u000"# : #"\u00"#).utf8)
                out.append(contentsOf: String(octet, radix: 16).utf8)
            }
            plainFrom = index + 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: octets[plainFrom...]))
        out.append(UInt8(ascii: "\""))
    }

    static func array(_ values: [String], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            Self.string(value, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// An integer's decimal digits, as `String(value)` writes them (a
    /// string that short is held inline: no allocation).
    static func integer(_ value: Int, into out: inout [UInt8]) {
        out.append(contentsOf: String(value).utf8)
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
    var json: [UInt8] {
        var out: [UInt8] = []
        switch self {
        case .text(let text): JSONText.string(text, into: &out)
        case .number(let number): JSONText.integer(number, into: &out)
        case .flag(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        }
        return out
    }
}
