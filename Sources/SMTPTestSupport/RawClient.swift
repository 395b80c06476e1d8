import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain TCP client on a BSD socket, for tests that must misbehave below
/// what NIO lets a client do: write without reading, hold a connection,
/// trickle. Loopback only.
public final class RawClient {
    public let descriptor: Int32

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Connects to `127.0.0.1:port`; `receiveBuffer` shrinks the socket's
    /// receive buffer first (so that unread replies fill it soon).
    public init(port: Int, receiveBuffer: Int32? = nil) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        self.descriptor = descriptor
        if var size = receiveBuffer {
            setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw Failure(description: "connect to 127.0.0.1:\(port): \(reason)")
        }
    }

    deinit { close(self.descriptor) }

    /// Whether the socket can take more octets within `milliseconds`.
    public func writable(within milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: self.descriptor, events: Int16(POLLOUT), revents: 0)
        return poll(&entry, 1, milliseconds) == 1 && entry.revents & Int16(POLLOUT) != 0
    }

    /// Writes what the socket takes now without blocking; returns how many octets went.
    public func writeSome(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { send(self.descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
    }

    public func writeAll(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { send(self.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            offset += count
        }
    }

    /// The next line the server sends, CRLF removed, or `nil` at its close
    /// or after `seconds` of silence.
    public func readLine(seconds: Int = 10) -> String? {
        var line: [UInt8] = []
        var entry = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
        while true {
            guard poll(&entry, 1, Int32(seconds * 1000)) == 1 else { return nil }
            var octet: UInt8 = 0
            guard recv(self.descriptor, &octet, 1, 0) == 1 else { return line.isEmpty ? nil : String(decoding: line, as: UTF8.self) }
            if octet == 0x0A, line.last == 0x0D { return String(decoding: line.dropLast(), as: UTF8.self) }
            line.append(octet)
        }
    }
}
