import SMTPCapture

/// One side's turn in a synthetic SMTP session.
public enum Turn: Sendable {
    case client(String)
    case server(String)
    /// Client octets that went over the wire but are not in the capture.
    case lostClient(String)
}

extension SyntheticConnection {
    /// A whole session between these ends: handshake, the turns a second
    /// apart, close.
    public static func dialogue(client: Endpoint, server: Endpoint, _ turns: [Turn], start: Double = 1) -> SyntheticConnection {
        var connection = SyntheticConnection(client: client, server: server)
        connection.handshake(at: start)
        let end = connection.talk(turns, from: start + 1)
        connection.close(at: end)
        return connection
    }

    /// Plays the turns a second apart from `time`; returns the time after the last.
    @discardableResult
    public mutating func talk(_ turns: [Turn], from time: Double) -> Double {
        var now = time
        for turn in turns {
            switch turn {
            case .client(let text): self.send(text, fromClient: true, at: now)
            case .server(let text): self.send(text, fromClient: false, at: now)
            case .lostClient(let text): self.clientSequence &+= UInt32(text.utf8.count)
            }
            now += 1
        }
        return now
    }
}
