import CPcap

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

/// Reads a pcap or pcapng file front to back through libpcap. This is the
/// only code that touches libpcap; no pointer leaves it.
public final class PcapFileReader {
    public let path: String
    public let linkType: Int32
    public let snapLength: Int
    private var handle: OpaquePointer?

    /// Opens `path`; `filter` is a BPF expression (`port 587`).
    public init(path: String, filter: String? = nil) throws(CaptureError) {
        self.path = path
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_MICRO), &errorBuffer) else {
            throw CaptureError(file: path, message: "cannot read the capture: \(Self.text(errorBuffer))")
        }
        self.handle = handle
        self.linkType = pcap_datalink(handle)
        self.snapLength = Int(pcap_snapshot(handle))
        if let filter {
            var program = bpf_program()
            guard pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                let message = String(cString: pcap_geterr(handle))
                pcap_close(handle)
                self.handle = nil
                throw CaptureError(file: path, message: "bad --filter '\(filter)': \(message)")
            }
            defer { pcap_freecode(&program) }
            guard pcap_setfilter(handle, &program) == 0 else {
                let message = String(cString: pcap_geterr(handle))
                pcap_close(handle)
                self.handle = nil
                throw CaptureError(file: path, message: "cannot apply --filter '\(filter)': \(message)")
            }
        }
    }

    deinit {
        if let handle { pcap_close(handle) }
    }

    private static func text(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The next packet; `nil` at the end. A file cut short ends with an
    /// error that says how far it got.
    public func next() throws(CaptureError) -> CapturedPacket? {
        guard let handle else { return nil }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        switch pcap_next_ex(handle, &header, &data) {
        case 1:
            guard let header, let data else { return nil }
            let length = Int(header.pointee.caplen)
            let seconds = Double(header.pointee.ts.tv_sec) + Double(header.pointee.ts.tv_usec) / 1_000_000
            return CapturedPacket(
                timestamp: seconds, data: Array(UnsafeBufferPointer(start: data, count: length)), originalLength: Int(header.pointee.len),
                linkType: self.linkType)
        case PCAP_ERROR_BREAK:
            return nil
        default:
            throw CaptureError(file: self.path, message: String(cString: pcap_geterr(handle)))
        }
    }
}
