internal import CUV

/// Calls back when a file changes (inotify through libuv): how readers on any worker learn that the
/// downloader wrote a piece or changed a task's state, without polling.
public final class FileWatch: UVHandle {
    private var callback: (() -> Void)?

    public init(path: String, _ cb: @escaping () -> Void) throws {
        super.init(type: UV_FS_EVENT)
        callback = cb
        let h = raw.assumingMemoryBound(to: uv_fs_event_t.self)
        uv_fs_event_init(EventLoop.raw, h)
        let rc = uv_fs_event_start(h, { e, _, _, _ in
            (UVHandle.owner(e!) as! FileWatch).callback?()
        }, path, 0)
        if rc < 0 {
            close()
            throw UVError(rc)
        }
    }

    override func willClose() { callback = nil }
}
