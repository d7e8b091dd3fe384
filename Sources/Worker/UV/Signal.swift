internal import CUV
import Foundation

/// A signal watcher: libuv's own handler only records the signal; `callback` runs on the loop.
public final class SignalWatcher: UVHandle {
    private var callback: ((Int32) -> Void)?

    public init(signal: Int32, _ cb: @escaping (Int32) -> Void) {
        super.init(type: UV_SIGNAL)
        callback = cb
        let h = raw.assumingMemoryBound(to: uv_signal_t.self)
        uv_signal_init(EventLoop.raw, h)
        uv_signal_start(h, { s, signum in
            (UVHandle.owner(s!) as! SignalWatcher).callback?(signum)
        }, signal)
    }

    override func willClose() { callback = nil }
}
