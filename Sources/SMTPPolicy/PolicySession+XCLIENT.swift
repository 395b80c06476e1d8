import SMTPProtocol

extension PolicySession {
    /// XCLIENT (Postfix): an authorised proxy names the client it speaks for;
    /// the session starts again, greeting included, as that client's.
    mutating func xclient(_ command: SMTPCommand) -> Response {
        guard self.peerMayUseXCLIENT else { return self.refuse(.xclientDenied) }
        guard self.facts.transaction == nil else { return self.refuse(.authInTransaction) }
        let syntax = ["verb": "XCLIENT attribute=value ..."]
        var attributes: [String: String] = [:]
        for pair in command.argument.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return self.refuse(.commandSyntax, syntax) }
            attributes[parts[0].uppercased()] = String(parts[1])
        }
        guard !attributes.isEmpty else { return self.refuse(.commandSyntax, syntax) }
        if let address = attributes["ADDR"] {
            let plain = address.uppercased().hasPrefix("IPV6:") ? String(address.dropFirst(5)) : address
            guard plain == "[UNAVAILABLE]" || IPAddressText.ipv4(plain) != nil || IPAddressText.ipv6(plain) != nil else {
                return self.refuse(.commandSyntax, ["verb": "XCLIENT ADDR=address"])
            }
            self.facts.clientAddress = plain == "[UNAVAILABLE]" ? nil : plain
            self.facts.clientIsTrusted = self.facts.clientAddress.map(self.policy.isTrusted(address:)) ?? false
        }
        self.facts.helo = attributes["HELO"].flatMap { $0 == "[UNAVAILABLE]" ? nil : Helo(name: $0, deferred: nil) }
        self.facts.pipeliningOffered = false  // as after a new connection
        self.facts.authenticatedUser = attributes["LOGIN"].flatMap { $0 == "[UNAVAILABLE]" ? nil : $0 }
        return self.accept(self.greeting)
    }
}
