internal import CUV

/// A Unix pipe; with `ipc` it carries socket handles between master and workers (SCM_RIGHTS inside libuv).
public final class Pipe: UVStream {
    public init(ipc: Bool) {
        super.init(type: UV_NAMED_PIPE)
        uv_pipe_init(EventLoop.raw, raw.assumingMemoryBound(to: uv_pipe_t.self), ipc ? 1 : 0)
    }

    var pipe: UnsafeMutablePointer<uv_pipe_t> { raw.assumingMemoryBound(to: uv_pipe_t.self) }

    public func open(fd: Int32) throws { try check(uv_pipe_open(pipe, fd)) }

    /// Sends `tag` with a duplicate of `handle`'s socket; `completion` runs once the kernel has it
    /// (the caller then closes its own copy).
    public func send(tag: UInt8, handle: UVStream, completion: @escaping (Int32) -> Void) {
        var t = tag
        withUnsafeBytes(of: &t) { queueWrite($0, sendHandle: handle, completion: completion) }
    }

    /// Sends `byte` alone (a command on the channel).
    public func send(byte: UInt8, completion: ((Int32) -> Void)? = nil) {
        var t = byte
        withUnsafeBytes(of: &t) { queueWrite($0, sendHandle: nil, completion: completion) }
    }

    public var pendingCount: Int32 { uv_pipe_pending_count(pipe) }

    /// Accepts one received socket handle.
    public func acceptPendingTCP() -> TCP? {
        guard pendingCount > 0, uv_pipe_pending_type(pipe) == UV_TCP else { return nil }
        let client = TCP()
        if uv_accept(stream, client.stream) != 0 {
            client.close()
            return nil
        }
        return client
    }
}
