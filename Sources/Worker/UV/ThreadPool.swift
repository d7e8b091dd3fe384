internal import CUV

/// Work on libuv's thread pool, its completion back on the loop: disk writes and hashing that would
/// stall every connection of the worker if the loop did them.
public enum ThreadPool {
    /// What one request carries across: the closure for the pool thread and the one for the loop.
    /// The caller guarantees that nothing the work touches is touched by the loop until `done` runs.
    /// Unchecked: libuv hands the job to one pool thread and back, never to two threads at once.
    final class Job: @unchecked Sendable {
        let work: () -> Void
        let done: () -> Void
        init(work: @escaping () -> Void, done: @escaping () -> Void) {
            self.work = work
            self.done = done
        }
    }

    /// Runs `work` on a pool thread, then `done` on the loop.
    public static func run(_ work: @escaping () -> Void, then done: @escaping () -> Void) {
        let req = UVRequest<Job>(type: UV_WORK, state: Job(work: work, done: done))
        let rc = uv_queue_work(EventLoop.raw, req.pointer(uv_work_t.self), { r in
            let data = UnsafeMutableRawPointer(r!).assumingMemoryBound(to: uv_req_t.self).pointee.data!
            Unmanaged<UVRequest<Job>>.fromOpaque(data).takeUnretainedValue().state.work()
        }, { r, _ in
            UVRequest<Job>.take(r!).state.done()
        })
        if rc < 0 {
            // No pool (it cannot fail on Linux short of a bug): do it here rather than lose it.
            let job = UVRequest<Job>.take(req.pointer(uv_work_t.self)).state
            job.work()
            job.done()
        }
    }
}
