import Crypto
import Foundation
import NIOConcurrencyHelpers
import SMTPPolicy

/// A message being received: its size and digest, and its octets only
/// where a Maildir is to be written.
struct IncomingMessage {
    private(set) var octets = 0
    private var hasher = SHA256()
    private(set) var data: [UInt8]?

    init(keepsData: Bool) {
        self.data = keepsData ? [] : nil
    }

    mutating func append(_ bytes: [UInt8]) {
        self.octets += bytes.count
        self.hasher.update(data: bytes)
        self.data?.append(contentsOf: bytes)
    }

    var digest: String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in self.hasher.finalize() {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}

/// What the reference server accepted. In memory: the envelope, size and
/// SHA-256 of the last ``capacity`` messages, never their octets; with a
/// Maildir each message is also written there in full (`tmp/`, then
/// renamed into `new/`).
public final class MessageStore: Sendable {
    public struct Stored: Sendable, Hashable {
        public var message: AcceptedMessage
        /// SHA-256 of the message octets, lower-case hex.
        public var sha256: String
        /// Where the Maildir copy went, if one was written.
        public var file: String?
    }

    /// A ring of the last ``capacity`` messages: `next` is where the next
    /// one goes once the ring is full (no array shifted per message).
    private let messages = NIOLockedValueBox<(kept: [Stored], next: Int, count: Int)>(([], 0, 0))
    public let maildir: String?
    /// How many messages are remembered in memory.
    public let capacity: Int

    public init(maildir: String?, capacity: Int = 1000) throws {
        self.maildir = maildir
        self.capacity = max(capacity, 1)
        if let maildir {
            for folder in ["tmp", "new", "cur"] {
                try FileManager.default.createDirectory(atPath: "\(maildir)/\(folder)", withIntermediateDirectories: true)
            }
        }
    }

    /// The most recent messages, oldest first (at most ``capacity``).
    public var all: [Stored] {
        self.messages.withLockedValue { state in
            Array(state.kept[state.next...] + state.kept[..<state.next])
        }
    }

    /// Every message accepted since the start.
    public var count: Int { self.messages.withLockedValue { $0.count } }

    func add(_ message: AcceptedMessage, _ incoming: IncomingMessage) {
        var stored = Stored(message: message, sha256: incoming.digest, file: nil)
        if let maildir, let data = incoming.data { stored.file = self.write(message, data, to: maildir) }
        self.messages.withLockedValue { state in
            state.count += 1
            if state.kept.count < self.capacity {
                state.kept.append(stored)
            } else {
                state.kept[state.next] = stored
                state.next = (state.next + 1) % self.capacity
            }
        }
    }

    private func write(_ message: AcceptedMessage, _ data: [UInt8], to maildir: String) -> String? {
        let name = "\(Int(Date().timeIntervalSince1970)).\(message.queueID).smtpcheck"
        var header = "Return-Path: <\(message.sender)>\r\n"
        header += "X-Smtpcheck-Recipients: \(message.recipients.joined(separator: ", "))\r\n"
        header +=
            "Received: from \(message.heloName ?? "unknown") ([\(message.clientAddress ?? "unknown")]) by smtpcheck with ESMTP id \(message.queueID)\r\n"
        let temporary = "\(maildir)/tmp/\(name)"
        let final = "\(maildir)/new/\(name)"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(header.utf8) + Data(data)),
            (try? FileManager.default.moveItem(atPath: temporary, toPath: final)) != nil
        else { return nil }
        return final
    }
}
