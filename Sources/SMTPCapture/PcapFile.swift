import CPcap
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One packet as the capture file holds it.
public struct CapturedPacket: Sendable {
    /// Seconds since the epoch, microsecond precision.
    public var timestamp: Double
    /// The captured octets (perhaps fewer than were on the wire).
    public var data: [UInt8]
    /// The packet's length on the wire.
    public var originalLength: Int
    /// The file's link-layer header type (LINKTYPE_ / DLT_ value).
    public var linkType: Int32

    public init(timestamp: Double, data: [UInt8], originalLength: Int, linkType: Int32) {
        self.timestamp = timestamp
        self.data = data
        self.originalLength = originalLength
        self.linkType = linkType
    }
}

/// A bad or unreadable capture. Exit code 65 when the file cannot be used.
public struct CaptureError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var message: String

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(self.file): \(self.message)" }
}

/// Where packets come from: a capture file, a live interface, or octets in
/// memory (the fuzzer's).
public protocol PacketSource {
    /// The link-layer header type (LINKTYPE_ / DLT_ value).
    var linkType: Int32 { get }
    /// Octets kept of each packet at most.
    var snapLength: Int { get }
    /// The next packet; `nil` at the end.
    func next() throws(CaptureError) -> CapturedPacket?
    /// Lends the next packet's octets to `body`; `nil` at the end.
    func withNext<Result>(_ body: (PacketView) -> Result) throws(CaptureError) -> Result?
    /// Packets the capture lost before they could be read (a live
    /// interface's kernel drops), when the source can tell.
    var dropped: Int? { get }
    /// Keeps the octets from `offset` on (a ``PacketView/inPlace`` offset)
    /// where they lie: packets lent past one call, whose octets another
    /// thread has yet to copy. `nil` lets every octet read go.
    func hold(from offset: Int?)
}

extension PacketSource {
    public var dropped: Int? { nil }

    /// A source whose packets never stay in place has nothing to hold.
    public func hold(from offset: Int?) {}

    /// Lends the next packet's octets where they lie to `body` (`nil` at
    /// the end); a source that can avoids copying them (libpcap's buffer).
    public func withNext<Result>(_ body: (PacketView) -> Result) throws(CaptureError) -> Result? {
        guard let packet = try self.next() else { return nil }
        return packet.data.withUnsafeBufferPointer { bytes in
            body(PacketView(timestamp: packet.timestamp, bytes: bytes, originalLength: packet.originalLength, linkType: packet.linkType))
        }
    }
}

/// A packet's octets lent for the length of one call.
public struct PacketView {
    public var timestamp: Double
    public var bytes: UnsafeBufferPointer<UInt8>
    public var originalLength: Int
    public var linkType: Int32
    /// Where the octets lie in the source, when they stay there past the
    /// call, until the source lets them go (see ``PacketSource/hold(from:)``);
    /// `nil`: they are valid for the call alone.
    public var inPlace: Int? = nil
}

/// Reads a pcap or pcapng file front to back through libpcap. This is the
/// only code that touches libpcap; no pointer leaves it.
public final class PcapFileReader: PacketSource {
    public let path: String
    public let linkType: Int32
    public let snapLength: Int
    private var handle: OpaquePointer?
    /// The file mapped into memory, which libpcap reads as a stream.
    private let mapping: Mapping?
    /// Where the mapped pages already read were let go, and the packets since.
    private var released = 0
    private var packetsSinceRelease = 0
    /// Where the octets of packets lent out and not yet copied begin.
    private var heldFrom: Int?
    /// A classic pcap file in this machine's byte order, mapped and read
    /// without a filter, has its records read here, straight from the
    /// mapping (see ``Records``); `nil` leaves every record to libpcap.
    private var records: Records?

    /// Opens `path`; `filter` is a BPF expression (`port 587`).
    public init(path: String, filter: String? = nil) throws(CaptureError) {
        self.path = path
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        let precision = UInt32(PCAP_TSTAMP_PRECISION_MICRO)
        var opened: OpaquePointer?
        // A regular file is read from memory: the kernel's copy of every
        // octet into a read buffer was a third of the reading thread's time.
        // The reader holds the mapping from here on, so that it outlives
        // libpcap's stream over it (`pcap_close` comes first, in `deinit` or
        // on the way out of here).
        var mapping = path == "-" ? nil : Mapping(path)
        if let mapped = mapping, let stream = fmemopen(mapped.address, mapped.length, "r") {
            opened = pcap_fopen_offline_with_tstamp_precision(stream, precision, &errorBuffer)
            if opened == nil { fclose(stream) }
        } else {
            mapping = nil
            opened = pcap_open_offline_with_tstamp_precision(path, precision, &errorBuffer)
        }
        self.mapping = mapping
        guard let handle = opened else {
            throw CaptureError(file: path, message: "cannot read the capture: \(Self.text(errorBuffer))")
        }
        self.linkType = pcap_datalink(handle)
        self.snapLength = Int(pcap_snapshot(handle))
        if let filter {
            do {
                try Libpcap.apply(filter, to: handle, name: path)
            } catch {
                pcap_close(handle)
                throw error
            }
        }
        self.handle = handle
        if filter == nil, let mapping, let stream = pcap_file(handle), let start = Int(exactly: ftell(stream)) {
            self.records = Records(mapping, start: start, snapshot: self.snapLength)
        }
    }

    deinit {
        if let handle { pcap_close(handle) }
    }

    public func hold(from offset: Int?) {
        self.heldFrom = offset
    }

    /// Lets go of the mapped pages libpcap has read past (it copies each
    /// packet out of the stream), a MiB at a time: the file's pages read
    /// would otherwise count in the process's memory, and grow with the file.
    private func releaseReadPages(_ handle: OpaquePointer) {
        self.packetsSinceRelease = 0
        guard let mapping = self.mapping, let stream = pcap_file(handle) else { return }
        let position = self.records.map { $0.offset } ?? ftell(stream)
        let step = 1 << 20
        guard position >= 0, let through = Int(exactly: position) else { return }
        let read = min(through, self.heldFrom ?? through)
        guard read - self.released >= step else { return }
        let end = min(read, mapping.length) / step * step
        guard end > self.released else { return }
        madvise(mapping.address + self.released, end - self.released, MADV_DONTNEED)
        self.released = end
    }

    /// A regular, non-empty file mapped read-only, unmapped when let go;
    /// `nil` for anything else (a pipe, a device, an empty file), which
    /// libpcap then opens itself.
    final class Mapping {
        let address: UnsafeMutableRawPointer
        let length: Int
        /// Its place in ``ShrinkGuard``'s table.
        let slot: Int

        init?(_ path: String) {
            // Looked at before it is opened: opening a FIFO would wait for its
            // writer, and closing it again could cost that writer its reader.
            var before = stat()
            guard stat(path, &before) == 0, before.st_mode & S_IFMT == S_IFREG else { return nil }
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            var status = stat()
            guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_size > 0,
                let length = Int(exactly: status.st_size)
            else { return nil }
            guard let address = mmap(nil, length, PROT_READ, MAP_PRIVATE, descriptor, 0), address != MAP_FAILED else { return nil }
            guard let slot = ShrinkGuard.register(address, length, path: path) else {
                munmap(address, length)
                return nil
            }
            madvise(address, length, MADV_SEQUENTIAL)
            self.address = address
            self.length = length
            self.slot = slot
        }

        deinit {
            ShrinkGuard.unregister(self.slot)
            munmap(self.address, self.length)
        }
    }

    private static func text(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The next packet in libpcap's own buffer, valid until the next read.
    public func withNext<Result>(_ body: (PacketView) -> Result) throws(CaptureError) -> Result? {
        guard let handle else { return nil }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        if self.mapping != nil {
            self.packetsSinceRelease += 1
            if self.packetsSinceRelease == 256 { self.releaseReadPages(handle) }
        }
        if var records = self.records {
            switch records.next() {
            case .packet(let record):
                self.records = records
                // The octets are the mapping's: they stay until let go.
                return body(
                    PacketView(
                        timestamp: record.timestamp, bytes: record.bytes, originalLength: record.originalLength, linkType: self.linkType,
                        inPlace: record.offset))
            case .end:
                return nil
            case .libpcap:
                // libpcap reads this record, from where it starts, and says
                // what is wrong with it as it says it of any file.
                guard let stream = pcap_file(handle), fseek(stream, records.offset, SEEK_SET) == 0 else {
                    throw CaptureError(file: self.path, message: "cannot read the record at octet \(records.offset)")
                }
            }
        }
        let read = pcap_next_ex(handle, &header, &data)
        // Past what libpcap read, the records are read here again.
        if self.records != nil, let stream = pcap_file(handle), let position = Int(exactly: ftell(stream)) {
            self.records?.offset = position
        }
        switch read {
        case 1:
            guard let header, let data else { return nil }
            let length = Int(header.pointee.caplen)
            let seconds = Double(header.pointee.ts.tv_sec) + Double(header.pointee.ts.tv_usec) / 1_000_000
            return body(
                PacketView(
                    timestamp: seconds, bytes: UnsafeBufferPointer(start: data, count: length), originalLength: Int(header.pointee.len),
                    linkType: self.linkType))
        case PCAP_ERROR_BREAK:
            return nil
        default:
            throw CaptureError(file: self.path, message: String(cString: pcap_geterr(handle)))
        }
    }

    /// The next packet, copied; `nil` at the end. A file cut short ends
    /// with an error that says how far it got.
    public func next() throws(CaptureError) -> CapturedPacket? {
        try self.withNext { packet in
            CapturedPacket(
                timestamp: packet.timestamp, data: Array(packet.bytes), originalLength: packet.originalLength, linkType: packet.linkType)
        }
    }
}

/// The records of a classic pcap file read from its mapping: no copy
/// through a stream into libpcap's buffer (two, with the stream's own
/// buffer), a record's octets lent where they lie. Only what libpcap would
/// hand out unchanged is read here: a file in this machine's byte order,
/// version 2.4 or later, the plain record header, each record whole and
/// within the snapshot length. Any other record (cut short, longer than
/// the snapshot length) is libpcap's to read, from where it starts, so
/// that its packets, its truncations and its errors are libpcap's own.
struct Records {
    /// Where the next record starts.
    var offset: Int
    /// The mapping's first octet; the reader holds the mapping.
    private let base: UnsafeRawPointer
    private let length: Int
    private let snapshot: Int
    private let nanoseconds: Bool

    enum Next {
        case packet((timestamp: Double, bytes: UnsafeBufferPointer<UInt8>, originalLength: Int, offset: Int))
        case end
        case libpcap
    }

    /// `nil` for a file that is not such a classic pcap file.
    init?(_ mapping: PcapFileReader.Mapping, start: Int, snapshot: Int) {
        guard mapping.length >= 24, start >= 24, start <= mapping.length else { return nil }
        let base = UnsafeRawPointer(mapping.address)
        let magic = base.loadUnaligned(as: UInt32.self)
        let major = base.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        let minor = base.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        // libpcap's TCPDUMP_MAGIC and NSEC_TCPDUMP_MAGIC, unswapped; from
        // version 2.4 on, the lengths are never swapped.
        guard magic == 0xA1B2_C3D4 || magic == 0xA1B2_3C4D, major == 2, minor >= 4 else { return nil }
        self.offset = start
        self.base = base
        self.length = mapping.length
        self.snapshot = snapshot
        self.nanoseconds = magic == 0xA1B2_3C4D
    }

    /// The record at ``offset``, moving past it.
    mutating func next() -> Next {
        let remaining = self.length - self.offset
        if remaining == 0 { return .end }
        guard remaining >= 16 else { return .libpcap }
        let header = self.base + self.offset
        let seconds = Int32(bitPattern: header.loadUnaligned(as: UInt32.self))
        let fraction = Int32(bitPattern: header.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let captured = Int(header.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let original = Int(header.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        guard captured <= self.snapshot, captured <= remaining - 16 else { return .libpcap }
        let start = self.offset + 16
        self.offset += 16 + captured
        // The next header is a cache miss otherwise: the payload between is
        // read later, on a flow worker, so nothing has streamed through it.
        if self.offset < self.length { smtpcheck_prefetch(self.base + self.offset) }
        // As libpcap gives it at microsecond precision: nanoseconds scaled
        // down by integer division, then the reader's own sum.
        let microseconds = self.nanoseconds ? fraction / 1000 : fraction
        let timestamp = Double(Int(seconds)) + Double(microseconds) / 1_000_000
        let bytes = UnsafeBufferPointer(start: (header + 16).assumingMemoryBound(to: UInt8.self), count: captured)
        return .packet((timestamp, bytes, original, start))
    }
}

/// Packets as they cross a live interface, through libpcap (as root, or
/// with CAP_NET_RAW). ``stop()``, from any thread (a signal handler's
/// queue), ends the read: packets already captured are still handed out,
/// then ``next()`` returns `nil`.
public final class PcapLiveReader: PacketSource, @unchecked Sendable {
    public let interface: String
    public let linkType: Int32
    public let snapLength: Int
    // `next()` runs on one reading thread; `stop()` may come from any other:
    // it only sets the atomic flag, and libpcap allows pcap_breakloop there.
    private let handle: OpaquePointer
    private let stopping = Atomic<Bool>(false)
    private var draining = false

    /// Opens `interface` for capture; `filter` is a BPF expression.
    public init(interface: String, filter: String? = nil) throws(CaptureError) {
        self.interface = interface
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_create(interface, &errorBuffer) else {
            throw CaptureError(file: interface, message: "cannot open the interface: \(Self.text(errorBuffer))")
        }
        // Each slot of the kernel's ring holds a snap length: 64 KiB slots in
        // a 64 MiB ring keep a thousand packets while the reader catches up
        // (262,144-octet slots in libpcap's default 2 MiB held eight, and
        // loopback bursts were dropped).
        pcap_set_snaplen(handle, 65_535)
        pcap_set_buffer_size(handle, 64 << 20)
        pcap_set_promisc(handle, 0)
        // Packets are handed out as they come, and a read wakes at least
        // every 100 ms to see whether it should stop.
        pcap_set_immediate_mode(handle, 1)
        pcap_set_timeout(handle, 100)
        let activated = pcap_activate(handle)
        if activated < 0 {
            let detail = String(cString: pcap_geterr(handle))
            let reason = String(cString: pcap_statustostr(activated))
            pcap_close(handle)
            let hint = activated == PCAP_ERROR_PERM_DENIED ? " (capturing needs root or CAP_NET_RAW)" : ""
            throw CaptureError(file: interface, message: "cannot capture: \(detail.isEmpty ? reason : detail)\(hint)")
        }
        self.handle = handle
        self.linkType = pcap_datalink(handle)
        self.snapLength = Int(pcap_snapshot(handle))
        if let filter {
            do {
                try Libpcap.apply(filter, to: handle, name: interface)
            } catch {
                pcap_close(handle)
                throw error
            }
        }
    }

    deinit { pcap_close(self.handle) }

    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Packets the kernel dropped, or the interface lost, so far.
    public var dropped: Int? {
        var stats = pcap_stat()
        guard pcap_stats(self.handle, &stats) == 0 else { return nil }
        return Int(stats.ps_drop) + Int(stats.ps_ifdrop)
    }

    /// Ends the read once what is already captured has been handed out.
    public func stop() {
        self.stopping.store(true, ordering: .releasing)
        pcap_breakloop(self.handle)
    }

    public func next() throws(CaptureError) -> CapturedPacket? {
        while true {
            if !self.draining && self.stopping.load(ordering: .acquiring) {
                // What the kernel already holds is read without waiting, then the end.
                self.draining = true
                var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
                pcap_setnonblock(self.handle, 1, &errorBuffer)
            }
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            switch pcap_next_ex(self.handle, &header, &data) {
            case 1:
                guard let header, let data else { continue }
                return Libpcap.packet(header, data, linkType: self.linkType)
            case 0:
                if self.draining { return nil }
            case PCAP_ERROR_BREAK:
                continue
            default:
                throw CaptureError(file: self.interface, message: String(cString: pcap_geterr(self.handle)))
            }
        }
    }
}

/// What both readers do with libpcap.
enum Libpcap {
    /// Compiles and sets a BPF filter; the caller closes the handle on error.
    static func apply(_ filter: String, to handle: OpaquePointer, name: String) throws(CaptureError) {
        var program = bpf_program()
        guard pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw CaptureError(file: name, message: "bad --filter '\(filter)': \(String(cString: pcap_geterr(handle)))")
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            throw CaptureError(file: name, message: "cannot apply --filter '\(filter)': \(String(cString: pcap_geterr(handle)))")
        }
    }

    /// The packet libpcap handed out, copied (its buffer is reused).
    static func packet(_ header: UnsafeMutablePointer<pcap_pkthdr>, _ data: UnsafePointer<UInt8>, linkType: Int32) -> CapturedPacket {
        let length = Int(header.pointee.caplen)
        let seconds = Double(header.pointee.ts.tv_sec) + Double(header.pointee.ts.tv_usec) / 1_000_000
        return CapturedPacket(
            timestamp: seconds, data: Array(UnsafeBufferPointer(start: data, count: length)), originalLength: Int(header.pointee.len),
            linkType: linkType)
    }
}

/// A file that shrinks while it is mapped (another program rewriting the
/// capture) faults with SIGBUS on the pages past its new end. Such a fault
/// inside a mapped capture ends the process with a message naming the file
/// and exit status 65, bad input, not a crash; any other SIGBUS keeps its
/// default action. The table is fixed and read by the signal handler
/// without locks or allocation; a file finds no free place only when 64
/// are mapped at once, and is then read through libpcap's own `fread`.
enum ShrinkGuard {
    struct Slot {
        var start = 0
        var end = 0
        var message: UnsafeMutablePointer<CChar>?
        var length = 0
    }

    static let capacity = 64
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Slot> = {
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
        return slots
    }()
    /// Whether the handler is in place; held while the table changes.
    private static let installed = Mutex(false)

    static func register(_ address: UnsafeMutableRawPointer, _ length: Int, path: String) -> Int? {
        Self.installed.withLock { installed -> Int? in
            // The table is made before the handler that reads it is in place.
            let slots = Self.slots
            if !installed {
                Self.install()
                installed = true
            }
            guard let free = (0..<Self.capacity).first(where: { slots[$0].end == 0 }) else { return nil }
            let text = "smtpcheck: \(path): the capture file shrank while it was read (another program rewrote it)\n"
            let start = Int(bitPattern: address)
            slots[free] = Slot(start: start, end: start + length, message: strdup(text), length: text.utf8.count)
            return free
        }
    }

    static func unregister(_ slot: Int) {
        Self.installed.withLock { _ in
            let message = Self.slots[slot].message
            Self.slots[slot] = Slot()
            free(message)
        }
    }

    private static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in
            let address = Int(bitPattern: info?.pointee._sifields._sigfault.si_addr)
            for index in 0..<ShrinkGuard.capacity {
                let slot = ShrinkGuard.slots[index]
                if slot.end != 0, address >= slot.start, address < slot.end, let message = slot.message {
                    _ = write(2, message, slot.length)
                    _exit(65)
                }
            }
            // Not a capture's page: the default action, at the same fault again.
            signal(SIGBUS, SIG_DFL)
        }
        action.sa_flags = SA_SIGINFO
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, nil)
    }
}
