import Foundation
import NIOConcurrencyHelpers
import SMTPPolicy

/// The messages the reference server accepted: in memory, and optionally
/// written to a Maildir (`tmp/` then renamed into `new/`).
public final class MessageStore: Sendable {
    private let messages = NIOLockedValueBox<[ReceivedMessage]>([])
    public let maildir: String?

    public init(maildir: String?) throws {
        self.maildir = maildir
        if let maildir {
            for folder in ["tmp", "new", "cur"] {
                try FileManager.default.createDirectory(atPath: "\(maildir)/\(folder)", withIntermediateDirectories: true)
            }
        }
    }

    public var all: [ReceivedMessage] { self.messages.withLockedValue { $0 } }

    func add(_ message: ReceivedMessage) {
        self.messages.withLockedValue { $0.append(message) }
        guard let maildir else { return }
        let name = "\(Int(Date().timeIntervalSince1970)).\(message.queueID).smtpcheck"
        var header = "Return-Path: <\(message.sender)>\r\n"
        header += "X-Smtpcheck-Recipients: \(message.recipients.joined(separator: ", "))\r\n"
        header +=
            "Received: from \(message.heloName ?? "unknown") ([\(message.clientAddress ?? "unknown")]) by smtpcheck with ESMTP id \(message.queueID)\r\n"
        let data = Data(header.utf8) + Data(message.data)
        let temporary = "\(maildir)/tmp/\(name)"
        if FileManager.default.createFile(atPath: temporary, contents: data) {
            try? FileManager.default.moveItem(atPath: temporary, toPath: "\(maildir)/new/\(name)")
        }
    }
}
