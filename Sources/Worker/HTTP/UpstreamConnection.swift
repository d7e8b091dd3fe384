import UV

/// One HTTP/1.1 connection to an origin, used for one request at a time and then returned to the pool.
package final class UpstreamConnection {
    let key: String
    let socket: ByteStream
    let remote: String
    var reused = false
    private var method = "GET"
    private var inbuf: [UInt8] = []
    private var head: HTTPResponseHead?
    private var decoder = BodyDecoder(.none)
    private var requestChunked = false
    private var state = UpstreamState.idle
    private var keepAlive = true
    var responseStarted: Bool { state.responseStarted }

    var onHead: ((HTTPResponseHead, BodyFraming) -> Void)?
    var onBody: ((UnsafeRawBufferPointer) -> Void)?
    var onEnd: (() -> Void)?
    /// The connection failed; `afterResponseStarted` tells whether the client already has a head.
    var onError: ((UpstreamError) -> Void)?
    /// Closed or misbehaving while idle in the pool.
    var onIdleClose: (() -> Void)?

    init(key: String, socket: ByteStream, remote: String) {
        self.key = key
        self.socket = socket
        self.remote = remote
    }

    /// Fires when the origin sends nothing for `Limits.upstreamIdleMs` while a response is awaited or
    /// read (not while the reader is paused by a slow client).
    private var idleTimer: LoopTimer?

    private func armIdle() {
        if idleTimer == nil { idleTimer = LoopTimer() }
        idleTimer?.start(ms: Limits.upstreamIdleMs) { [weak self] in
            guard let self else { return }
            fail(.silent(remote, seconds: Limits.upstreamIdleMs / 1000))
        }
    }

    private func disarmIdle() { idleTimer?.stop() }

    package var isWriteBlocked: Bool { socket.isWriteBlocked }
    package var onDrain: (() -> Void)? {
        get { socket.onDrain }
        set { socket.onDrain = newValue }
    }

    /// Sends a request head; the body (if any) follows with `sendBody`/`endBody`.
    func send(_ request: HTTPRequestHead, bodyFraming: BodyFraming) {
        method = request.method
        head = nil
        inbuf.removeAll(keepingCapacity: true)
        state = .awaitingHead
        keepAlive = true
        requestChunked = bodyFraming == .chunked
        socket.onWriteError = { [weak self] e in guard let self else { return }
            fail(.writeFailed(remote, reason: "\(e)")) }
        socket.write(request.serialized())
        socket.startReading { [weak self] ev in self?.onRead(ev) }
        armIdle()
    }

    package func sendBody(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        if requestChunked {
            ChunkedEncoder.write(b, to: socket)
        } else {
            socket.write(b)
        }
    }

    package func endBody() {
        if requestChunked { socket.write(ChunkedEncoder.last) }
    }

    func pauseReading() {
        socket.stopReading()
        disarmIdle()
    }

    func resumeReading() {
        socket.resumeReading()
        if state.expectsData { armIdle() }
    }

    private func onRead(_ ev: ReadEvent) {
        switch ev {
        case .data(let b):
            armIdle()
            if head == nil {
                inbuf.append(contentsOf: b)
                parseHead()
            } else {
                feed(b)
            }
        case .eof:
            if head != nil, decoder.finishAtEOF() {
                keepAlive = false
                complete()
            } else {
                fail(head == nil ? .closedBeforeResponse(remote) : .closedMidBody(remote))
            }
        case .error(let e):
            fail(.readFailed(remote, reason: "\(e)"))
        }
    }

    private func parseHead() {
        while head == nil {
            let r = inbuf.withUnsafeBytes { HeadParser.parseResponse($0) }
            switch r {
            case .needMore:
                if inbuf.count > HeadParser.maxHeadSize { fail(.headTooLarge(remote)) }
                return
            case .failed(let e):
                fail(.malformedHead(remote, reason: e.reason))
                return
            case .complete(let h, let consumed):
                inbuf.removeFirst(consumed)
                if h.status >= 100 && h.status < 200 && h.status != 101 { continue }  // interim responses
                let framing: BodyFraming
                do { framing = try Framing.response(h, requestMethod: method) } catch {
                    fail(.malformedFraming(remote))
                    return
                }
                head = h
                state = .body
                decoder = BodyDecoder(framing)
                keepAlive = UpstreamState.keepAlive(h, framing: framing)
                onHead?(h, framing)
                guard !state.isBroken else { return }
                let rest = inbuf
                inbuf = []
                if decoder.isDone { complete() } else if !rest.isEmpty { rest.withUnsafeBytes { feed($0) } }
            }
        }
    }

    private func feed(_ b: UnsafeRawBufferPointer) {
        guard !decoder.isDone else { return }
        do {
            let used = try decoder.decode(b) { onBody?($0) }
            if used < b.count { keepAlive = false }  // bytes beyond the response: do not reuse
        } catch {
            fail(.malformedBody(remote))
            return
        }
        if decoder.isDone { complete() }
    }

    private func complete() {
        disarmIdle()
        if !state.isBroken { state = .idle }
        let end = onEnd
        clearCallbacks()
        end?()
    }

    /// Whether the connection can serve another request.
    var isReusable: Bool { keepAlive && state == .idle && !socket.isClosing }

    private func fail(_ reason: UpstreamError) {
        guard state.fail() else { return }
        idleTimer?.close()
        idleTimer = nil
        let cb = onError
        let idle = onIdleClose
        clearCallbacks()
        socket.close()
        cb?(reason)
        idle?()
    }

    /// Parks the connection: any byte or EOF while idle means it can't be reused.
    func park(onClose: @escaping () -> Void) {
        onIdleClose = onClose
        socket.startReading { [weak self] _ in guard let self else { return }
            fail(.idleClosed(remote)) }
        socket.resumeReading()
    }

    func unpark() {
        onIdleClose = nil
        socket.stopReading()
        reused = true
    }

    func close() {
        _ = state.fail()
        idleTimer?.close()
        idleTimer = nil
        clearCallbacks()
        socket.close()
    }

    private func clearCallbacks() {
        onHead = nil
        onBody = nil
        onEnd = nil
        onError = nil
        socket.onDrain = nil
        socket.onWriteError = nil
    }
}
