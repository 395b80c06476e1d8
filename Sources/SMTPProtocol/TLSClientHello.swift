/// What a TLS ClientHello at the start of a client's octets says, read with
/// every length checked against what is there (RFC 8446 4.1.2, RFC 6066 3,
/// RFC 7301 3.1): a client that spoke TLS where SMTP was expected.
public struct TLSClientHello: Sendable, Hashable, Codable {
    /// The record layer's version (`TLS 1.0` for nearly every hello).
    public var recordVersion: String
    /// The server name the client asked for, when it sent one.
    public var serverName: String?
    /// The application protocols it offered (ALPN), in order.
    public var protocols: [String]

    public init(recordVersion: String, serverName: String? = nil, protocols: [String] = []) {
        self.recordVersion = recordVersion
        self.serverName = serverName
        self.protocols = protocols
    }

    /// `nil` unless `bytes` begin with a TLS handshake record holding a
    /// ClientHello. The names are read when the record is whole; a hello cut
    /// short still says its version.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 6, bytes[0] == 0x16, bytes[1] == 0x03, bytes[2] <= 0x04, bytes[5] == 0x01 else { return nil }
        self.recordVersion = Self.versionName(bytes[1], bytes[2])
        self.serverName = nil
        self.protocols = []
        var reader = Reader(bytes: bytes, offset: 5)
        let recordLength = Int(bytes[3]) << 8 | Int(bytes[4])
        guard bytes.count >= 5 + recordLength else { return }
        reader.limit = 5 + recordLength
        guard reader.skip(4 + 2 + 32),  // type and length, client version, random
            let session = reader.byte(), reader.skip(Int(session)),
            let suites = reader.uint16(), reader.skip(suites),
            let compression = reader.byte(), reader.skip(Int(compression)),
            let extensionsLength = reader.uint16()
        else { return }
        reader.limit = min(reader.limit, reader.offset + extensionsLength)
        while let type = reader.uint16(), let length = reader.uint16(), var body = reader.sub(length) {
            switch type {
            case 0:  // server_name: list length, then entries of type 0 (host_name)
                guard body.uint16() != nil, let kind = body.byte(), kind == 0, let nameLength = body.uint16(),
                    let name = body.take(nameLength)
                else { continue }
                self.serverName = String(decoding: name, as: UTF8.self)
            case 16:  // application_layer_protocol_negotiation
                guard body.uint16() != nil else { continue }
                while let protocolLength = body.byte(), let name = body.take(Int(protocolLength)) {
                    self.protocols.append(String(decoding: name, as: UTF8.self))
                }
            default:
                continue
            }
        }
    }

    static func versionName(_ major: UInt8, _ minor: UInt8) -> String {
        switch (major, minor) {
        case (3, 0): "SSL 3.0"
        case (3, 1): "TLS 1.0"
        case (3, 2): "TLS 1.1"
        case (3, 3): "TLS 1.2"
        case (3, 4): "TLS 1.3"
        default: "unknown (\(major).\(minor))"
        }
    }

    /// A cursor that never reads past `limit`.
    private struct Reader {
        let bytes: [UInt8]
        var offset: Int
        var limit: Int

        init(bytes: [UInt8], offset: Int, limit: Int? = nil) {
            self.bytes = bytes
            self.offset = offset
            self.limit = min(limit ?? bytes.count, bytes.count)
        }

        mutating func skip(_ count: Int) -> Bool {
            guard count >= 0, count <= self.limit - self.offset else { return false }
            self.offset += count
            return true
        }

        mutating func byte() -> UInt8? {
            guard self.offset < self.limit else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        mutating func uint16() -> Int? {
            guard let high = self.byte(), let low = self.byte() else { return nil }
            return Int(high) << 8 | Int(low)
        }

        mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
            guard count >= 0, count <= self.limit - self.offset else { return nil }
            defer { self.offset += count }
            return self.bytes[self.offset..<(self.offset + count)]
        }

        mutating func sub(_ count: Int) -> Reader? {
            guard count >= 0, count <= self.limit - self.offset else { return nil }
            defer { self.offset += count }
            return Reader(bytes: self.bytes, offset: self.offset, limit: self.offset + count)
        }
    }
}
