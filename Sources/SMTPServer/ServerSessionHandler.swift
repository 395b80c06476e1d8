import NIOCore
import NIOSSL
import NIOTLS
import SMTPCodec
import SMTPPolicy
import SMTPProtocol

/// Carries out a ``PolicySession``'s responses on one connection: writes
/// the replies, times the greeting and idle clients out, upgrades to TLS,
/// stores accepted messages, and plays the server's deliberate faults.
final class ServerSessionHandler: ChannelInboundHandler {
    typealias InboundIn = FramedInput
    typealias OutboundOut = ByteBuffer

    private let pipeline: SessionPipeline
    private var session: PolicySession
    private let framing: LineFramingHandler
    private var faults: ServerFaults { self.pipeline.configuration.faults }
    private var idleTask: Scheduled<Void>?
    /// When the session times out unless the client says something first.
    /// Activity moves it; the one scheduled check looks at it when it fires
    /// (a timer re-armed at every line cost a task and a wake-up a line).
    private var idleDeadline = NIODeadline.distantFuture
    /// Armed when a line begins and cancelled when it ends: `command_timeout`.
    private var lineTask: Scheduled<Void>?
    /// The greeting held back by a greeting pause.
    private var greetTask: Scheduled<Void>?
    private var closing = false
    /// The connection is gone: no timer is armed any more. A timer's task
    /// holds this handler (and through it the channel) until it runs, so
    /// one left behind would keep a closed session for up to `idle_timeout`.
    private var inactive = false
    /// Between the 220 to STARTTLS and the end of the handshake: lines that
    /// arrive then were pipelined in plaintext behind STARTTLS.
    private var awaitingHandshake = false
    /// What a server with the injection bug keeps to answer inside TLS.
    private var injected: [LineFramer.Line] = []
    /// Set until the greeting has gone out; lines before it are early talk.
    private var greeted = false
    private var early: [LineFramer.Line] = []
    /// On a PROXY listener the session is made, and the greeting sent, once
    /// the header names the client.
    private var waitsForProxyHeader: Bool
    /// The message being received, for the store.
    private var incoming: IncomingMessage?
    /// A BDAT message read as DATA lines (the smuggling fault).
    private var translation: ChunkTranslation?

    /// For the session's summary: when it began, the rules that fired, how it ended.
    private let started = NIODeadline.now()
    private var firedRules: [RuleID] = []
    private var outcome: String?
    private var summarized = false
    /// The last HELO or EHLO name the client gave, accepted or not.
    private var heloAttempt: String?

    init(pipeline: SessionPipeline, session: PolicySession, framing: LineFramingHandler, waitsForProxyHeader: Bool) {
        self.pipeline = pipeline
        self.session = session
        self.framing = framing
        self.waitsForProxyHeader = waitsForProxyHeader
    }

    func channelActive(context: ChannelHandlerContext) {
        if !self.waitsForProxyHeader { self.greet(context: context) }
        context.fireChannelActive()
    }

    private func greet(context: ChannelHandlerContext) {
        let pause = self.session.policy.limits.greetPauseMilliseconds
        guard pause > 0 else {
            self.sendGreeting(context: context)
            return
        }
        guard !self.inactive else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.greetTask = context.eventLoop.scheduleTask(in: .milliseconds(Int64(pause))) {
            let (handler, context) = loopBound.value
            handler.greetTask = nil
            guard !handler.closing else { return }
            handler.sendGreeting(context: context)
        }
    }

    private func sendGreeting(context: ChannelHandlerContext) {
        self.greeted = true
        self.write([self.session.greeting], context: context)
        self.armIdleTimer(context: context)
        // What the client said before the greeting is answered now, in order.
        let early = self.early
        self.early = []
        for line in early where !self.closing { self.process(line, context: context, followed: true) }
    }

    /// Hands the session's summary to the server's `sessionEnded`, once.
    private func summarize(context: ChannelHandlerContext) {
        guard !self.summarized, let report = self.pipeline.configuration.sessionEnded else { return }
        self.summarized = true
        let facts = self.session.facts
        let identity = facts.authenticatedUser != nil ? "authenticated" : facts.clientIsTrusted ? "trusted" : "external"
        let remote = context.channel.remoteAddress
        let peer = remote.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        // Behind a PROXY header the policy judged the client it names.
        let proxied = facts.clientAddress.flatMap { $0 == remote?.ipAddress ? nil : $0 }
        report(
            SessionSummary(
                client: proxied ?? peer, peer: proxied == nil ? nil : peer, identity: identity, user: facts.authenticatedUser,
                helo: facts.helo?.name ?? self.heloAttempt, tls: facts.tlsActive, rules: self.firedRules, messages: facts.messages,
                outcome: self.outcome ?? "closed by the client",
                seconds: Double((NIODeadline.now() - self.started).nanoseconds) / 1e9))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.summarize(context: context)
        self.inactive = true
        for task in [self.idleTask, self.lineTask, self.greetTask] { task?.cancel() }
        self.idleTask = nil
        self.lineTask = nil
        self.greetTask = nil
        context.fireChannelInactive()
    }

    /// A line begun and not ended when the read is done starts the line's
    /// clock (once: from its first octets, not its last).
    private func armLineTimer(context: ChannelHandlerContext) {
        if !self.closing, !self.inactive, self.lineTask == nil, self.framing.hasPartialLine {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.lineTask = context.eventLoop.scheduleTask(in: .seconds(Int64(self.session.policy.limits.commandTimeout))) {
                let (handler, context) = loopBound.value
                guard !handler.closing else { return }
                handler.handle(handler.session.idleTimeout(), context: context)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        let input = self.unwrapInboundIn(data)
        if case .line = input {
            self.lineTask?.cancel()
            self.lineTask = nil
        }
        switch input {
        case .chunk(let bytes):
            if self.translation != nil {
                self.translateChunk(bytes, context: context)
            } else {
                self.handle(self.session.receiveChunk(bytes), context: context)
            }
        case .line(let line):
            if !self.greeted {
                if self.early.isEmpty { self.session.receivedBeforeGreeting() }
                self.early.append(line)
            } else if self.awaitingHandshake {
                // RFC 3207 6: plaintext pipelined behind STARTTLS is discarded.
                if self.faults.contains(.starttlsInjection) { self.injected.append(line) }
            } else {
                self.process(line, context: context, followed: self.framing.hasBufferedLine)
            }
        }
    }

    private func process(_ line: LineFramer.Line, context: ChannelHandlerContext, followed: Bool = false) {
        if self.translation != nil && SMTPCommand(line: line.bytes).verb != .bdat {
            // Between chunks read as DATA, any other command ends the message unfinished.
            self.translation = nil
            self.session.abandonMessage()
        }
        if case .command = self.session.state, let faulty = self.faultyCommand(line, context: context) {
            if faulty { self.armIdleTimer(context: context) }
            return
        }
        if self.translation != nil, let faulty = self.faultyCommand(line, context: context) {
            if faulty { self.armIdleTimer(context: context) }
            return
        }
        if case .message = self.session.state, self.faults.contains(.smugglingDiscard), line.findings.contains(.bareLF),
            self.endAtFalseEnd(line.bytes, context: context)
        {
            return
        }
        if case .message = self.session.state, self.faults.contains(.smuggling), !line.findings.isDisjoint(with: [.bareCR, .bareLF]) {
            // A bare CR or LF ends a line here: each piece is a line of its own.
            for piece in ChunkTranslation.pieces(line.bytes) where !self.closing {
                self.handle(self.session.receive(LineFramer.Line(bytes: piece)), context: context)
            }
        } else {
            let command = self.session.state == .command ? SMTPCommand(line: line.bytes) : nil
            if let command, command.verb == .helo || command.verb == .ehlo { self.heloAttempt = command.argument }
            self.handle(self.session.receive(line, followed: followed), context: context, quit: command?.verb == .quit)
        }
        if !self.closing { self.armIdleTimer(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The smuggling-discard fault looks at message text that has no CRLF yet.
        if case .message = self.session.state, self.faults.contains(.smugglingDiscard), !self.closing {
            let pending = self.framing.unconsumed
            let falseEnd = pending.starts(with: [0x2E, 0x0A]) || pending.contains([0x0A, 0x2E, 0x0A])
            if falseEnd { _ = self.endAtFalseEnd(self.framing.discardBuffered(), context: context) }
        }
        self.armLineTimer(context: context)
        context.fireChannelReadComplete()
    }

    /// The smuggling-discard fault: the pieces of `bytes` between bare LFs
    /// are lines; a `.` among them ends the message, and whatever else was
    /// read is dropped. `false` when no piece is a `.`.
    private func endAtFalseEnd(_ bytes: [UInt8], context: ChannelHandlerContext) -> Bool {
        let pieces = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0) }
        guard let end = pieces.firstIndex(of: [0x2E]) else { return false }
        for piece in pieces[...end] where !self.closing {
            self.handle(self.session.receive(LineFramer.Line(bytes: piece)), context: context)
        }
        _ = self.framing.discardBuffered()
        if !self.closing { self.armIdleTimer(context: context) }
        return true
    }

    /// Commands a fault answers its own way; `nil` when none does.
    private func faultyCommand(_ line: LineFramer.Line, context: ChannelHandlerContext) -> Bool? {
        let command = SMTPCommand(line: line.bytes)
        switch command.verb {
        case .vrfy where self.faults.contains(.laxProtocol), .expn where self.faults.contains(.laxProtocol):
            self.write([SMTPReply(.cannotVerify, EnhancedStatusCode(2, 0, 0), command.argument)], context: context)
            return true
        case .xclient where self.faults.contains(.ignoreClientIdentity):
            // The named address is dropped: the proxy stays the client.
            let kept = command.argument.split(separator: " ").filter { !$0.uppercased().hasPrefix("ADDR=") }
            self.handle(
                self.session.receive(LineFramer.Line(bytes: Array("XCLIENT \(kept.joined(separator: " "))".utf8))), context: context)
            return true
        case .bdat where self.faults.contains(.smuggling):
            guard let translation = ChunkTranslation(command) else { return nil }
            self.startTranslation(translation, context: context)
            return true
        default:
            return nil
        }
    }

    /// Carries out a response: message octets to the store, a chunk to read,
    /// the replies, a close, an upgrade.
    private func handle(_ response: PolicySession.Response, context: ChannelHandlerContext, quit: Bool = false) {
        if !response.data.isEmpty {
            if self.incoming == nil { self.incoming = IncomingMessage(keepsData: self.pipeline.store.maildir != nil) }
            self.incoming?.append(response.data)
        }
        if let accepted = response.accepted {
            self.pipeline.store.add(accepted, self.incoming ?? IncomingMessage(keepsData: false))
            self.incoming = nil
        } else if case .command = self.session.state {
            self.incoming = nil
        }
        if let size = response.readChunk, size > 0 { self.framing.expectChunk(size) }
        for rule in response.replies.compactMap(\.rule) where !self.firedRules.contains(rule) { self.firedRules.append(rule) }
        self.write(response.replies.map(\.reply), context: context)
        // The lax server talks on after QUIT.
        if response.close && !(quit && self.faults.contains(.laxProtocol)) {
            let rules = Set(response.replies.compactMap(\.rule))
            self.outcome =
                quit
                ? "quit"
                : rules.contains(.idleTimeout) ? "timed out" : rules.contains(.tooManyErrors) ? "too many errors" : "closed by the server"
            self.closing = true
            self.idleTask?.cancel()
            self.lineTask?.cancel()
            context.close(promise: nil)
            return
        }
        if response.startTLS { self.startTLS(context: context) }
    }

    private func startTLS(context: ChannelHandlerContext) {
        guard let sslContext = self.pipeline.sslContext else { return }
        self.awaitingHandshake = true
        if !self.faults.contains(.starttlsInjection) { _ = self.framing.discardBuffered() }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        do {
            let handshake = try TLSUpgrade.install(
                NIOSSLServerHandler(context: sslContext), on: context.channel, timeout: self.pipeline.configuration.handshakeTimeout)
            handshake.whenSuccess {
                let (handler, context) = loopBound.value
                handler.handshakeCompleted(context: context)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    private func handshakeCompleted(context: ChannelHandlerContext) {
        self.awaitingHandshake = false
        self.session.tlsEstablished()
        let injected = self.injected
        self.injected = []
        for line in injected where !self.closing { self.process(line, context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let proxied = event as? ProxyHeaderHandler.ProxiedClient, self.waitsForProxyHeader {
            self.waitsForProxyHeader = false
            let ignore = self.faults.contains(.ignoreClientIdentity)
            self.session = self.pipeline.makeSession(client: ignore ? proxied.peer : (proxied.address ?? proxied.peer), peer: proxied.peer)
            self.greet(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func write(_ replies: [SMTPReply], context: ChannelHandlerContext) {
        guard !replies.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: 128)
        for reply in replies { reply.writeWire(into: &buffer) }
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func armIdleTimer(context: ChannelHandlerContext) {
        guard !self.inactive else { return }
        self.idleDeadline = context.eventLoop.now + .seconds(Int64(self.session.policy.limits.idleTimeout))
        if self.idleTask == nil { self.scheduleIdleCheck(context: context) }
    }

    /// Fires at the deadline as it stood; where activity moved it, waits again.
    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.idleTask = context.eventLoop.scheduleTask(deadline: self.idleDeadline) {
            let (handler, context) = loopBound.value
            handler.idleTask = nil
            guard !handler.closing, !handler.inactive else { return }
            guard context.eventLoop.now >= handler.idleDeadline else { return handler.scheduleIdleCheck(context: context) }
            handler.handle(handler.session.idleTimeout(), context: context)
        }
    }

    // MARK: - The smuggling fault's BDAT: chunks read as DATA lines

    private func startTranslation(_ chunk: ChunkTranslation, context: ChannelHandlerContext) {
        var chunk = chunk
        if let running = self.translation {
            chunk.refusal = running.refusal
        } else {
            let data = self.session.receive(LineFramer.Line(bytes: Array("DATA".utf8)))
            if !data.accepts { chunk.refusal = data.replies.map(\.reply) }
        }
        self.translation = chunk
        if chunk.size > 0 {
            self.framing.expectChunk(chunk.size)
        } else {
            self.translateChunk([], context: context)
        }
    }

    private func translateChunk(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard var chunk = self.translation else { return }
        let lines = chunk.take(bytes)
        for line in lines where !self.closing { self.handle(self.session.receive(LineFramer.Line(bytes: line)), context: context) }
        guard chunk.remaining == 0 else {
            self.translation = chunk
            return
        }
        if let refusal = chunk.refusal {
            self.write(refusal, context: context)
            self.translation = chunk.last ? nil : chunk
            return
        }
        guard chunk.last else {
            self.translation = chunk
            self.write([SMTPReply(.ok, EnhancedStatusCode(2, 0, 0), "Ok: \(chunk.size) bytes")], context: context)
            return
        }
        self.translation = nil
        if !chunk.pending.isEmpty { self.handle(self.session.receive(LineFramer.Line(bytes: chunk.pending)), context: context) }
        if case .message = self.session.state {
            self.handle(self.session.receive(LineFramer.Line(bytes: [UInt8(ascii: ".")])), context: context)
        }
    }
}
