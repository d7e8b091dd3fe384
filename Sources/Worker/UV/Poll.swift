internal import CUV

/// A descriptor watched for readable and writable (uv_poll): for sockets a relay owns outright,
/// moving bytes with system calls libuv has no stream operation for (splice).
public final class Poll: UVHandle {
    private var callback: ((_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void)?

    public init(fd: Int32) throws {
        super.init(type: UV_POLL)
        let rc = uv_poll_init(EventLoop.raw, raw.assumingMemoryBound(to: uv_poll_t.self), fd)
        if rc < 0 {
            // Never initialised: nothing for uv_close; give back the retain the handle took.
            markClosing()
            Unmanaged<UVHandle>.fromOpaque(handle.pointee.data).release()
            throw UVError(rc)
        }
    }

    /// Watches for these events (again, with new ones, when called again); none stops watching.
    public func watch(readable: Bool, writable: Bool, _ cb: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void) {
        guard !isClosing else { return }
        callback = cb
        let h = raw.assumingMemoryBound(to: uv_poll_t.self)
        let events = (readable ? Int32(UV_READABLE.rawValue) : 0) | (writable ? Int32(UV_WRITABLE.rawValue) : 0)
        guard events != 0 else {
            uv_poll_stop(h)
            return
        }
        let rc = uv_poll_start(h, events) { p, status, events in
            let me = UVHandle.owner(p!) as! Poll
            me.callback?(events & Int32(UV_READABLE.rawValue) != 0, events & Int32(UV_WRITABLE.rawValue) != 0, status < 0)
        }
        if rc < 0 { cb(false, false, true) }
    }

    override func willClose() { callback = nil }
}
