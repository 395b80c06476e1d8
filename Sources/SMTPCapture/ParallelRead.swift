import Foundation

/// A read spread over the cores. Flows are independent, so each TCP
/// connection belongs to one flow worker (by a hash of its four-tuple),
/// which reassembles it and builds its session; the reading thread decodes
/// packets, hands segments out in batches, and puts the workers' results
/// back in the order a one-thread read gives (sessions in the order they
/// end, numbered in the order they began). A pool then prepares each
/// session (judges it, formats it) and the caller gets them, prepared, in
/// that same order. Every queue is bounded, so memory follows the open
/// connections and the batches in flight, not the file.
struct ParallelRead {
    /// A batch for one flow worker: segments and silence checks, in packet
    /// order, and the last packet the batch accounts for.
    enum Item: Sendable {
        /// A lent payload is read where it lies by the worker, which copies
        /// only what a connection must keep.
        case segment(packet: Int, TCPSegment, LentPayload?)
        case expire(packet: Int, now: Double)
        case finish(now: Double)
    }

    struct Batch: Sendable {
        var items: [Item] = []
        var through = 0
    }

    struct Output: Sendable {
        var worker: Int
        var events: [FlowEvent]
        /// The last packet of the batch, `Int.max` once the worker has
        /// closed every connection: every event still to come from it sorts
        /// after this packet, and it is done with every payload lent up to it.
        var through: Int
    }

    let workers: Int
    let options: CaptureOptions

    /// Reads `file` to its end; `prepare` runs on a pool, `each` here, in order.
    func run<Prepared: Sendable>(
        _ file: PcapFileReader, summary: inout CaptureSummary, prepare: @escaping @Sendable (CapturedSession) -> Prepared,
        each: (Prepared) -> Void, progress: ((CaptureReader.Progress) -> Void)?
    ) -> ReadCounts {
        var pool = OrderedPool(threads: self.workers, prepare: prepare)
        let counts = self.run(
            file, summary: &summary, take: { pool.submit($0, each: each) }, poll: { pool.deliver(each: each) }, progress: progress)
        pool.finish(each: each)
        return counts
    }

    /// The reading thread's loop, not generic (it runs for every packet):
    /// each session goes to `take` in order; `poll` lets finished ones out.
    /// The file's type is named, not `some PacketSource`: called from a
    /// function generic in what it prepares, the loop was compiled
    /// unspecialized, and every packet's result went through generic
    /// value witnesses (a twentieth of the reading thread).
    private func run(
        _ file: PcapFileReader, summary: inout CaptureSummary, take: (CapturedSession) -> Void, poll: () -> Void,
        progress: ((CaptureReader.Progress) -> Void)?
    ) -> ReadCounts {
        let inputs = (0..<self.workers).map { _ in BoundedQueue<Batch>(capacity: 4) }
        let outputs = BoundedQueue<Output>(capacity: Int.max)
        let options = self.options
        for (index, input) in inputs.enumerated() {
            Thread.detachNewThread {
                var table = FlowTable(options: options)
                while let batch = input.receive() {
                    var events: [FlowEvent] = []
                    let emit: (FlowEvent) -> Void = { events.append($0) }
                    var finished = false
                    for item in batch.items {
                        switch item {
                        case .segment(let packet, let segment, let lent):
                            table.packetIndex = packet
                            table.receive(segment, lent: lent.map { UnsafeRawBufferPointer($0.octets) }, emit: emit)
                        case .expire(let packet, let now):
                            table.packetIndex = packet
                            table.expire(now: now, emit: emit)
                        case .finish(let now):
                            table.closeAll(now: now, emit: emit)
                            finished = true
                        }
                    }
                    outputs.send(Output(worker: index, events: events, through: finished ? Int.max : batch.through))
                    if finished { return }
                }
            }
        }
        var merge = Merge(workers: self.workers)
        var sequencer = SessionSequencer()
        var counts = ReadCounts()
        // The reading thread reads headers; each worker reads the payloads
        // of its own segments from the mapping (a quarter of the reading
        // thread's time was copying them), handing in-order octets to the
        // session where they lie and copying only what a connection keeps.
        // The octets of a batch are held in place until every worker has
        // gone past it.
        counts.lends = true
        var lending = Lending()
        var batches = Array(repeating: Batch(), count: self.workers)

        /// Takes what the workers have finished, in order, to the pool and on to the caller.
        func collect(waiting: Bool) {
            for output in outputs.receiveAll(waiting: waiting) { merge.add(output) }
            lending.copied(through: merge.everyoneThrough)
            file.hold(from: lending.heldFrom)
            for event in merge.ready() {
                guard let session = sequencer.take(event) else { continue }
                take(session)
            }
            poll()
        }
        func flush(through packet: Int) {
            lending.flushed(through: packet)
            for index in batches.indices {
                batches[index].through = packet
                inputs[index].send(batches[index])
                batches[index] = Batch()
            }
            collect(waiting: false)
        }

        counts.readAll(
            file, into: &summary, progress: progress, sessions: { sequencer.sessions },
            segment: { packet, segment, lent in
                if let lent, lending.lent(at: lent.offset) { file.hold(from: lent.offset) }
                let worker = FlowTable.Key(segment.source, segment.destination).worker(of: self.workers)
                batches[worker].items.append(.segment(packet: packet, segment, lent))
            },
            expire: { packet, now in
                for index in batches.indices { batches[index].items.append(.expire(packet: packet, now: now)) }
                flush(through: packet)
            })
        for index in batches.indices { batches[index].items.append(.finish(now: counts.lastTime)) }
        flush(through: summary.packets)
        while !merge.finished { collect(waiting: true) }
        summary.sessionCount = sequencer.sessions
        summary.otherFlows = sequencer.otherFlows
        return counts
    }

    /// Where the lent octets some worker may still read begin: the batches sent
    /// (each from the first octet it lent) that some worker has yet to go
    /// past, and the batch being filled.
    struct Lending {
        private var sent: [(through: Int, from: Int)] = []
        private var filling: Int?

        var heldFrom: Int? { self.sent.first?.from ?? self.filling }

        /// A payload lent from `offset`; true when it is the first one held,
        /// which the source must be told of at once.
        mutating func lent(at offset: Int) -> Bool {
            guard self.filling == nil else { return false }
            self.filling = offset
            return self.sent.isEmpty
        }

        mutating func flushed(through packet: Int) {
            guard let from = self.filling else { return }
            self.sent.append((packet, from))
            self.filling = nil
        }

        /// Every worker has gone past `packet` (``Merge/everyoneThrough``).
        mutating func copied(through packet: Int) {
            self.sent.removeAll { $0.through <= packet }
        }
    }

    /// Puts the workers' events back in one order: an event is released once
    /// every worker has gone past it.
    struct Merge {
        private var pending: [FlowEvent] = []
        /// The last packet each worker has finished (packets count from 1).
        private var through: [Int]

        init(workers: Int) {
            self.through = Array(repeating: 0, count: workers)
        }

        var finished: Bool { self.through.allSatisfy { $0 == Int.max } && self.pending.isEmpty }

        /// The last packet every worker has gone past.
        var everyoneThrough: Int { self.through.min() ?? Int.max }

        mutating func add(_ output: Output) {
            self.pending += output.events
            self.through[output.worker] = output.through
        }

        mutating func ready() -> [FlowEvent] {
            let everyone = self.everyoneThrough
            let bound = everyone == Int.max ? Int.max : FlowEvent.order(everyone, .end)
            guard !self.pending.isEmpty else { return [] }
            var ready: [FlowEvent] = []
            var rest: [FlowEvent] = []
            for event in self.pending {
                if event.at <= bound { ready.append(event) } else { rest.append(event) }
            }
            self.pending = rest
            return ready.sorted { ($0.at, $0.created) < ($1.at, $1.created) }
        }
    }
}

/// Prepares sessions on a few threads and hands them out in the order they
/// were submitted, with a bounded number in flight. The sessions submitted
/// since the last ``deliver(each:)`` go to the threads split in a part per
/// thread, and come back a part at a time: a queue operation and a
/// thread's wake-up per session cost more than the queueing saved.
struct OrderedPool<Prepared: Sendable> {
    private final class Slots: @unchecked Sendable {
        let condition = NSCondition()
        var done: [Int: Prepared] = [:]
    }

    private let jobs: BoundedQueue<[(Int, CapturedSession)]>
    private let slots = Slots()
    private let threads: Int
    private var pending: [(Int, CapturedSession)] = []
    private var submitted = 0
    private var delivered = 0
    private let limit: Int

    init(threads: Int, prepare: @escaping @Sendable (CapturedSession) -> Prepared) {
        let jobs = BoundedQueue<[(Int, CapturedSession)]>(capacity: Int.max)
        self.jobs = jobs
        self.threads = max(threads, 1)
        self.limit = self.threads * 16
        let slots = self.slots
        for _ in 0..<self.threads {
            Thread.detachNewThread {
                while let part = jobs.receive() {
                    let prepared = part.map { ($0.0, prepare($0.1)) }
                    slots.condition.lock()
                    for (number, one) in prepared { slots.done[number] = one }
                    slots.condition.broadcast()
                    slots.condition.unlock()
                }
            }
        }
    }

    /// Queues a session; with too many in flight, first hands out the oldest.
    mutating func submit(_ session: CapturedSession, each: (Prepared) -> Void) {
        while self.submitted - self.delivered >= self.limit {
            self.dispatch()
            self.next(waiting: true, each: each)
        }
        self.pending.append((self.submitted, session))
        self.submitted += 1
    }

    /// Sends what was submitted to the threads, and hands out what is
    /// ready, in order, without waiting.
    mutating func deliver(each: (Prepared) -> Void) {
        self.dispatch()
        while self.delivered < self.submitted && self.next(waiting: false, each: each) {}
    }

    /// Hands out everything, then lets the threads go.
    mutating func finish(each: (Prepared) -> Void) {
        self.dispatch()
        while self.delivered < self.submitted { self.next(waiting: true, each: each) }
        self.jobs.close()
    }

    /// The sessions submitted since the last dispatch, in a part per thread.
    private mutating func dispatch() {
        guard !self.pending.isEmpty else { return }
        let size = (self.pending.count + self.threads - 1) / self.threads
        for start in stride(from: 0, to: self.pending.count, by: size) {
            self.jobs.send(Array(self.pending[start..<min(start + size, self.pending.count)]))
        }
        self.pending.removeAll(keepingCapacity: true)
    }

    @discardableResult
    private mutating func next(waiting: Bool, each: (Prepared) -> Void) -> Bool {
        self.slots.condition.lock()
        while self.slots.done[self.delivered] == nil {
            guard waiting else {
                self.slots.condition.unlock()
                return false
            }
            self.slots.condition.wait()
        }
        let prepared = self.slots.done.removeValue(forKey: self.delivered)
        self.slots.condition.unlock()
        self.delivered += 1
        if let prepared { each(prepared) }
        return true
    }
}

/// A queue between threads: `send` waits while it holds `capacity` items,
/// `receive` waits while it is empty; after `close`, receives drain it and
/// then return `nil`.
final class BoundedQueue<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    /// Taken items are set to `nil` at once: a batch's octets are let go
    /// when a worker takes it, not when the array is next compacted.
    private var items: [Element?] = []
    private var head = 0
    private let capacity: Int
    private var closed = false

    init(capacity: Int) {
        self.capacity = capacity
    }

    func send(_ element: Element) {
        self.condition.lock()
        defer { self.condition.unlock() }
        while self.items.count - self.head >= self.capacity && !self.closed { self.condition.wait() }
        self.items.append(element)
        self.condition.broadcast()
    }

    func receive() -> Element? {
        self.condition.lock()
        defer { self.condition.unlock() }
        while self.head == self.items.count {
            if self.closed { return nil }
            self.condition.wait()
        }
        let element = self.items[self.head]
        self.items[self.head] = nil
        self.head += 1
        if self.head > 64 && self.head * 2 > self.items.count {
            self.items.removeFirst(self.head)
            self.head = 0
        }
        self.condition.broadcast()
        return element
    }

    /// Everything queued; when `waiting`, waits for at least one item (or the close).
    func receiveAll(waiting: Bool) -> [Element] {
        self.condition.lock()
        defer { self.condition.unlock() }
        while waiting && self.head == self.items.count && !self.closed { self.condition.wait() }
        let all = self.items[self.head...].compactMap { $0 }
        self.items.removeAll(keepingCapacity: true)
        self.head = 0
        self.condition.broadcast()
        return all
    }

    func close() {
        self.condition.lock()
        self.closed = true
        self.condition.broadcast()
        self.condition.unlock()
    }
}
