import SMTPProtocol

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
        case sasl
        case encrypted
    }

    /// A client unit waiting for its reply.
    private struct Unit {
        var sent: Transcript.Sent
        var verb: SMTPCommand.Verb?
        var time: Double
        var segment: Int
        var notes: [String]
    }

    private var mode = Mode.command
    /// The client a PROXY header at the start of the stream named.
    private(set) var proxiedClient: String?
    private var headerChecked = false
    private var clientBuffer: [UInt8] = []
    private var clientRead = 0
    /// Where each client segment starts in `clientBuffer`, with its time.
    private var clientChunks: [(offset: Int, time: Double, segment: Int)] = []
    private var segmentCount = 0
    private var partial: Unit?
    private var pendingUnit: Unit?
    private var clientGap: Int?
    private var serverGap: Int?

    private var framer = LineFramer(maximumLength: 8192)
    private var parser = ReplyParser()
    private var replies: [(response: ServerResponse, time: Double, notes: [String])] = []
    private var bannerSeen = false
    var encryptedOctets = (client: 0, server: 0)
    private var unitSegments: [Int] = []

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

    mutating func client(_ event: TCPStreamReassembler.Event) {
        switch event {
        case .data(let bytes, let time):
            if self.isEncrypted {
                self.encryptedOctets.client += bytes.count
                return
            }
            self.segmentCount += 1
            self.clientChunks.append((self.clientBuffer.count, time, self.segmentCount))
            self.clientBuffer += bytes
            if !self.headerChecked { self.stripProxyHeader() }
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

    mutating func server(_ event: TCPStreamReassembler.Event) {
        switch event {
        case .data(let bytes, let time):
            if self.isEncrypted {
                self.encryptedOctets.server += bytes.count
                return
            }
            self.framer.append(bytes)
            while let line = self.framer.next() {
                if let response = self.parser.feed(line) {
                    var notes: [String] = []
                    if let gap = self.serverGap {
                        notes.append("\(gap) octets of server data \(Transcript.Exchange.missingDataNote) before this reply")
                        self.serverGap = nil
                    }
                    self.replies.append((response, time, notes))
                }
            }
        case .gap(let octets, _):
            if self.isEncrypted {
                self.encryptedOctets.server += octets
                return
            }
            self.framer.discardBuffered()
            self.parser = ReplyParser()
            self.serverGap = (self.serverGap ?? 0) + octets
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
            self.transcript.notes.append(
                "a PROXY v\(header.version) header named the client \(header.source ?? "(none: the connection speaks for itself)")")
        }
    }

    // MARK: - Pairing

    private mutating func pump() {
        while !self.isEncrypted {
            if !self.bannerSeen {
                guard !self.replies.isEmpty else { return }
                let reply = self.replies.removeFirst()
                var exchange = Transcript.Exchange(kind: .banner, response: reply.response, repliedAt: reply.time - self.start)
                exchange.notes = reply.notes
                self.transcript.exchanges.append(exchange)
                self.bannerSeen = true
                continue
            }
            if self.pendingUnit == nil { self.pendingUnit = self.nextUnit() }
            guard let unit = self.pendingUnit, !self.replies.isEmpty else { return }
            self.pendingUnit = nil
            let reply = self.replies.removeFirst()
            self.record(unit, reply.response, time: reply.time, notes: reply.notes)
        }
    }

    private mutating func record(_ unit: Unit?, _ response: ServerResponse?, time: Double?, notes: [String]) {
        var exchange = Transcript.Exchange(
            kind: unit.map { self.kind(of: $0) } ?? .unsolicited, sent: unit?.sent, response: response,
            sentAt: unit.map { $0.time - self.start },
            repliedAt: time.map { $0 - self.start })
        exchange.notes = (unit?.notes ?? []) + notes
        if let unit { self.unitSegments.append(unit.segment) } else { self.unitSegments.append(-1) }
        self.transcript.exchanges.append(exchange)
        guard let unit else { return }
        let code = response?.reply?.code
        switch (unit.verb, code) {
        case (.data, .some(.startMailInput)) where exchange.kind == .command:
            self.mode = .body(octets: 0)
        case (_, .some(.authContinue)) where unit.verb == .auth || exchange.kind == .saslResponse:
            self.mode = .sasl
        case (.starttls, .some(.serviceReady)):
            self.mode = .encrypted
            self.encryptedOctets.client += self.clientBuffer.count - self.clientRead
            if self.clientBuffer.count > self.clientRead {
                self.transcript.notes.append(
                    "the client sent \(self.clientBuffer.count - self.clientRead) octets of plaintext behind STARTTLS: "
                        + Printable.escape(self.clientBuffer[self.clientRead...].prefix(120)))
            }
            self.clientBuffer = []
            self.clientRead = 0
            self.replies.removeAll()
            self.transcript.tls = TLSRecord(mode: .starttls, at: (time ?? self.start) - self.start, version: nil, certificate: nil)
        default:
            if case .bdat = self.mode {} else { self.mode = .command }
        }
    }

    private func kind(of unit: Unit) -> Transcript.Exchange.Kind {
        if unit.sent.text.hasPrefix("<message body") { return .body }
        if unit.sent.redacted && unit.verb == nil { return .saslResponse }
        return .command
    }

    private func chunk(at offset: Int) -> (time: Double, segment: Int) {
        var low = 0
        var high = self.clientChunks.count - 1
        var found = (time: self.start, segment: 0)
        while low <= high {
            let middle = (low + high) / 2
            if self.clientChunks[middle].offset <= offset {
                found = (self.clientChunks[middle].time, self.clientChunks[middle].segment)
                low = middle + 1
            } else {
                high = middle - 1
            }
        }
        return found
    }

    /// The next complete client line (without CRLF), if the buffer holds one.
    private mutating func nextLine() -> (bytes: ArraySlice<UInt8>, start: Int)? {
        var index = self.clientRead
        while index + 1 < self.clientBuffer.count {
            if self.clientBuffer[index] == 0x0D && self.clientBuffer[index + 1] == 0x0A {
                let start = self.clientRead
                self.clientRead = index + 2
                return (self.clientBuffer[start..<index], start)
            }
            index += 1
        }
        return nil
    }

    /// Drops consumed client octets, so memory follows what is unread.
    private mutating func compact() {
        guard self.clientRead > 65_536 && self.clientRead * 2 > self.clientBuffer.count else { return }
        let dropped = self.clientRead
        let covering = self.clientChunks.last { $0.offset <= dropped }
        self.clientBuffer.removeFirst(dropped)
        self.clientRead = 0
        self.clientChunks = self.clientChunks.filter { $0.offset > dropped }.map { ($0.offset - dropped, $0.time, $0.segment) }
        if let covering { self.clientChunks.insert((0, covering.time, covering.segment), at: 0) }
    }

    /// Parses the next unit the current mode expects; `nil` until it is complete.
    private mutating func nextUnit() -> Unit? {
        defer { self.compact() }
        var notes: [String] = []
        if let gap = self.clientGap {
            notes.append("\(gap) octets of client data \(Transcript.Exchange.missingDataNote) before this")
        }
        switch self.mode {
        case .encrypted:
            return nil
        case .body(var octets):
            if self.partial == nil {
                let (time, segment) = self.chunk(at: self.clientRead)
                self.partial = Unit(sent: Transcript.Sent(bytes: []), verb: nil, time: time, segment: segment, notes: notes)
            }
            while let (line, _) = self.nextLine() {
                octets += line.count + 2
                if line.elementsEqual([UInt8(ascii: ".")]) {
                    guard var unit = self.partial else { return nil }
                    unit.sent = Transcript.Sent(bytes: [])
                    unit.sent.text = "<message body, \(octets) octets>"
                    unit.sent.octets = octets
                    self.partial = nil
                    self.clientGap = nil
                    self.mode = .command
                    return unit
                }
            }
            self.mode = .body(octets: octets)
            return nil
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
        case .command, .sasl:
            guard let (line, start) = self.nextLine() else {
                if self.clientBuffer.count - self.clientRead > 4096 {
                    notes.append("a client line longer than 4096 octets with no CRLF")
                }
                return nil
            }
            self.clientGap = nil
            let (time, segment) = self.chunk(at: start)
            let bytes = Array(line) + [0x0D, 0x0A]
            if case .sasl = self.mode {
                var sent = line.elementsEqual([UInt8(ascii: "*")]) ? Transcript.Sent(bytes: bytes) : Transcript.Sent(redacting: bytes)
                if sent.redacted { sent.withheld = bytes }
                return Unit(sent: sent, verb: nil, time: time, segment: segment, notes: notes)
            }
            let command = SMTPCommand(line: line)
            var sent = Transcript.Sent(bytes: bytes)
            if command.verb == .auth, command.argument.split(separator: " ").count > 1 {
                let mechanism = command.argument.split(separator: " ")[0]
                sent = Transcript.Sent(redacting: bytes, visiblePrefix: "\(command.verbText) \(mechanism) ")
                sent.withheld = bytes
            }
            var unit = Unit(sent: sent, verb: command.verb, time: time, segment: segment, notes: notes)
            if command.verb == .bdat {
                let size = command.argument.split(separator: " ").first.flatMap { Int($0) } ?? 0
                unit.sent.text += " <chunk of \(size) octets>"
                self.partial = unit
                self.mode = .bdat(remaining: size)
                return self.nextUnit()
            }
            return unit
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
        for reply in self.replies { self.record(nil, reply.response, time: reply.time, notes: reply.notes) }
        self.replies.removeAll()
        if case .body(let octets) = self.mode, octets > 0 {
            self.transcript.notes.append("the session ended inside a message body after \(octets) octets")
        }
        if self.isEncrypted {
            self.transcript.notes.append(
                "encrypted after STARTTLS: \(self.encryptedOctets.client) client and \(self.encryptedOctets.server) server octets not readable"
            )
        }
        if self.framer.hasUnconsumedBytes && !self.isEncrypted {
            self.transcript.notes.append("the server's last \(self.framer.unconsumed.count) octets had no CRLF")
        }
        // Units that began in the same segment were pipelined.
        var counts: [Int: Int] = [:]
        for segment in self.unitSegments where segment > 0 { counts[segment, default: 0] += 1 }
        var exchangeIndex = self.transcript.exchanges.count - self.unitSegments.count
        for segment in self.unitSegments {
            if segment > 0, (counts[segment] ?? 0) > 1 { self.transcript.exchanges[exchangeIndex].pipelineGroup = segment }
            exchangeIndex += 1
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
    /// Octets of a session that is TLS from the start.
    mutating func countImplicit(_ octets: Int, fromClient: Bool) {
        if fromClient { self.encryptedOctets.client += octets } else { self.encryptedOctets.server += octets }
    }
}
