internal import CUV
import UV

/// TLS over a TCP socket, as a `ByteStream`: the engine does the crypto, this class moves bytes
/// between it and the socket on the loop, with the socket's backpressure.
public final class TLSStream: ByteStream {
    let tcp: TCP
    let engine: TLSEngine
    private var onRead: ((ReadEvent) -> Void)?
    private var reading = false
    private var pumping = false
    private var state = TLSStreamState.idle
    private var handshakeDone: ((TLSError?) -> Void)?
    private var handshakeTimer: LoopTimer?
    public var onClose: (() -> Void)?
    public var onWriteError: ((any Error) -> Void)?
    /// Keeps the object that speaks over this stream alive as long as the socket is open.
    public var owner: AnyObject?
    /// Client streams save their session under this key once it is resumable (tickets arrive with
    /// or after the first response bytes) and again at close.
    var sessionKey: String?
    private var sessionSaved = false

    static let handshakeTimeoutMs: UInt64 = 10_000
    private static let plainSize = 256 * 1024
    /// Decrypted bytes are handed to the reader during the call only, like the socket's reads.
    private let plain = EventLoop.context.scratch(for: TLSStream.self, bytes: TLSStream.plainSize)

    package init(tcp: TCP, ssl: OpaquePointer, server: Bool) {
        self.tcp = tcp
        engine = TLSEngine(ssl: ssl, server: server)
        let prior = tcp.onClose
        // This closure holds the stream until the socket is closed.
        tcp.onClose = { [self] in
            if let key = sessionKey { TLSContexts.saveSession(engine, key: key) }
            prior?()
            let cb = onClose
            onClose = nil
            onRead = nil
            owner = nil
            cb?()
        }
        tcp.onWriteError = { [weak self] e in self?.writeFailed(e) }
    }

    /// Runs the handshake; `initial` are bytes the peer already sent (after a CONNECT head).
    package func handshake(initial: [UInt8] = [], _ done: @escaping (TLSError?) -> Void) {
        state = .handshaking
        handshakeDone = done
        let t = LoopTimer()
        handshakeTimer = t
        t.start(ms: TLSStream.handshakeTimeoutMs) { [weak self] in self?.finishHandshake(.timeout) }
        initial.withUnsafeBytes { engine.feed($0) }
        tcp.startReading { [weak self] ev in self?.onCipher(ev) }
        stepHandshake()
    }

    public var alpn: String? { engine.alpn }
    public var sessionReused: Bool { engine.sessionReused }

    private func stepHandshake() {
        let step = engine.handshake()
        flush()
        switch step {
        case .done: finishHandshake(nil)
        case .needMore: break
        case .failed(let e): finishHandshake(e)
        }
    }

    private func finishHandshake(_ error: TLSError?) {
        guard state.isHandshaking, let done = handshakeDone else { return }
        state = error == nil ? .open(peerClosed: false) : .failed
        handshakeDone = nil
        handshakeTimer?.close()
        handshakeTimer = nil
        if !reading { tcp.stopReading() }
        done(error)
    }

    private func onCipher(_ ev: ReadEvent) {
        switch ev {
        case .data(let b):
            engine.feed(b)
            if state.isHandshaking { stepHandshake() } else { pump() }
        case .eof:
            if state.isHandshaking {
                finishHandshake(.closed)
            } else {
                state = .open(peerClosed: true)
                pump()
            }
        case .error(let e):
            if state.isHandshaking {
                finishHandshake(.handshake("\(e)"))
            } else {
                reading = false
                onRead?(.error(e))
            }
        }
    }

    /// Delivers decrypted bytes while the reader wants them.
    private func pump() {
        guard !pumping else { return }
        pumping = true
        defer { pumping = false }
        while reading && !tcp.isClosing {
            switch TLSStreamState.readAction(engine.read(into: plain), peerClosed: state == .open(peerClosed: true)) {
            case .deliver(let n):
                if !sessionSaved, let key = sessionKey {
                    sessionSaved = true
                    TLSContexts.saveSession(engine, key: key)
                }
                onRead?(.data(UnsafeRawBufferPointer(rebasing: plain[0..<n])))
            case .waitForCiphertext:
                flush()
                return
            case .endOfStream:
                flush()
                reading = false
                onRead?(.eof)
                return
            case .fail(let e):
                reading = false
                onRead?(.error(e))
                return
            }
        }
        flush()
    }

    public func startReading(_ cb: @escaping (ReadEvent) -> Void) {
        onRead = cb
        resumeReading()
    }

    public func resumeReading() {
        guard !reading, !tcp.isClosing, onRead != nil, case .open(let peerClosed) = state else { return }
        reading = true
        pump()
        if reading && !peerClosed { tcp.resumeReading() }
    }

    public func stopReading() {
        reading = false
        tcp.stopReading()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !tcp.isClosing, bytes.count > 0 else { return }
        if let e = engine.write(bytes) {
            writeFailed(e)
            return
        }
        flush()
    }

    private func flush() {
        guard !tcp.isClosing else { return }
        engine.drainOutput { tcp.write($0) }
    }

    private func writeFailed(_ e: any Error) {
        let cb = onWriteError
        onWriteError = nil
        cb?(e)
    }

    public var isWriteBlocked: Bool { tcp.isWriteBlocked }
    public var writeQueueSize: Int { tcp.writeQueueSize }
    public var lastWriteProgressMs: UInt64 { tcp.lastWriteProgressMs }
    public var onDrain: (() -> Void)? {
        get { tcp.onDrain }
        set { tcp.onDrain = newValue }
    }
    public var isClosing: Bool { tcp.isClosing }
    public var peerDescription: String { tcp.peerDescription }

    public func closeAfterWrites() {
        guard !tcp.isClosing else { return }
        engine.shutdown()
        flush()
        tcp.closeAfterWrites()
    }

    public func close() { tcp.close() }
    public func closeWithReset() { tcp.closeWithReset() }
}
