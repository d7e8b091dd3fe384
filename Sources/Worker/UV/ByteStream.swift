/// A connected byte stream as the HTTP code sees it: a TCP socket, or TLS over one.
public protocol ByteStream: AnyObject {
    func startReading(_ cb: @escaping (ReadEvent) -> Void)
    func stopReading()
    func resumeReading()
    func write(_ bytes: UnsafeRawBufferPointer)
    /// True when the producer should pause until `onDrain`.
    var isWriteBlocked: Bool { get }
    /// Bytes queued for the peer, and when it last took some (for write timeouts).
    var writeQueueSize: Int { get }
    var lastWriteProgressMs: UInt64 { get }
    var onDrain: (() -> Void)? { get set }
    var onWriteError: ((any Error) -> Void)? { get set }
    /// Called once when the underlying socket is closed.
    var onClose: (() -> Void)? { get set }
    var isClosing: Bool { get }
    /// Flushes queued bytes, ends the stream cleanly, then closes.
    func closeAfterWrites()
    func close()
    /// Closes at once with a reset: the peer cannot mistake it for a clean end.
    func closeWithReset()
    var peerDescription: String { get }
}

extension ByteStream {
    public func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }
    public func write(_ string: String) { write(Array(string.utf8)) }
}

extension TCP: ByteStream {
    public var peerDescription: String { peerAddress?.description ?? "?" }
}
