import SMTPProtocol

/// Message data: DATA bodies line by line (RFC 5321 4.1.1.4) and BDAT
/// chunks (RFC 3030). The session counts octets for the size limit and hands
/// the octets on in each ``PolicySession/Response``; it keeps none.
extension PolicySession {
    /// One line inside DATA: message text, or the `.` that ends it.
    mutating func receiveBodyLine(_ line: LineFramer.Line, octets: Int) -> Response {
        guard let stripped = DotStuffing.decodeLine(line.bytes) else { return self.endMessage(octets: octets, chunked: false) }
        self.state = .message(octets: octets + stripped.count + 2)
        var response = Response()
        response.data = stripped + [0x0D, 0x0A]
        return response
    }

    /// A whole DATA body of `octets` whose octets are not at hand (a
    /// recorded session): the message ends, judged by its size.
    public mutating func receiveMessage(octets: Int) -> Response {
        // Accepted or refused, the transaction ends: there is nothing to follow.
        self.beforeLast = nil
        return self.endMessage(octets: max(octets, 0), chunked: false)
    }

    /// The end of a message: queued, or refused as too big. `chunked`: the
    /// end of a BDAT message, acknowledged with its size as Postfix does.
    private mutating func endMessage(octets: Int, chunked: Bool) -> Response {
        self.state = .command
        let transaction = self.facts.transaction
        self.facts.transaction = nil
        self.facts.chunked = nil
        if octets > self.policy.limits.messageSize {
            self.facts.errors += 1
            return self.refuse(.messageTooBig)
        }
        self.facts.messages += 1
        let queueID = self.configuration.queueIDs.id(self.facts.messages)
        var response = self.accept(AcceptedReplies.queued(queueID, octets: chunked ? octets : nil))
        response.accepted = AcceptedMessage(
            queueID: queueID, sender: transaction?.sender ?? "", recipients: transaction?.recipients ?? [], octets: octets,
            heloName: self.facts.helo?.name, clientAddress: self.facts.clientAddress, authenticatedUser: self.facts.authenticatedUser)
        return response
    }

    /// Gives up the message in progress without an answer (a server that
    /// reads BDAT as DATA, when a command other than BDAT follows a chunk).
    public mutating func abandonMessage() {
        guard case .message = self.state else { return }
        self.state = .command
        self.facts.transaction = nil
        self.facts.chunked = nil
    }

    /// BDAT size [LAST] (RFC 3030): the chunk that follows is read whatever
    /// the verdict, which comes once it is in. Arguments that do not parse
    /// announce no chunk.
    mutating func bdat(_ command: SMTPCommand, refusal due: RuleID?) -> Response {
        let parts = command.argument.split(separator: " ")
        guard let first = parts.first, first.allSatisfy({ $0 >= "0" && $0 <= "9" }), let size = Int(first), parts.count <= 2,
            parts.count == 1 || parts[1].uppercased() == "LAST"
        else { return self.refuse(.commandSyntax, ["verb": "BDAT chunk-size [LAST]"]) }
        var refusal = due
        if refusal != nil {
        } else if self.facts.transaction == nil {
            refusal = .needMail
        } else if self.facts.transaction?.recipients.isEmpty == true {
            refusal = .noRecipients
        }
        if self.facts.chunked == nil { self.facts.chunked = 0 }
        self.state = .chunk(Chunk(remaining: size, size: size, last: parts.count == 2, refusal: refusal))
        if size == 0 { return self.receiveChunk(octets: 0) }
        var response = Response()
        response.readChunk = size
        return response
    }

    /// Octets of the BDAT chunk in progress.
    public mutating func receiveChunk(_ bytes: [UInt8]) -> Response {
        var response = self.receiveChunk(octets: bytes.count)
        response.data = bytes
        return response
    }

    /// `octets` of the BDAT chunk in progress, without the octets themselves
    /// (a recorded session).
    public mutating func receiveChunk(octets: Int) -> Response {
        guard case .chunk(var chunk) = self.state else { return Response() }
        let taken = min(max(octets, 0), chunk.remaining)
        chunk.remaining -= taken
        if chunk.refusal == nil { self.facts.chunked = (self.facts.chunked ?? 0).addingReportingOverflow(taken).partialValue }
        guard chunk.remaining == 0 else {
            self.state = .chunk(chunk)
            return Response()
        }
        self.state = .command
        let response: Response
        if let refusal = chunk.refusal {
            self.facts.chunked = nil
            if chunk.last { self.facts.transaction = nil }
            response = self.countingErrors(self.refuse(refusal))
        } else if chunk.last {
            response = self.endMessage(octets: max(self.facts.chunked ?? 0, 0), chunked: true)
        } else {
            response = self.accept(SMTPReply(.ok, EnhancedStatusCode(2, 0, 0), "Ok: \(chunk.size) bytes"))
        }
        // The BDAT command is answered now, once its chunk is in.
        self.beforeLast?.accepted = response.accepts
        return response
    }
}
