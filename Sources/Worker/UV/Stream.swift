internal import CUV
import Glibc

public enum ReadEvent {
    /// Valid only during the callback.
    case data(UnsafeRawBufferPointer)
    case eof
    case error(any Error)
}


/// A libuv stream (TCP socket or pipe) with queued writes.
public class UVStream: UVHandle {
    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }
    /// One read buffer for every stream of the loop. libuv runs alloc → read → read callback in
    /// sequence on the loop thread, and no read callback keeps the pointer past its return (data is
    /// copied into a parser buffer or a write request), so sharing it is safe and makes its size free
    /// per connection. Large reads mean fewer wake-ups per MiB relayed.
    private let readBuffer = EventLoop.context.scratch(for: UVStream.self, bytes: 1024 * 1024)
    private var onRead: ((ReadEvent) -> Void)?
    public private(set) var isReading = false
    /// Called after a queued write completes and the queue has drained below `lowWater`.
    public var onDrain: (() -> Void)?
    /// Called once if a queued write fails (the peer is gone); the owner decides what to close.
    public var onWriteError: ((any Error) -> Void)?
    public var lowWater = UVStream.defaultLowWater
    public static let defaultLowWater = 64 * 1024
    public var highWater = 256 * 1024

    override func willClose() {
        onRead = nil
        onDrain = nil
        onWriteError = nil
    }

    public var writeQueueSize: Int { uv_stream_get_write_queue_size(stream) }
    /// When the peer last took bytes (a write completed): a write timeout watches it.
    public private(set) var lastWriteProgressMs: UInt64 = EventLoop.nowMs
    /// True when the owner should stop producing until `onDrain`.
    public var isWriteBlocked: Bool { writeQueueSize > highWater }

    public func startReading(_ cb: @escaping (ReadEvent) -> Void) {
        onRead = cb
        resumeReading()
    }

    public func resumeReading() {
        guard !isReading, !isClosing, onRead != nil else { return }
        isReading = true
        uv_read_start(stream, { h, _, buf in
            let b = unsafeDowncast(UVHandle.owner(h!), to: UVStream.self).readBuffer
            buf!.pointee = uv_buf_init(b.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(b.count))
        }, { h, nread, _ in
            let s = UVHandle.owner(h!) as! UVStream
            s.deliver(nread)
        })
    }

    func deliver(_ nread: Int) {
        if nread > 0 {
            onRead?(.data(UnsafeRawBufferPointer(rebasing: readBuffer[0..<nread])))
        } else if nread == Int(UVError.eof) {
            stopReading()
            onRead?(.eof)
        } else if nread < 0 {
            stopReading()
            onRead?(.error(UVError(Int32(nread))))
        }
    }

    public func stopReading() {
        guard isReading, !isClosing else { return }
        isReading = false
        uv_read_stop(stream)
    }

    /// Writes all of `bytes`: synchronously when the socket takes them, else a copy is queued.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !isClosing, bytes.count > 0 else { return }
        var offset = 0
        if writeQueueSize == 0 {
            var b = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
            let n = uv_try_write(stream, &b, 1)
            if n > 0 { lastWriteProgressMs = EventLoop.nowMs }
            if n == Int32(bytes.count) { return }
            if n > 0 { offset = Int(n) }
            else if n != UV_EAGAIN.rawValue && n != UV_ENOSYS.rawValue {
                writeFailed(UVError(n))
                return
            }
        }
        queueWrite(UnsafeRawBufferPointer(rebasing: bytes[offset...]), sendHandle: nil, completion: nil)
    }

    /// The socket's descriptor (nil when it has none yet, or is closing).
    public var fileDescriptor: Int32? {
        var fd: uv_os_fd_t = -1
        guard !isClosing, uv_fileno(handle, &fd) == 0 else { return nil }
        return fd
    }

    /// What `sendFile` did.
    public enum FileSend: Equatable {
        /// These many bytes went from the file to the socket, in the kernel.
        case sent(Int)
        /// The socket is full: nothing sent.
        case full
        /// Queued bytes must go first: wait for `onDrain` with `lowWater` 0.
        case queueBusy
        /// Not possible here (an error): copy the bytes instead, which reports any socket error.
        case unavailable
    }

    /// Sends `count` bytes of file `fd` from `offset` with sendfile(2), when nothing is queued
    /// before them (bytes must go out in order).
    public func sendFile(_ fd: Int32, offset: Int64, count: Int) -> FileSend {
        guard !isClosing, count > 0 else { return .unavailable }
        guard writeQueueSize == 0 else { return .queueBusy }
        guard let sock = fileDescriptor else { return .unavailable }
        var off = off_t(offset)
        let n = Glibc.sendfile(sock, fd, &off, count)
        if n > 0 {
            lastWriteProgressMs = EventLoop.nowMs
            return .sent(n)
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? .full : .unavailable
    }

    /// Queues a copy of `bytes` (and, on IPC pipes, a handle to send) and calls `completion` with the status.
    func queueWrite(_ bytes: UnsafeRawBufferPointer, sendHandle: UVStream?, completion: ((Int32) -> Void)?) {
        let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
        copy.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        let req = UVRequest<(UVStream, UnsafeMutableRawPointer, ((Int32) -> Void)?)>(type: UV_WRITE, state: (self, copy, completion))
        var buf = uv_buf_init(copy.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let cb: uv_write_cb = { r, status in
            let req = UVRequest<(UVStream, UnsafeMutableRawPointer, ((Int32) -> Void)?)>.take(r!)
            let (s, copy, completion) = req.state
            copy.deallocate()
            completion?(status)
            if status < 0 {
                if status != UVError.canceled { s.writeFailed(UVError(status)) }
            } else {
                s.lastWriteProgressMs = EventLoop.nowMs
                if s.writeQueueSize <= s.lowWater { s.onDrain?() }
            }
        }
        let rc: Int32
        if let h = sendHandle {
            rc = uv_write2(req.pointer(uv_write_t.self), stream, &buf, 1, h.stream, cb)
        } else {
            rc = uv_write(req.pointer(uv_write_t.self), stream, &buf, 1, cb)
        }
        if rc < 0 {
            _ = UVRequest<(UVStream, UnsafeMutableRawPointer, ((Int32) -> Void)?)>.take(req.pointer(uv_write_t.self))
            copy.deallocate()
            completion?(rc)
            writeFailed(UVError(rc))
        }
    }

    private func writeFailed(_ e: UVError) {
        let cb = onWriteError
        onWriteError = nil
        cb?(e)
    }

    /// Half-close: the write side shuts down once queued writes are flushed.
    public func shutdown(_ completion: ((Int32) -> Void)? = nil) {
        guard !isClosing else { return }
        let req = UVRequest<((Int32) -> Void)?>(type: UV_SHUTDOWN, state: completion)
        let rc = uv_shutdown(req.pointer(uv_shutdown_t.self), stream) { r, status in
            UVRequest<((Int32) -> Void)?>.take(r!).state?(status)
        }
        if rc < 0 {
            UVRequest<((Int32) -> Void)?>.take(req.pointer(uv_shutdown_t.self)).state?(rc)
        }
    }

    /// Flushes what is queued, sends FIN, then closes.
    public func closeAfterWrites() {
        guard !isClosing else { return }
        stopReading()
        shutdown { [weak self] _ in self?.close() }
    }
}
