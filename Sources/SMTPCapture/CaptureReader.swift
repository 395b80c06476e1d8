import Foundation
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

    /// Reads a capture file, its sessions handed to `session` as each ends.
    public static func read(
        _ path: String, options: CaptureOptions = CaptureOptions(), workers: Int = CaptureReader.defaultWorkers,
        session: (CapturedSession) -> Void = { _ in }, progress: ((Progress) -> Void)? = nil
    )
        throws(CaptureError)
        -> CaptureSummary
    {
        var collected: [CapturedSession] = []
        var summary = try Self.read(
            path, options: options, workers: workers, prepare: { $0 },
            each: { found in
                if options.keepSessions { collected.append(found) }
                session(found)
            }, progress: progress)
        summary.sessions = collected.sorted { $0.number < $1.number }
        return summary
    }

    /// Flow workers a file read uses: one per core, at most eight.
    public static var defaultWorkers: Int { min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 8) }

    /// Reads a capture file over `workers` threads: each session is
    /// prepared (`prepare`: judged, formatted) on a pool of threads, and
    /// handed to `each` on the calling thread, in the order a one-thread
    /// read gives: as the sessions end, numbered as they began. Standard
    /// input (`-`) and one worker read on the calling thread alone, each
    /// session handed out as soon as it ends.
    public static func read<Prepared: Sendable>(
        _ path: String, options: CaptureOptions = CaptureOptions(), workers: Int = CaptureReader.defaultWorkers,
        prepare: @escaping @Sendable (CapturedSession) -> Prepared, each: (Prepared) -> Void, progress: ((Progress) -> Void)? = nil
    )
        throws(CaptureError)
        -> CaptureSummary
    {
        let file = try PcapFileReader(path: path, filter: options.filter)
        var serial = options
        serial.keepSessions = false
        guard workers > 1, path != "-" else {
            return try Self.read(file, name: path, options: serial, session: { each(prepare($0)) }, progress: progress)
        }
        try Self.checkLinkType(file, name: path)
        var summary = CaptureSummary(file: path)
        let counts = ParallelRead(workers: workers, options: serial).run(
            file, summary: &summary, prepare: prepare, each: each, progress: progress)
        summary.notes += counts.notes(file)
        return summary
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
        try Self.checkLinkType(file, name: path)
        var table = FlowTable(options: options)
        var summary = CaptureSummary(file: path)
        var counts = ReadCounts()
        var sequencer = SessionSequencer()
        var collected: [CapturedSession] = []
        func emit(_ event: FlowEvent) {
            guard let found = sequencer.take(event) else { return }
            if options.keepSessions { collected.append(found) }
            session(found)
        }
        counts.readAll(
            file, into: &summary, progress: progress, sessions: { sequencer.sessions },
            segment: { packet, segment, _ in
                table.packetIndex = packet
                table.receive(segment, emit: emit)
            },
            expire: { packet, now in
                table.packetIndex = packet
                table.expire(now: now, emit: emit)
            })
        table.closeAll(now: counts.lastTime, emit: emit)
        summary.notes += counts.notes(file)
        summary.sessions = collected.sorted { $0.number < $1.number }
        summary.sessionCount = sequencer.sessions
        summary.otherFlows = sequencer.otherFlows
        return summary
    }

    /// A source whose link layer the decoder does not read is an error for the whole file.
    static func checkLinkType(_ file: some PacketSource, name: String) throws(CaptureError) {
        guard PacketDecoder.supportedLinkTypes[file.linkType] == nil else { return }
        let supported = PacketDecoder.supportedLinkTypes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        throw CaptureError(file: name, message: "link-layer type \(file.linkType) is not supported (\(supported.joined(separator: ", ")))")
    }
}

/// The TCP connections of a capture, each with its two streams.
struct FlowTable {
    struct Key: Hashable {
        var low: Endpoint
        var high: Endpoint

        /// Which of `count` flow workers takes the connection: the same for
        /// both directions, and cheaper than the dictionary's SipHash.
        func worker(of count: Int) -> Int {
            let mixed = (self.low.mixed &+ self.high.mixed &* 31) &* 0x9E37_79B9_7F4A_7C15
            return Int((mixed >> 33) % UInt64(count))
        }

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
        /// The packet that began it (1-based): its place among the flows.
        let created: Int
        var client: Endpoint?
        var server: Endpoint?
        var clientStream = TCPStreamReassembler()
        var serverStream = TCPStreamReassembler()
        var builder: SessionBuilder?
        var firstSeen: Double
        var lastSeen: Double
        var isSMTP: Bool?
        var implicitTLS = false
        /// Which side sent a RST, if one did.
        var reset: Transcript.Note.Side?
        /// What a segment delivered, kept between segments for its room.
        var events: [TCPStreamReassembler.Event] = []
        /// Segments held until it is known which side is the server.
        var held: [TCPSegment] = []
        /// The server's first octets, and the stream events held until they
        /// show whether this is SMTP.
        var probe: [UInt8] = []
        var undecided: [(event: TCPStreamReassembler.Event, fromClient: Bool)] = []

        init(created: Int, time: Double) {
            self.created = created
            self.firstSeen = time
            self.lastSeen = time
        }
    }

    /// How often (in packets) silent connections are looked for.
    static let expiryInterval = 1024

    let options: CaptureOptions
    var flows: [Key: Flow] = [:]
    /// The packet being read (1-based), set by the caller before each
    /// ``receive(_:emit:)`` or ``expire(now:emit:)``.
    var packetIndex = 0

    init(options: CaptureOptions) {
        self.options = options
    }

    /// Takes the next segment. `lent`, when given, is its payload where it
    /// lies (a capture's mapping; `segment.payload` is then empty): octets
    /// that come in order go to the session from there, and only those
    /// that must be kept (held, out of order, undecided) are copied.
    mutating func receive(_ segment: TCPSegment, lent: UnsafeRawBufferPointer? = nil, emit: (FlowEvent) -> Void) {
        let key = Key(segment.source, segment.destination)
        // One lookup a segment: a bare ACK, most often, goes the long way.
        var found = self.flows[key]
        if let flow = found, let client = flow.client, self.passOn(segment, lent: lent, to: flow, client: client) {
            flow.lastSeen = segment.timestamp
            self.finishIfDone(key, flow, now: segment.timestamp, emit: emit)
            return
        }
        var segment = segment
        if let lent { segment.payload = Array(lent) }
        if segment.flags.contains(.syn) && !segment.flags.contains(.ack), let flow = found,
            flow.clientStream.sawSYN && (flow.clientStream.offset > 0 || flow.reset != nil || flow.clientStream.isFinished)
        {
            // The same four-tuple again: a new connection.
            self.close(
                key, now: segment.timestamp, end: .closedByClient(at: segment.timestamp - flow.firstSeen), order: .packet, emit: emit)
            found = nil
        }
        let flow: Flow
        if let existing = found {
            flow = existing
        } else {
            // A bare ACK, FIN or RST after a connection closed starts nothing.
            guard segment.flags.contains(.syn) || !segment.payload.isEmpty else { return }
            flow = Flow(created: self.packetIndex, time: segment.timestamp)
            self.flows[key] = flow
            emit(.created(packet: self.packetIndex))
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

    /// The in-order case without an event or a copy: a segment of a flow
    /// known to be SMTP (not implicit TLS) whose octets come next in order
    /// is handed to the session as it lies; false for anything else.
    private func passOn(_ segment: TCPSegment, lent: UnsafeRawBufferPointer?, to flow: Flow, client: Endpoint) -> Bool {
        guard flow.isSMTP == true, !flow.implicitTLS, flow.builder != nil, !segment.flags.contains(.rst) else { return false }
        let fromClient = segment.source == client
        return Self.withPayload(segment, lent: lent) { payload in
            let taken =
                fromClient
                ? flow.clientStream.takeInOrder(
                    sequence: segment.sequence, flags: segment.flags, payload: payload, payloadLength: segment.payloadLength)
                : flow.serverStream.takeInOrder(
                    sequence: segment.sequence, flags: segment.flags, payload: payload, payloadLength: segment.payloadLength)
            guard taken else { return false }
            let acknowledgement = fromClient && segment.flags.contains(.ack) ? segment.acknowledgement : nil
            self.process(payload, time: segment.timestamp, acknowledgement: acknowledgement, fromClient: fromClient, flow: flow)
            return true
        }
    }

    private static func withPayload<T>(_ segment: TCPSegment, lent: UnsafeRawBufferPointer?, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        if let lent { return body(lent) }
        return segment.payload.withUnsafeBytes(body)
    }

    private func deliver(_ segment: TCPSegment, to flow: Flow, client: Endpoint) {
        let fromClient = segment.source == client
        if segment.flags.contains(.rst) && flow.reset == nil { flow.reset = fromClient ? .client : .server }
        // The flow's array, taken while the stream fills it and put back
        // empty with its room: no array per segment.
        var events = flow.events
        flow.events = []
        if fromClient {
            flow.clientStream.receive(
                sequence: segment.sequence, flags: segment.flags, payload: segment.payload, payloadLength: segment.payloadLength,
                timestamp: segment.timestamp, acknowledgement: segment.acknowledgement, into: &events)
        } else {
            flow.serverStream.receive(
                sequence: segment.sequence, flags: segment.flags, payload: segment.payload, payloadLength: segment.payloadLength,
                timestamp: segment.timestamp, acknowledgement: nil, into: &events)
        }
        for event in events { self.feed(event, fromClient: fromClient, flow: flow) }
        events.removeAll(keepingCapacity: true)
        flow.events = events
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
        switch event {
        case .data(let bytes, let time, let acknowledgement):
            bytes.withUnsafeBytes { self.process($0, time: time, acknowledgement: acknowledgement, fromClient: fromClient, flow: flow) }
        case .gap:
            if fromClient { flow.builder?.client(event) } else { flow.builder?.server(event) }
        }
    }

    /// In-order octets to the flow's session (which has begun), borrowed.
    private func process(_ bytes: UnsafeRawBufferPointer, time: Double, acknowledgement: UInt32?, fromClient: Bool, flow: Flow) {
        if fromClient {
            // How much of the server's stream the client had read when it sent these octets.
            let read = acknowledgement.flatMap { flow.serverStream.streamOffset(of: $0) }
            flow.builder?.client(bytes, time: time, serverOctetsRead: read)
        } else {
            flow.builder?.server(bytes, time: time)
        }
    }

    private mutating func finishIfDone(_ key: Key, _ flow: Flow, now: Double, emit: (FlowEvent) -> Void) {
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
        self.close(key, now: now, end: end, order: .packet, emit: emit)
    }

    mutating func close(_ key: Key, now: Double, end: Transcript.End, order: FlowEvent.Phase, emit: (FlowEvent) -> Void) {
        guard let flow = self.flows.removeValue(forKey: key) else { return }
        let at = order == .end ? Int.max : FlowEvent.order(self.packetIndex, order)
        for event in flow.clientStream.flush(timestamp: now) { self.feed(event, fromClient: true, flow: flow) }
        for event in flow.serverStream.flush(timestamp: now) { self.feed(event, fromClient: false, flow: flow) }
        if flow.isSMTP == nil, let last = flow.undecided.popLast() {
            self.feed(last.event, fromClient: last.fromClient, flow: flow, final: true)
        }
        guard flow.isSMTP == true, var builder = flow.builder, let client = flow.client, let server = flow.server else {
            emit(.ended(at: at, created: flow.created, session: nil, other: flow.isSMTP == false))
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
        let session = CapturedSession(
            number: 0, client: client, server: server, transcript: transcript, findings: findings, implicitTLS: flow.implicitTLS,
            proxiedClient: builder.proxiedClient)
        emit(.ended(at: at, created: flow.created, session: session, other: false))
    }

    /// Closes connections silent for longer than the timeout, oldest first.
    mutating func expire(now: Double, emit: (FlowEvent) -> Void) {
        let silent = self.flows.filter { now - $0.value.lastSeen > self.options.flowTimeout }.sorted { $0.value.created < $1.value.created }
        for (key, flow) in silent {
            self.close(
                key, now: now, end: .failed(.captureSilent(seconds: Int(self.options.flowTimeout)), at: now - flow.firstSeen),
                order: .expiry, emit: emit)
        }
    }

    /// The end of the capture: every open connection, oldest first.
    mutating func closeAll(now: Double, emit: (FlowEvent) -> Void) {
        for (key, flow) in self.flows.sorted(by: { $0.value.created < $1.value.created }) {
            self.close(key, now: now, end: .failed(.captureEnded, at: now - flow.firstSeen), order: .end, emit: emit)
        }
    }
}

/// What the flow table reports: a connection began, or one ended (with its
/// session when it was SMTP). `at` orders events as a one-thread read of the
/// file would give them: by packet, then by phase.
enum FlowEvent: Sendable {
    enum Phase: Int, Sendable {
        /// A packet began a connection.
        case created = 0
        /// A packet ended one.
        case packet = 1
        /// The silence check after a packet ended one.
        case expiry = 2
        /// The end of the capture.
        case end = 3
    }

    /// A connection began at this packet.
    case created(packet: Int)
    /// `created` is the packet that began the connection; `other` says it was not SMTP.
    case ended(at: Int, created: Int, session: CapturedSession?, other: Bool)

    static func order(_ packet: Int, _ phase: Phase) -> Int { packet &* 4 &+ phase.rawValue }

    var at: Int {
        switch self {
        case .created(let packet): Self.order(packet, .created)
        case .ended(let at, _, _, _): at
        }
    }

    /// Where it sorts among events of the same `at`: by the connection's start.
    var created: Int {
        switch self {
        case .created(let packet): packet
        case .ended(_, let created, _, _): created
        }
    }
}

/// Numbers sessions in the order their connections began (1-based, every
/// TCP connection taking a number), from flow events taken in order.
struct SessionSequencer {
    private var started = 0
    private var numbers: [Int: Int] = [:]
    private(set) var sessions = 0
    private(set) var otherFlows = 0

    mutating func take(_ event: FlowEvent) -> CapturedSession? {
        switch event {
        case .created(let packet):
            self.started += 1
            self.numbers[packet] = self.started
            return nil
        case .ended(_, let created, let session, let other):
            let number = self.numbers.removeValue(forKey: created) ?? 0
            if other { self.otherFlows += 1 }
            guard var session else { return nil }
            session.number = number
            self.sessions += 1
            return session
        }
    }
}

/// A segment's payload left where it lies in a mapped capture, for the
/// flow worker that takes the segment to copy: the reading thread then
/// reads each packet's headers alone. Sendable because the octets are the
/// read-only mapping's, held in place (``PacketSource/hold(from:)``) until
/// every worker has gone past them.
struct LentPayload: @unchecked Sendable {
    let octets: UnsafeBufferPointer<UInt8>
    /// Where the packet's octets begin in the file.
    let offset: Int
}

/// The packet loop both readers share (one thread, or `ParallelRead`'s
/// reading thread): every packet counted and decoded, and the counts.
struct ReadCounts {
    var octets = 24
    var malformed = 0
    var cut = 0
    var lastTime = 0.0
    /// Whether payloads that stay in place are lent to `segment` rather
    /// than copied here (``ParallelRead``: its workers copy them).
    var lends = false
    private var decoder = PacketDecoder()

    /// Reads `file` to its end: `segment` gets each TCP segment with its
    /// packet's number (from 1), `expire` comes after every
    /// ``FlowTable/expiryInterval`` packets; a file that ends early leaves a note.
    mutating func readAll(
        _ file: some PacketSource, into summary: inout CaptureSummary, progress: ((CaptureReader.Progress) -> Void)?,
        sessions: () -> Int, segment: (Int, TCPSegment, LentPayload?) -> Void, expire: (Int, Double) -> Void
    ) {
        do {
            while let (found, time) = try file.withNext({ (self.decode($0), $0.timestamp) }) {
                summary.packets += 1
                if let progress, summary.packets % 4096 == 0 {
                    progress(CaptureReader.Progress(octets: self.octets, packets: summary.packets, sessions: sessions()))
                }
                if let (found, lent) = found {
                    summary.tcpSegments += 1
                    segment(summary.packets, found, lent)
                }
                if summary.packets % FlowTable.expiryInterval == 0 { expire(summary.packets, time) }
            }
        } catch {
            summary.notes.append("the capture ends early after \(summary.packets) packets: \(error.message)")
        }
    }

    /// Counts the packet and decodes it down to its TCP segment, if it
    /// holds one, with its payload lent when ``lends`` and the packet's
    /// octets stay in place.
    private mutating func decode(_ packet: PacketView) -> (TCPSegment, LentPayload?)? {
        self.octets += 16 + packet.bytes.count
        self.lastTime = packet.timestamp
        if packet.originalLength > packet.bytes.count { self.cut += 1 }
        self.decoder.lendsPayload = self.lends && packet.inPlace != nil
        switch self.decoder.decode(packet.bytes, linkType: packet.linkType, timestamp: packet.timestamp) {
        case .segment(let segment):
            guard let offset = packet.inPlace, let lent = self.decoder.lentPayload,
                let start = UnsafePointer<UInt8>(bitPattern: lent.address)
            else { return (segment, nil) }
            return (segment, LentPayload(octets: UnsafeBufferPointer(start: start, count: lent.count), offset: offset))
        case .malformed:
            self.malformed += 1
        case .fragmentHeld, .notTCP:
            break
        }
        return nil
    }

    func notes(_ file: some PacketSource) -> [String] {
        var notes: [String] = []
        if let dropped = file.dropped, dropped > 0 {
            notes.append("\(dropped) packets were dropped before they could be read: sessions may show gaps")
        }
        if self.malformed > 0 { notes.append("\(self.malformed) packets could not be decoded") }
        if self.cut > 0 {
            notes.append("\(self.cut) packets were cut by the snap length (\(file.snapLength) octets): their missing octets are gaps")
        }
        return notes
    }
}
