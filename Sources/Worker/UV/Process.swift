internal import CUV
import Foundation

/// A child process started with fd 3 as an IPC pipe to it and, when given, `sharedFd` as its fd 4.
public final class ChildProcess: UVHandle {
    public let ipc: Pipe
    private var onExit: ((Int64, Int32) -> Void)?

    public init(executable: String, arguments: [String], sharedFd: Int32 = -1, onExit: @escaping (_ status: Int64, _ signal: Int32) -> Void) throws {
        ipc = Pipe(ipc: true)
        super.init(type: UV_PROCESS)
        self.onExit = onExit
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var args = argv
        let rc = cuv_spawn_with_ipc(EventLoop.raw, raw.assumingMemoryBound(to: uv_process_t.self), executable, &args,
                                    ipc.pipe, sharedFd, { p, status, signal in
            let me = UVHandle.owner(p!) as! ChildProcess
            let cb = me.onExit
            me.onExit = nil
            cb?(status, signal)
        })
        if rc < 0 {
            ipc.close()
            close()
            throw UVError(rc)
        }
    }

    public var pid: Int32 { raw.assumingMemoryBound(to: uv_process_t.self).pointee.pid }

    public func kill(_ signal: Int32) { _ = uv_process_kill(raw.assumingMemoryBound(to: uv_process_t.self), signal) }

    override func willClose() { onExit = nil }
}
