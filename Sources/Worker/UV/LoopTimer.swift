internal import CUV

public final class LoopTimer: UVHandle {
    private var callback: (() -> Void)?

    public init() {
        super.init(type: UV_TIMER)
        uv_timer_init(EventLoop.raw, raw.assumingMemoryBound(to: uv_timer_t.self))
    }

    /// Fires once after `ms` (repeating every `repeatMs` if non-zero); restarting replaces the previous schedule.
    public func start(ms: UInt64, repeatMs: UInt64 = 0, _ cb: @escaping () -> Void) {
        guard !isClosing else { return }
        callback = cb
        uv_timer_start(raw.assumingMemoryBound(to: uv_timer_t.self), { t in
            (UVHandle.owner(t!) as! LoopTimer).callback?()
        }, ms, repeatMs)
    }

    public func stop() {
        guard !isClosing else { return }
        uv_timer_stop(raw.assumingMemoryBound(to: uv_timer_t.self))
    }

    override func willClose() { callback = nil }
}
