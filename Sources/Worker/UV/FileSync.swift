internal import CUV

/// Flushes a file to disk on libuv's thread pool, never on the loop: a flush can take as long as
/// the disk wants, and every connection of the worker would wait for it.
public enum FileSync {
    /// `fdatasync(fd)` off the loop; `done` runs on the loop with 0 or a negative errno.
    public static func fdatasync(_ fd: Int32, _ done: @escaping (Int32) -> Void) {
        let req = UVRequest<(Int32) -> Void>(type: UV_FS, state: done)
        let rc = uv_fs_fdatasync(EventLoop.raw, req.pointer(uv_fs_t.self), fd) { r in
            let result = Int32(truncatingIfNeeded: r!.pointee.result)
            uv_fs_req_cleanup(r)
            UVRequest<(Int32) -> Void>.take(r!).state(result)
        }
        if rc < 0 {
            UVRequest<(Int32) -> Void>.take(req.pointer(uv_fs_t.self)).state(rc)
        }
    }
}
