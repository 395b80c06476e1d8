import SMTPProtocol

/// One SMTP session found in a capture.
public struct CapturedSession: Sendable {
    /// 1-based, in the order the sessions began.
    public var number: Int
    public var client: Endpoint
    public var server: Endpoint
    public var transcript: Transcript
    /// What went wrong below SMTP: conflicting retransmissions, a missing handshake.
    public var findings: [Transcript.Note]
    /// The session was TLS from the first byte (port 465): nothing readable.
    public var implicitTLS: Bool
    /// The client a PROXY header named, if the session began with one.
    public var proxiedClient: String? = nil
}

/// What a capture held.
public struct CaptureSummary: Sendable {
    public var file: String
    public var packets = 0
    public var tcpSegments = 0
    /// The sessions, unless the reader was told not to keep them.
    public var sessions: [CapturedSession] = []
    public var sessionCount = 0
    /// TCP connections that were not SMTP.
    public var otherFlows = 0
    /// Remarks on the file: a truncated end, packets that could not be decoded.
    public var notes: [String] = []
}

/// Options for reading captures.
public struct CaptureOptions: Sendable {
    /// Ports taken as SMTP servers besides 25, 465, 587 and 2525.
    public var extraPorts: Set<UInt16> = []
    /// A BPF filter applied while reading.
    public var filter: String?
    /// Capture-time seconds after which a silent connection is closed.
    public var flowTimeout: Double = 600
    /// Keep every session in the summary; off, sessions only go to the
    /// callback and memory follows the open connections alone.
    public var keepSessions = true

    public init(extraPorts: Set<UInt16> = [], filter: String? = nil, flowTimeout: Double = 600, keepSessions: Bool = true) {
        self.extraPorts = extraPorts
        self.filter = filter
        self.flowTimeout = flowTimeout
        self.keepSessions = keepSessions
    }

    public var serverPorts: Set<UInt16> { Set<UInt16>([25, 465, 587, 2525]).union(self.extraPorts) }
}

/// Reads a capture once, front to back, and hands each SMTP session out as
/// soon as it ends. Memory follows the number of open connections.
public struct CaptureReader {
    /// How far a read has got, for a progress line.
    public struct Progress: Sendable {
        /// Octets of the file read so far (record headers included).
        public var octets: Int
        public var packets: Int
        public var sessions: Int
    }

    public static func read(
        _ path: String, options: CaptureOptions = CaptureOptions(), session: (CapturedSession) -> Void = { _ in },
        progress: ((Progress) -> Void)? = nil
    )
        throws(CaptureError)
        -> CaptureSummary
    {
        let file = try PcapFileReader(path: path, filter: options.filter)
        return try Self.read(file, name: path, options: options, session: session, progress: progress)
    }

    /// Reads packets from any source (a file, a live interface, octets in
    /// memory) to its end: sessions are reassembled, built and handed to
    /// `session` as each ends.
    public static func read(
        _ file: some PacketSource, name path: String, options: CaptureOptions = CaptureOptions(),
        session: (CapturedSession) -> Void = { _ in }, progress: ((Progress) -> Void)? = nil
    )
        throws(CaptureError)
        -> CaptureSummary
    {
        guard PacketDecoder.supportedLinkTypes[file.linkType] != nil else {
            throw CaptureError(file: path, message: "link-layer type \(file.linkType) is not supported (\(Self.supported))")
        }
        var table = FlowTable(options: options)
        var summary = CaptureSummary(file: path)
        var decoder = PacketDecoder()
        var malformed = 0
        var cut = 0
        var lastTime = 0.0
        var collected: [CapturedSession] = []
        var count = 0
        let emit: (CapturedSession) -> Void = { found in
            count += 1
            if options.keepSessions { collected.append(found) }
            session(found)
        }
        var octets = 24
        do {
            while let packet = try file.next() {
                summary.packets += 1
                octets += 16 + packet.data.count
                if let progress, summary.packets % 4096 == 0 {
                    progress(Progress(octets: octets, packets: summary.packets, sessions: count))
                }
                lastTime = packet.timestamp
                if packet.originalLength > packet.data.count { cut += 1 }
                switch decoder.decode(packet) {
                case .segment(let segment):
                    summary.tcpSegments += 1
                    table.receive(segment, emit: emit)
                case .malformed:
                    malformed += 1
                case .fragmentHeld, .notTCP:
                    break
                }
                if summary.packets % 1024 == 0 { table.expire(now: packet.timestamp, emit: emit) }
            }
        } catch {
            summary.notes.append("the capture ends early after \(summary.packets) packets: \(error.message)")
        }
        table.closeAll(now: lastTime, emit: emit)
        if let dropped = file.dropped, dropped > 0 {
            summary.notes.append("\(dropped) packets were dropped before they could be read: sessions may show gaps")
        }
        if malformed > 0 { summary.notes.append("\(malformed) packets could not be decoded") }
        if cut > 0 {
            summary.notes.append("\(cut) packets were cut by the snap length (\(file.snapLength) octets): their missing octets are gaps")
        }
        summary.sessions = collected.sorted { $0.number < $1.number }
        summary.sessionCount = count
        summary.otherFlows = table.otherFlows
        return summary
    }

    static var supported: String {
        PacketDecoder.supportedLinkTypes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
}

/// The TCP connections of a capture, each with its two streams.
struct FlowTable {
    struct Key: Hashable {
        var low: Endpoint
        var high: Endpoint

        init(_ a: Endpoint, _ b: Endpoint) {
            if a < b {
                self.low = a
                self.high = b
            } else {
                self.low = b
                self.high = a
            }
        }
    }

    final class Flow {
        var client: Endpoint?
        var server: Endpoint?
        var clientStream = TCPStreamReassembler()
        var serverStream = TCPStreamReassembler()
        var builder: SessionBuilder?
        var number: Int
        var firstSeen: Double
        var lastSeen: Double
        var isSMTP: Bool?
        var implicitTLS = false
        /// Which side sent a RST, if one did.
        var reset: Transcript.Note.Side?
        /// Segments held until it is known which side is the server.
        var held: [TCPSegment] = []
        /// The server's first octets, and the stream events held until they
        /// show whether this is SMTP.
        var probe: [UInt8] = []
        var undecided: [(event: TCPStreamReassembler.Event, fromClient: Bool)] = []

        init(number: Int, time: Double) {
            self.number = number
            self.firstSeen = time
            self.lastSeen = time
        }
    }

    let options: CaptureOptions
    var flows: [Key: Flow] = [:]
    var started = 0
    var otherFlows = 0

    init(options: CaptureOptions) {
        self.options = options
    }

    mutating func receive(_ segment: TCPSegment, emit: (CapturedSession) -> Void) {
        let key = Key(segment.source, segment.destination)
        if let flow = self.flows[key], segment.flags.contains(.syn) && !segment.flags.contains(.ack),
            flow.clientStream.sawSYN && (flow.clientStream.offset > 0 || flow.reset != nil || flow.clientStream.isFinished)
        {
            // The same four-tuple again: a new connection.
            self.close(key, now: segment.timestamp, end: .closedByClient(at: segment.timestamp - flow.firstSeen), emit: emit)
        }
        let flow: Flow
        if let existing = self.flows[key] {
            flow = existing
        } else {
            // A bare ACK, FIN or RST after a connection closed starts nothing.
            guard segment.flags.contains(.syn) || !segment.payload.isEmpty else { return }
            self.started += 1
            flow = Flow(number: self.started, time: segment.timestamp)
            self.flows[key] = flow
        }
        flow.lastSeen = segment.timestamp
        if flow.client == nil { self.decideDirection(flow, segment) }
        guard let client = flow.client else {
            if flow.held.count < 64 { flow.held.append(segment) }
            if !segment.payload.isEmpty { self.decideByPayload(flow, segment) }
            if flow.client != nil {
                let held = flow.held
                flow.held = []
                for segment in held { self.deliver(segment, to: flow, client: client(flow)) }
            }
            self.finishIfDone(key, flow, now: segment.timestamp, emit: emit)
            return
        }
        self.deliver(segment, to: flow, client: client)
        self.finishIfDone(key, flow, now: segment.timestamp, emit: emit)
    }

    private func client(_ flow: Flow) -> Endpoint { flow.client ?? Endpoint(address: [], port: 0) }

    private func decideDirection(_ flow: Flow, _ segment: TCPSegment) {
        if segment.flags.contains(.syn) {
            let fromClient = !segment.flags.contains(.ack)
            flow.client = fromClient ? segment.source : segment.destination
            flow.server = fromClient ? segment.destination : segment.source
            return
        }
        let ports = self.options.serverPorts
        if ports.contains(segment.destination.port) && !ports.contains(segment.source.port) {
            flow.client = segment.source
            flow.server = segment.destination
        } else if ports.contains(segment.source.port) && !ports.contains(segment.destination.port) {
            flow.client = segment.destination
            flow.server = segment.source
        }
    }

    /// Without a SYN or a known port: the side that greets with a reply code is the server.
    private func decideByPayload(_ flow: Flow, _ segment: TCPSegment) {
        let bytes = segment.payload
        let greets = bytes.count >= 4 && bytes.prefix(3).allSatisfy { (0x30...0x39).contains($0) } && (bytes[3] == 0x20 || bytes[3] == 0x2D)
        flow.client = greets ? segment.destination : segment.source
        flow.server = greets ? segment.source : segment.destination
    }

    private func deliver(_ segment: TCPSegment, to flow: Flow, client: Endpoint) {
        let fromClient = segment.source == client
        if segment.flags.contains(.rst) && flow.reset == nil { flow.reset = fromClient ? .client : .server }
        let events: [TCPStreamReassembler.Event]
        if fromClient {
            events = flow.clientStream.receive(
                sequence: segment.sequence, flags: segment.flags, payload: segment.payload, payloadLength: segment.payloadLength,
                timestamp: segment.timestamp, acknowledgement: segment.acknowledgement)
        } else {
            events = flow.serverStream.receive(
                sequence: segment.sequence, flags: segment.flags, payload: segment.payload, payloadLength: segment.payloadLength,
                timestamp: segment.timestamp)
        }
        for event in events { self.feed(event, fromClient: fromClient, flow: flow) }
    }

    private func feed(_ event: TCPStreamReassembler.Event, fromClient: Bool, flow: Flow, final: Bool = false) {
        if flow.isSMTP == nil {
            flow.undecided.append((event, fromClient))
            if !fromClient, case .data(let bytes, _, _) = event { flow.probe += bytes }
            // The server's first octets say what this is: a reply code, or a TLS record.
            if flow.probe.count >= 4 || (final && !flow.probe.isEmpty) {
                if flow.probe.prefix(3).count == 3 && flow.probe.prefix(3).allSatisfy({ (0x30...0x39).contains($0) }) {
                    flow.isSMTP = true
                } else if flow.probe.first == 0x16 && self.options.serverPorts.contains(flow.server?.port ?? 0) {
                    flow.isSMTP = true
                    flow.implicitTLS = true
                } else {
                    flow.isSMTP = false
                }
            } else if final && self.options.serverPorts.contains(flow.server?.port ?? 0)
                && flow.undecided.contains(where: { $0.fromClient })
            {
                // A server that never speaks on an SMTP port is still an SMTP session to report.
                flow.isSMTP = true
            }
            guard flow.isSMTP == true else { return }
            let held = flow.undecided
            flow.undecided = []
            for (event, fromClient) in held { self.process(event, fromClient: fromClient, flow: flow) }
            return
        }
        guard flow.isSMTP == true else { return }
        self.process(event, fromClient: fromClient, flow: flow)
    }

    private func process(_ event: TCPStreamReassembler.Event, fromClient: Bool, flow: Flow) {
        guard let client = flow.client, let server = flow.server else { return }
        if flow.builder == nil { flow.builder = SessionBuilder(client: client, server: server, start: flow.firstSeen) }
        if flow.implicitTLS {
            if case .data(let bytes, _, _) = event { flow.builder?.countImplicit(bytes.count, fromClient: fromClient) }
            return
        }
        if fromClient {
            // How much of the server's stream the client had read when it sent these octets.
            var read: Int64?
            if case .data(_, _, let acknowledgement?) = event { read = flow.serverStream.streamOffset(of: acknowledgement) }
            flow.builder?.client(event, serverOctetsRead: read)
        } else {
            flow.builder?.server(event)
        }
    }

    private mutating func finishIfDone(_ key: Key, _ flow: Flow, now: Double, emit: (CapturedSession) -> Void) {
        let bothClosed = flow.clientStream.isFinished && flow.serverStream.isFinished
        guard bothClosed || flow.reset != nil else { return }
        let end: Transcript.End
        if let side = flow.reset {
            end = .reset(by: side, at: now - flow.firstSeen)
        } else if let serverFin = flow.serverStream.finOffset, flow.clientStream.finOffset != nil, serverFin > 0 {
            end = .closedByServer(at: now - flow.firstSeen)
        } else {
            end = .closedByClient(at: now - flow.firstSeen)
        }
        self.close(key, now: now, end: end, emit: emit)
    }

    mutating func close(_ key: Key, now: Double, end: Transcript.End, emit: (CapturedSession) -> Void) {
        guard let flow = self.flows.removeValue(forKey: key) else { return }
        for event in flow.clientStream.flush(timestamp: now) { self.feed(event, fromClient: true, flow: flow) }
        for event in flow.serverStream.flush(timestamp: now) { self.feed(event, fromClient: false, flow: flow) }
        if flow.isSMTP == nil, let last = flow.undecided.popLast() {
            self.feed(last.event, fromClient: last.fromClient, flow: flow, final: true)
        }
        guard flow.isSMTP == true, var builder = flow.builder, let client = flow.client, let server = flow.server else {
            if flow.isSMTP == false { self.otherFlows += 1 }
            return
        }
        var transcript = builder.finish(end: end)
        var findings = flow.clientStream.findings.map { $0.note(.client) } + flow.serverStream.findings.map { $0.note(.server) }
        if !flow.clientStream.sawSYN { findings.append(.noHandshake) }
        if flow.implicitTLS {
            transcript.tls = TLSRecord(mode: .implicit, at: 0, version: nil, certificate: nil)
            transcript.notes.append(
                .encrypted(implicit: true, client: builder.encryptedOctets.client, server: builder.encryptedOctets.server))
        }
        transcript.notes += findings
        emit(
            CapturedSession(
                number: flow.number, client: client, server: server, transcript: transcript, findings: findings,
                implicitTLS: flow.implicitTLS, proxiedClient: builder.proxiedClient))
    }

    /// Closes connections silent for longer than the timeout.
    mutating func expire(now: Double, emit: (CapturedSession) -> Void) {
        for (key, flow) in self.flows where now - flow.lastSeen > self.options.flowTimeout {
            self.close(
                key, now: now,
                end: .failed(.captureSilent(seconds: Int(self.options.flowTimeout)), at: now - flow.firstSeen), emit: emit)
        }
    }

    mutating func closeAll(now: Double, emit: (CapturedSession) -> Void) {
        for key in self.flows.keys.sorted(by: { (self.flows[$0]?.number ?? 0) < (self.flows[$1]?.number ?? 0) }) {
            let start = self.flows[key]?.firstSeen ?? now
            self.close(key, now: now, end: .failed(.captureEnded, at: now - start), emit: emit)
        }
    }
}
