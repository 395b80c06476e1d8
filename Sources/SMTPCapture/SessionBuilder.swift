import SMTPProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns the two in-order streams of one SMTP connection into a
/// ``Transcript``: replies paired with commands by the multi-line rule and
/// by order, whatever the segmentation and however much was pipelined.
///
/// Message bodies (DATA) and BDAT chunks are skipped but their sizes kept;
/// SASL responses are recorded redacted; after a 220 to STARTTLS the rest is
/// encrypted and only counted.
struct SessionBuilder {
    let client: Endpoint
    let server: Endpoint
    let start: Double
    private(set) var transcript: Transcript

    private enum Mode {
        case command
        case body(octets: Int)
        case bdat(remaining: Int)
        /// Inside AUTH with this mechanism: client lines are SASL responses.
        case sasl(String?)
        case encrypted
        /// The client's octets stopped being SMTP: counted, not read.
        case opaque
    }

    /// Where the client's octets stopped being SMTP: their first octets
    /// (enough for a ClientHello) and how many came in all.
    private var opaque: (start: [UInt8], octets: Int)?

    /// A client unit waiting for its reply.
    private struct Unit {
        var sent: ClientUnit
        var time: Double
        var segment: Int
        /// How much of the server's stream the client had read when it sent this (its segment's acknowledgement).
        var read: Int64?
        var notes: [Transcript.Note]

        var verb: SMTPCommand.Verb? { self.sent.command?.verb }
    }

    private var mode = Mode.command
    /// The client a PROXY header at the start of the stream named.
    private(set) var proxiedClient: String?
    private var headerChecked = false
    private var clientBuffer: [UInt8] = []
    private var clientRead = 0
    /// Where each client segment starts in `clientBuffer`, with its time.
    private var clientChunks: [(offset: Int, time: Double, segment: Int, read: Int64?)] = []
    private var segmentCount = 0
    private var partial: Unit?
    private var pendingUnit: Unit?
    private var clientGap: Int?
    private var serverGap: Int?

    private var framer = LineFramer(maximumLength: 8192, bareLFEndsLine: true)
    /// Client lines a bare LF ended.
    private var clientBareLineEnds = 0
    /// In a message body read with CRLF line ends: where the search for its
    /// end goes on (octets before it hold no line that is a lone dot). It is
    /// `clientRead` only where that is the start of a line: once read octets
    /// are let go, `clientRead` stays two octets behind it.
    private var bodySearch = 0
    private var parser = ReplyParser()
    /// Replies not yet paired, each with the server stream offset where it ends.
    private var replies: [(response: ServerResponse, time: Double, notes: [Transcript.Note], end: Int64)] = []
    /// Server octets delivered so far (gaps included).
    private var serverOctets: Int64 = 0
    /// Where the reply to the last answered unit (or the banner) ended.
    private var lastReplyEnd: Int64 = 0
    private var bannerSeen = false
    var encryptedOctets = (client: 0, server: 0)
    /// Each exchange's unit: its segment (-1: none) and whether it was sent
    /// before the reply to the unit before it had been read (`nil`: the
    /// capture cannot tell).
    private var unitOrder: [(segment: Int, ahead: Bool?)] = []

    init(client: Endpoint, server: Endpoint, start: Double) {
        self.client = client
        self.server = server
        self.start = start
        self.transcript = Transcript(client: client.description, server: server.description)
        self.transcript.startTime = start
    }

    var isEncrypted: Bool {
        if case .encrypted = self.mode { return true }
        return false
    }

    // MARK: - Input

    mutating func client(_ event: TCPStreamReassembler.Event, serverOctetsRead: Int64? = nil) {
        switch event {
        case .data(let bytes, let time, _):
            bytes.withUnsafeBytes { self.client($0, time: time, serverOctetsRead: serverOctetsRead) }
            return
        case .gap(let octets, _):
            if self.isEncrypted {
                self.encryptedOctets.client += octets
                return
            }
            switch self.mode {
            case .body(let count):
                self.mode = .body(octets: count + octets)
            case .bdat(let remaining) where octets <= remaining:
                self.mode = .bdat(remaining: remaining - octets)
            default:
                // The line in progress is unreliable: drop it, mark the next unit.
                self.clientRead = self.clientBuffer.count
                self.partial = nil
                self.clientGap = (self.clientGap ?? 0) + octets
            }
        }
        self.pump()
    }

    /// The client's next octets in order. They are borrowed (a capture's
    /// mapping, say): what must outlive the call is copied.
    mutating func client(_ bytes: UnsafeRawBufferPointer, time: Double, serverOctetsRead: Int64?) {
        if self.isEncrypted {
            self.encryptedOctets.client += bytes.count
            return
        }
        if case .opaque = self.mode {
            self.keepOpaque(bytes)
            return
        }
        self.segmentCount += 1
        if self.passesThroughBody(bytes, time: time, read: serverOctetsRead) { return }
        self.clientChunks.append((self.clientBuffer.count, time, self.segmentCount, serverOctetsRead))
        self.clientBuffer.append(contentsOf: bytes)
        if !self.headerChecked { self.stripProxyHeader() }
        self.pump()
    }

    mutating func server(_ event: TCPStreamReassembler.Event) {
        switch event {
        case .data(let bytes, let time, _):
            bytes.withUnsafeBytes { self.server($0, time: time) }
            return
        case .gap(let octets, _):
            if self.isEncrypted {
                self.encryptedOctets.server += octets
                return
            }
            self.framer.discardBuffered()
            self.parser = ReplyParser()
            self.serverGap = (self.serverGap ?? 0) + octets
            self.serverOctets += Int64(octets)
        }
        self.pump()
    }

    /// The server's next octets in order, borrowed as the client's are.
    mutating func server(_ bytes: UnsafeRawBufferPointer, time: Double) {
        if self.isEncrypted {
            self.encryptedOctets.server += bytes.count
            return
        }
        self.framer.append(bytes)
        self.serverOctets += Int64(bytes.count)
        while let line = self.framer.next() {
            if let response = self.parser.feed(line) {
                var notes: [Transcript.Note] = []
                if let gap = self.serverGap {
                    notes.append(.missingData(.server, octets: gap))
                    self.serverGap = nil
                }
                self.replies.append((response, time, notes, self.serverOctets - Int64(self.framer.unconsumedCount)))
            }
        }
        self.pump()
    }

    /// A load balancer's PROXY header comes before anything SMTP: read it,
    /// note whom it names, and take it out of the stream.
    private mutating func stripProxyHeader() {
        switch ProxyHeader.parse(self.clientBuffer[self.clientRead...]) {
        case .needMore:
            return
        case .invalid:
            self.headerChecked = true
        case .complete(let header):
            self.headerChecked = true
            self.clientRead += header.length
            self.proxiedClient = header.source
            self.transcript.notes.append(.proxyHeader(version: header.version, client: header.source, octets: header.length))
        }
    }

    // MARK: - Pairing

    private mutating func pump() {
        while !self.isEncrypted {
            if !self.bannerSeen {
                guard !self.replies.isEmpty else { return }
                let reply = self.replies.removeFirst()
                var exchange = Transcript.Exchange(role: .greeting, response: reply.response, repliedAt: reply.time - self.start)
                exchange.notes = reply.notes
                self.transcript.exchanges.append(exchange)
                self.bannerSeen = true
                self.lastReplyEnd = reply.end
                continue
            }
            if self.pendingUnit == nil { self.pendingUnit = self.nextUnit() }
            guard let unit = self.pendingUnit, !self.replies.isEmpty else { return }
            self.pendingUnit = nil
            let reply = self.replies.removeFirst()
            self.record(unit, reply.response, time: reply.time, notes: reply.notes, end: reply.end)
        }
    }

    private mutating func record(_ unit: Unit?, _ response: ServerResponse?, time: Double?, notes: [Transcript.Note], end: Int64? = nil) {
        var exchange = Transcript.Exchange(
            role: unit == nil ? .unsolicited : .answer, sent: unit?.sent, response: response,
            sentAt: unit.map { $0.time - self.start },
            repliedAt: time.map { $0 - self.start })
        exchange.notes = (unit?.notes ?? []) + notes
        // Sent ahead: its segment had not acknowledged the end of the reply
        // to the unit before it (TCP order, not the order of arrival).
        self.unitOrder.append((unit?.segment ?? -1, unit.flatMap { unit in unit.read.map { $0 < self.lastReplyEnd } }))
        if unit != nil, let end { self.lastReplyEnd = end }
        self.transcript.exchanges.append(exchange)
        guard let unit else { return }
        let code = response?.reply?.code
        switch (unit.verb, code) {
        case (.data, .some(.startMailInput)) where exchange.kind == .command:
            self.mode = .body(octets: 0)
        case (_, .some(.authContinue)) where unit.verb == .auth || exchange.kind == .saslResponse:
            break  // the exchange goes on: the client's next line is a SASL response
        case (_, nil) where self.inSASL:
            // A reply that cannot be read does not end the exchange: where unsure, the next line stays redacted.
            break
        case (.starttls, .some(.serviceReady)):
            self.mode = .encrypted
            self.encryptedOctets.client += self.clientBuffer.count - self.clientRead
            if self.clientBuffer.count > self.clientRead {
                self.transcript.notes.append(
                    .plaintextBehindSTARTTLS(
                        octets: self.clientBuffer.count - self.clientRead, preview: Array(self.clientBuffer[self.clientRead...].prefix(120))
                    ))
            }
            self.clientBuffer = []
            self.clientRead = 0
            self.replies.removeAll()
            self.transcript.tls = TLSRecord(mode: .starttls, at: (time ?? self.start) - self.start, version: nil, certificate: nil)
        default:
            if case .bdat = self.mode {} else { self.mode = .command }
        }
    }

    private var inSASL: Bool {
        if case .sasl = self.mode { return true }
        return false
    }

    /// From here on the client's octets are counted, not read.
    private mutating func becomeOpaque() {
        self.mode = .opaque
        let rest = self.clientBuffer[self.clientRead...]
        self.clientBuffer = []
        self.clientRead = 0
        self.clientChunks = []
        self.keepOpaque(rest)
    }

    private mutating func keepOpaque(_ bytes: some Collection<UInt8>) {
        var opaque = self.opaque ?? (start: [], octets: 0)
        // A ClientHello's names sit within its first record (at most 16 KB + 5).
        if opaque.start.count < 16_389 { opaque.start += bytes.prefix(16_389 - opaque.start.count) }
        opaque.octets += bytes.count
        self.opaque = opaque
    }

    /// A command line is text (RFC 5321 2.4, 4.1.1): a line whose octets are
    /// mostly control or 8-bit ones is something else.
    static func looksBinary(_ line: ArraySlice<UInt8>) -> Bool {
        guard line.count >= 8 else { return false }
        let odd = line.count { ($0 < 0x20 && $0 != 0x09) || $0 >= 0x7F }
        return odd * 4 > line.count
    }

    private func chunk(at offset: Int) -> (time: Double, segment: Int, read: Int64?) {
        var low = 0
        var high = self.clientChunks.count - 1
        var found: (time: Double, segment: Int, read: Int64?) = (self.start, 0, nil)
        while low <= high {
            let middle = (low + high) / 2
            if self.clientChunks[middle].offset <= offset {
                found = (self.clientChunks[middle].time, self.clientChunks[middle].segment, self.clientChunks[middle].read)
                low = middle + 1
            } else {
                high = middle - 1
            }
        }
        return found
    }

    /// The next complete client line (without CRLF), if the buffer holds one.
    /// The next client line. In commands a bare LF ends a line as well (the
    /// conversation is read as the server most likely read it; the session
    /// notes it once); in message text only CRLF does, unless the client
    /// already ended its commands with bare LFs.
    private mutating func nextLine(commands: Bool = true) -> (bytes: ArraySlice<UInt8>, start: Int, lineEnd: ClientUnit.LineEnd)? {
        let bareEnds = commands || self.clientBareLineEnds > 0
        let start = self.clientRead
        var search = start
        while let newline = self.newline(from: search) {
            let afterCR = newline > start && self.clientBuffer[newline - 1] == 0x0D
            if afterCR || bareEnds {
                self.clientRead = newline + 1
                if afterCR { return (self.clientBuffer[start..<(newline - 1)], start, .crlf) }
                self.clientBareLineEnds += 1
                return (self.clientBuffer[start..<newline], start, .lf)
            }
            search = newline + 1
        }
        return nil
    }

    /// The end of a message body whose lines end in CRLF: the offset after
    /// its `CRLF . CRLF`, with `octets` counting the body up to there. Only
    /// the dots are visited (memchr), not every line; without the end, the
    /// octets read are counted and let go, but for the two before the search
    /// point that a dot after them needs to be judged by.
    private mutating func bodyEnd(octets: inout Int) -> Int? {
        let count = self.clientBuffer.count
        var search = max(self.bodySearch, self.clientRead)
        let found: Int? = self.clientBuffer.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return nil }
            while search < count, let hit = memchr(base + search, 0x2E, count - search) {
                let dot = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                guard let ends = Self.dotEndsBody(at: dot, first: self.clientRead, count: count, { buffer[$0] }) else {
                    search = dot
                    return nil
                }
                if ends { return dot + 3 }
                search = dot + 1
            }
            search = max(search, count)
            return nil
        }
        if let found {
            octets += found - self.clientRead
            return found
        }
        self.bodySearch = search
        let kept = search - 2
        if kept > self.clientRead {
            octets += kept - self.clientRead
            self.clientRead = kept
        }
        return nil
    }

    /// Whether the dot at `index` ends a message body: a line of its own,
    /// `CRLF . CRLF` (RFC 5321 4.1.1.4); `nil` while the two octets after it
    /// are still to come. A dot at `first`, where the unread octets begin,
    /// begins a line (see `bodySearch`); `octet` reads the octets.
    private static func dotEndsBody(at index: Int, first: Int, count: Int, _ octet: (Int) -> UInt8) -> Bool? {
        guard index + 2 < count else { return nil }
        let startsLine = index >= first + 2 ? octet(index - 2) == 0x0D && octet(index - 1) == 0x0A : index == first
        return startsLine && octet(index + 1) == 0x0D && octet(index + 2) == 0x0A
    }

    /// A segment inside a message body that does not hold its end (most of
    /// a large message's segments) is counted where it lies and let go, not
    /// copied into the buffer first: the state after is what appending it
    /// and ``bodyEnd(octets:)`` leave, the two octets before the search
    /// point kept. Anything else (the end, a dot too near the segment's end
    /// to judge, lines ended by bare LFs) takes the buffer's way.
    private mutating func passesThroughBody(_ bytes: UnsafeRawBufferPointer, time: Double, read: Int64?) -> Bool {
        guard case .body(let octets) = self.mode, self.partial != nil, self.pendingUnit == nil, self.clientBareLineEnds == 0,
            self.headerChecked, bytes.count >= 8
        else { return false }
        let held = self.clientBuffer.count - self.clientRead
        guard held <= 4 else { return false }
        let total = held + bytes.count
        let from = max(self.bodySearch, self.clientRead) - self.clientRead
        let ends: Bool? = bytes.withMemoryRebound(to: UInt8.self) { segment in
            guard let base = segment.baseAddress else { return nil }
            // The octets held and the segment's, as one run from 0.
            func at(_ index: Int) -> UInt8 { index < held ? self.clientBuffer[self.clientRead + index] : segment[index - held] }
            func endsAt(_ index: Int) -> Bool? { Self.dotEndsBody(at: index, first: 0, count: total, at) }
            for index in from..<max(from, held) where at(index) == 0x2E {
                guard let ends = endsAt(index) else { return nil }
                if ends { return true }
            }
            var search = max(0, from - held)
            while search < bytes.count, let hit = memchr(base + search, 0x2E, bytes.count - search) {
                let dot = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                guard let ends = endsAt(held + dot) else { return nil }
                if ends { return true }
                search = dot + 1
            }
            return false
        }
        guard ends == false else { return false }
        self.mode = .body(octets: octets + total - 2)
        self.clientBuffer.removeAll(keepingCapacity: true)
        self.clientBuffer.append(contentsOf: bytes.suffix(2))
        self.clientRead = 0
        self.bodySearch = 2
        self.clientChunks.removeAll(keepingCapacity: true)
        self.clientChunks.append((0, time, self.segmentCount, read))
        return true
    }

    /// The end of a message body read line by line (any line end): the
    /// offset after its lone-dot line, with `octets` counting the lines read.
    private mutating func bodyEndByLines(octets: inout Int) -> Int? {
        while let (line, _, lineEnd) = self.nextLine(commands: false) {
            octets += line.count + lineEnd.octets
            if line.count == 1 && line.first == UInt8(ascii: ".") { return self.clientRead }
        }
        return nil
    }

    /// Where the next LF of the client's buffer is, from `start` on
    /// (memchr: a message body is scanned at memory speed).
    private func newline(from start: Int) -> Int? {
        guard start >= 0, start < self.clientBuffer.count else { return nil }
        return self.clientBuffer.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress, let hit = memchr(base + start, 0x0A, buffer.count - start) else { return nil }
            return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// Drops consumed client octets, so memory follows what is unread.
    private mutating func compact() {
        guard self.clientRead > 65_536 && self.clientRead * 2 > self.clientBuffer.count else { return }
        let dropped = self.clientRead
        let covering = self.clientChunks.last { $0.offset <= dropped }
        self.clientBuffer.removeFirst(dropped)
        self.clientRead = 0
        self.bodySearch = max(0, self.bodySearch - dropped)
        self.clientChunks = self.clientChunks.filter { $0.offset > dropped }.map { ($0.offset - dropped, $0.time, $0.segment, $0.read) }
        if let covering { self.clientChunks.insert((0, covering.time, covering.segment, covering.read), at: 0) }
    }

    /// Parses the next unit the current mode expects; `nil` until it is complete.
    private mutating func nextUnit() -> Unit? {
        defer { self.compact() }
        var notes: [Transcript.Note] = []
        if let gap = self.clientGap { notes.append(.missingData(.client, octets: gap)) }
        switch self.mode {
        case .encrypted:
            return nil
        case .body(var octets):
            if self.partial == nil {
                // The body's time and segment are those of its first octet, once it has come.
                guard self.clientRead < self.clientBuffer.count else { return nil }
                let (time, segment, read) = self.chunk(at: self.clientRead)
                self.partial = Unit(sent: .messageBody(octets: 0), time: time, segment: segment, read: read, notes: notes)
                self.bodySearch = self.clientRead
            }
            // CRLF bodies are searched by their dots; a client that ended
            // lines with bare LFs has its body read line by line.
            let end = self.clientBareLineEnds == 0 ? self.bodyEnd(octets: &octets) : self.bodyEndByLines(octets: &octets)
            guard let end, var unit = self.partial else {
                self.mode = .body(octets: octets)
                return nil
            }
            unit.sent = .messageBody(octets: octets)
            self.clientRead = end
            self.partial = nil
            self.clientGap = nil
            self.mode = .command
            return unit
        case .bdat(let remaining):
            let available = self.clientBuffer.count - self.clientRead
            let take = min(available, remaining)
            self.clientRead += take
            guard take == remaining, var unit = self.partial else {
                self.mode = .bdat(remaining: remaining - take)
                return nil
            }
            unit.sent.octets += take
            self.partial = nil
            self.mode = .command
            return unit
        case .opaque:
            return nil
        case .command, .sasl:
            // A TLS handshake record where the first command was due: TLS without STARTTLS.
            if self.transcript.exchanges.count <= 1, self.partial == nil, self.clientBuffer[self.clientRead...].starts(with: [0x16, 0x03]) {
                self.becomeOpaque()
                return nil
            }
            guard let (line, start, lineEnd) = self.nextLine() else {
                if self.clientBuffer.count - self.clientRead > 4096 {
                    notes.append(.unterminatedClientLine(octets: self.clientBuffer.count - self.clientRead))
                }
                return nil
            }
            if Self.looksBinary(line) {
                if lineEnd == .lf { self.clientBareLineEnds -= 1 }
                self.clientRead = start
                self.becomeOpaque()
                return nil
            }
            self.clientGap = nil
            let (time, segment, read) = self.chunk(at: start)
            let bytes = Array(line)
            let command = SMTPCommand(line: line)
            // Redaction follows the client: after AUTH, every line is a SASL
            // response until a reply that can be read ends the exchange, even
            // one that reads like a command (a user named QUIT is seen in the
            // wild); where the replies cannot be read, it stays redacted.
            if case .sasl(let mechanism) = self.mode {
                return Unit(
                    sent: .saslResponse(bytes, mechanism: mechanism, lineEnd: lineEnd, keep: true), time: time, segment: segment,
                    notes: notes)
            }
            if command.verb == .auth {
                let mechanism = command.argument.split(separator: " ").first.map { $0.uppercased() }
                self.mode = .sasl(mechanism)
                if command.argument.split(separator: " ").count > 1, let mechanism {
                    return Unit(
                        sent: .auth(mechanism: mechanism, bytes, lineEnd: lineEnd, keep: true), time: time, segment: segment, read: read,
                        notes: notes)
                }
                return Unit(
                    sent: .command(bytes, parsed: command, lineEnd: lineEnd), time: time, segment: segment, read: read, notes: notes)
            }
            // RFC 3030: only `BDAT size [LAST]` announces a chunk of `size` octets.
            if command.verb == .bdat, let size = Self.chunkSize(command) {
                self.partial = Unit(
                    sent: .bdat(bytes, parsed: command, chunk: 0, lineEnd: lineEnd), time: time, segment: segment, read: read, notes: notes)
                self.partial?.sent.payload = .bdatChunk(size: size)
                self.mode = .bdat(remaining: size)
                return self.nextUnit()
            }
            return Unit(sent: .command(bytes, parsed: command, lineEnd: lineEnd), time: time, segment: segment, read: read, notes: notes)
        }
    }

    // MARK: - End

    /// Closes the session: units with no reply, replies with no unit.
    mutating func finish(end: Transcript.End) -> Transcript {
        self.pump()
        // Commands the capture holds no reply to.
        while let unit = self.pendingUnit ?? self.nextUnitIfAny() {
            self.pendingUnit = nil
            self.record(unit, nil, time: nil, notes: [])
            if unit.verb == .quit { break }
        }
        for reply in self.replies { self.record(nil, reply.response, time: reply.time, notes: reply.notes, end: reply.end) }
        self.replies.removeAll()
        if case .body(let octets) = self.mode, octets > 0 { self.transcript.notes.append(.endedInsideMessage(octets: octets)) }
        if self.isEncrypted {
            self.transcript.notes.append(
                .encrypted(implicit: false, client: self.encryptedOctets.client, server: self.encryptedOctets.server))
        }
        if let opaque = self.opaque {
            self.transcript.notes.append(
                .clientNotSMTP(octets: opaque.octets, preview: Array(opaque.start.prefix(64)), hello: TLSClientHello(opaque.start)))
        } else if case .command = self.mode, self.clientBuffer.count > self.clientRead,
            !self.transcript.notes.contains(where: { if case .unterminatedClientLine = $0 { true } else { false } })
        {
            self.transcript.notes.append(.unterminatedClientLine(octets: self.clientBuffer.count - self.clientRead))
        }
        if self.clientBareLineEnds > 0 { self.transcript.notes.append(.bareLineEnds(.client, count: self.clientBareLineEnds)) }
        if self.framer.bareLineEnds > 0 { self.transcript.notes.append(.bareLineEnds(.server, count: self.framer.bareLineEnds)) }
        if self.framer.hasUnconsumedBytes && !self.isEncrypted {
            self.transcript.notes.append(.unterminatedServerOctets(self.framer.unconsumed.count))
        }
        // A unit sent before the reply to the one before it was read joins
        // that one's pipeline group. Where the capture has no acknowledgement
        // to tell by, units that began in one segment were pipelined.
        var previousSegment = -1
        var exchangeIndex = self.transcript.exchanges.count - self.unitOrder.count
        for (segment, ahead) in self.unitOrder {
            defer { exchangeIndex += 1 }
            guard segment > 0 else { continue }
            let pipelined = ahead ?? (segment == previousSegment)
            previousSegment = segment
            guard pipelined, exchangeIndex > 0 else { continue }
            let previous = exchangeIndex - 1
            let id = self.transcript.exchanges[previous].pipelineGroup ?? segment
            if self.transcript.exchanges[previous].sent != nil { self.transcript.exchanges[previous].pipelineGroup = id }
            self.transcript.exchanges[exchangeIndex].pipelineGroup = id
        }
        self.transcript.end = end
        return self.transcript
    }

    private mutating func nextUnitIfAny() -> Unit? {
        if self.isEncrypted { return nil }
        return self.nextUnit()
    }
}

extension SessionBuilder {
    /// The size a BDAT command announces (RFC 3030: `BDAT size [LAST]`,
    /// size of digits only); `nil` when its arguments do not parse, so that
    /// it announces nothing.
    static func chunkSize(_ command: SMTPCommand) -> Int? {
        let parts = command.argument.split(separator: " ", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let digits = parts.first, !digits.isEmpty, digits.count <= 18,
            digits.allSatisfy({ $0 >= "0" && $0 <= "9" }), let size = Int(digits)
        else { return nil }
        guard parts.count == 1 || parts[1].uppercased() == "LAST" else { return nil }
        return size
    }

    /// Octets of a session that is TLS from the start.
    mutating func countImplicit(_ octets: Int, fromClient: Bool) {
        if fromClient { self.encryptedOctets.client += octets } else { self.encryptedOctets.server += octets }
    }
}
