import Foundation
import UV
import Metrics

/// One accepted client connection speaking HTTP/1.1: parses requests in order, hands each to the
/// handler as an `Exchange`, and keeps the connection alive between them.
public final class ServerConnection {
    enum State {
        case waitingHead
        case readingBody
        case awaitingResponse
        case tunnel
        case closed
    }

    let socket: ByteStream
    let handler: (Exchange) -> Void
    public let peer: String
    var state: State = .waitingHead
    var inbuf: [UInt8] = []
    var decoder = BodyDecoder(.none)
    var current: Exchange? { didSet { if state != .tunnel { counted(current == nil ? .idle : .active) } } }
    /// How `dfget_connections` counts this connection now: idle, with a request in progress, or not
    /// at all (closed, or handed to a tunnel, which counts itself).
    private var gauge = ConnectionGauge.none
    private let timer = LoopTimer()
    /// Cuts a client that stops taking the bytes queued for it.
    private let writeWatch = LoopTimer()
    private var corked: [UInt8] = []
    private let corkTimer = LoopTimer()
    static let corkLimit = 16 << 10
    private var processing = false
    private var peerClosed = false
    /// Responses are queued beyond the high-water mark: no further request is read or handled
    /// until the client takes them (a pipelining client that never reads cannot grow the worker).
    private var waitingForDrain = false
    /// The header deadline runs from a head's first byte: later bytes do not extend it.
    private var headDeadlineArmed = false
    /// What a draining worker asks of a connection that became a tunnel or a hijacked session.
    public var onDrainWhileDetached: (() -> Void)?
    /// When set, the connection closes after the response in progress (worker drain).
    private(set) var closeAfterResponse = false
    /// Called once when the connection is gone.
    public var onClosed: (() -> Void)?

    public init(socket: ByteStream, handler: @escaping (Exchange) -> Void) {
        self.socket = socket
        self.handler = handler
        self.peer = socket.peerDescription
    }

    public func start() {
        // The worker learns of the end only once the socket is really closed: a close requested
        // after pending writes must not let a draining worker exit with bytes still queued.
        socket.onClose = { [self] in finishClose() }
        (socket as? TCP)?.setNoDelay()
        socket.onDrain = { [weak self] in self?.drained() }
        socket.onWriteError = { [weak self] _ in self?.abortConnection() }
        socket.startReading { [weak self] ev in self?.onRead(ev) }
        counted(.idle)
        armTimer()
        let tick = max(250, Limits.writeTimeoutMs / 4)
        writeWatch.start(ms: tick, repeatMs: tick) { [weak self] in self?.checkWriteProgress() }
    }

    private func closeTimers() {
        timer.close()
        writeWatch.close()
        corkTimer.close()
    }

    private func drained() {
        guard waitingForDrain else {
            current?.onWritable?()
            return
        }
        waitingForDrain = false
        if !peerClosed { socket.resumeReading() }
        process()
    }

    private func checkWriteProgress() {
        guard state != .closed, socket.writeQueueSize > 0,
              EventLoop.nowMs &- socket.lastWriteProgressMs > Limits.writeTimeoutMs else { return }
        Log.shared.info("client write timeout", ["peer": peer, "queued": socket.writeQueueSize])
        abortConnection()
    }

    public var isIdle: Bool { state == .waitingHead && inbuf.isEmpty }

    /// Worker drain: close now if idle, else after the response in progress.
    public func drain() {
        closeAfterResponse = true
        if state == .tunnel { onDrainWhileDetached?() }
        if isIdle { close() }
    }

    private func armTimer() {
        guard state == .waitingHead, !waitingForDrain else {
            timer.stop()
            headDeadlineArmed = false
            return
        }
        if inbuf.isEmpty {
            headDeadlineArmed = false
            timer.start(ms: Limits.keepAliveTimeoutMs) { [weak self] in self?.close() }
        } else if !headDeadlineArmed {
            headDeadlineArmed = true
            timer.start(ms: Limits.headerTimeoutMs) { [weak self] in
                guard let self else { return }
                Log.shared.info("request head timeout", ["peer": peer])
                respondError(408, "request head not received in time")
            }
        }
    }

    private func onRead(_ ev: ReadEvent) {
        switch ev {
        case .data(let b):
            if state == .readingBody && inbuf.isEmpty {
                feedBody(b)
            } else if state == .tunnel || state == .closed {
                return
            } else {
                inbuf.append(contentsOf: b)
            }
            process()
        case .eof:
            peerClosed = true
            switch state {
            case .waitingHead:
                if inbuf.isEmpty { close() } else { respondError(400, "connection closed inside a request head") }
            case .readingBody:
                if decoder.finishAtEOF() { bodyComplete() } else { abortConnection() }
            case .awaitingResponse, .tunnel, .closed:
                break
            }
        case .error:
            abortConnection()
        }
    }

    /// Feeds request body bytes to the decoder; keeps what follows the body for the next request.
    private func feedBody(_ b: UnsafeRawBufferPointer) {
        let used: Int
        do {
            used = try decoder.decode(b) { current?.deliverBody($0) }
        } catch let e as HTTPParseError {
            Log.shared.info("bad request body", ["peer": peer, "reason": e.reason])
            abortConnection()
            return
        } catch { return }
        if used < b.count { inbuf.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[used...])) }
        if decoder.isDone { bodyComplete() }
    }

    private func bodyComplete() {
        guard state == .readingBody else { return }
        state = .awaitingResponse
        current?.deliverBodyEnd()
    }

    private func process() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        while true {
            switch state {
            case .waitingHead:
                if waitingForDrain { return }
                if inbuf.isEmpty { armTimer(); return }
                let result = inbuf.withUnsafeBytes { HeadParser.parseRequest($0) }
                switch result {
                case .needMore:
                    armTimer()
                    return
                case .failed(let e):
                    Log.shared.info("bad request", ["peer": peer, "status": e.status, "reason": e.reason])
                    respondError(e.status, e.reason)
                    return
                case .complete(let head, let consumed):
                    inbuf.removeFirst(consumed)
                    begin(head)
                }
            case .readingBody:
                guard !inbuf.isEmpty, current?.bodyPaused != true else { return }
                let pending = inbuf
                inbuf.removeAll(keepingCapacity: true)
                pending.withUnsafeBytes { feedBody($0) }
                if state == .readingBody { return }
            case .awaitingResponse:
                if inbuf.count > Limits.pipelineBuffer { socket.stopReading() }
                return
            case .tunnel, .closed:
                return
            }
        }
    }

    private func begin(_ head: HTTPRequestHead) {
        let framing: BodyFraming
        do {
            framing = try Framing.request(head)
        } catch let e as HTTPParseError {
            Log.shared.info("bad request", ["peer": peer, "status": e.status, "reason": e.reason, "url": head.target])
            respondError(e.status, e.reason)
            return
        } catch { return }
        timer.stop()
        headDeadlineArmed = false
        decoder = BodyDecoder(framing)
        let exchange = Exchange(request: head, connection: self, hasBody: framing != .none)
        current = exchange
        state = framing == .none ? .awaitingResponse : .readingBody
        if framing != .none, head.headers.first("Expect")?.lowercased() == "100-continue" {
            write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        handler(exchange)
    }

    // MARK: - Called by the exchange

    func pauseBody() { socket.stopReading() }

    func resumeBody() {
        guard state == .readingBody || state == .awaitingResponse else { return }
        if !inbuf.isEmpty && state == .readingBody { process() }
        if inbuf.count <= Limits.pipelineBuffer && !peerClosed { socket.resumeReading() }
    }

    /// Small writes of one turn of the loop go out in one system call and one segment (a response
    /// head and a small body together; several pipelined answers): they wait here until a bigger
    /// write, an end of the connection, or the loop's next turn (a 0 ms timer), whichever is first.
    func write(_ b: UnsafeRawBufferPointer) {
        if b.count <= ServerConnection.corkLimit, corked.count + b.count <= 4 * ServerConnection.corkLimit {
            if corked.isEmpty { corkTimer.start(ms: 0) { [weak self] in self?.flushWrites() } }
            corked.append(contentsOf: b)
            return
        }
        flushWrites()
        socket.write(b)
    }

    func write(_ b: [UInt8]) { b.withUnsafeBytes { write($0) } }

    func flushWrites() {
        guard !corked.isEmpty else { return }
        corkTimer.stop()
        socket.write(corked)
        corked.removeAll(keepingCapacity: true)
    }
    var isWriteBlocked: Bool { socket.isWriteBlocked }

    /// The response is complete: keep the connection for the next request or close it.
    func finished(_ exchange: Exchange, reusable: Bool) {
        guard current === exchange else { return }
        current = nil
        let keep = reusable && state == .awaitingResponse && exchange.request.wantsKeepAlive && !closeAfterResponse && !peerClosed
        guard keep else {
            state = .closed
            flushWrites()
            socket.closeAfterWrites()
            return
        }
        state = .waitingHead
        if socket.isWriteBlocked {
            waitingForDrain = true
            socket.stopReading()
            return
        }
        if !peerClosed { socket.resumeReading() }
        process()
    }

    /// Gives the socket to a tunnel (CONNECT): the connection stops speaking HTTP.
    func detachForTunnel() -> (ByteStream, [UInt8]) {
        flushWrites()
        state = .tunnel
        timer.stop()
        socket.stopReading()
        socket.onDrain = nil
        socket.onWriteError = nil
        let rest = inbuf
        inbuf = []
        current = nil
        counted(.none)
        closeTimers()
        // The tunnel owns the socket now; this object only reports its end to the worker.
        return (socket, rest)
    }

    /// Answers a protocol error and closes: the worker carries on.
    func respondError(_ status: Int, _ reason: String) {
        guard state != .closed, state != .tunnel else { return }
        if let ex = current, ex.headSent {
            abortConnection()
            return
        }
        let body = reason + "\n"
        var head = HTTPResponseHead(status: status)
        head.headers.add("Content-Type", "text/plain; charset=utf-8")
        head.headers.add("Content-Length", String(body.utf8.count))
        head.headers.add("Connection", "close")
        flushWrites()
        socket.write(head.serialized() + Array(body.utf8))
        if let ex = current {
            ex.status = status
            ex.logAccess(bytes: 0)
        }
        current = nil
        state = .closed
        socket.closeAfterWrites()
    }

    /// Drops the connection at once with a reset: the client never mistakes a cut body for a clean end.
    func abortConnection() {
        guard state != .closed else { return }
        let ex = current
        current = nil
        state = .closed
        ex?.connectionAborted()
        socket.closeWithReset()
        closeTimers()
    }

    public func close() {
        flushWrites()
        if state != .tunnel { state = .closed }
        current?.connectionAborted()
        current = nil
        socket.close()
        closeTimers()
    }

    private func finishClose() {
        counted(.none)
        closeTimers()
        let cb = onClosed
        onClosed = nil
        cb?()
    }

    private func counted(_ g: ConnectionGauge) {
        guard g != gauge else { return }
        if let s = gauge.scalar { Metrics.gauge(s, -1) }
        if let s = g.scalar { Metrics.gauge(s, 1) }
        gauge = g
    }
}

enum ConnectionGauge {
    case none, idle, active
    var scalar: Scalar? {
        switch self {
        case .none: return nil
        case .idle: return .connectionsIdle
        case .active: return .connectionsActive
        }
    }
}
