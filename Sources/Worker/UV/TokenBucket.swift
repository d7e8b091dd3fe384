/// A token bucket by reservation: a sender asks for `bytes` and learns how long to wait before
/// sending them, so the average rate stays at `bytesPerSecond` with bursts up to `burst`. A slow
/// reservation is never refused: a limit slows a transfer down, it never fails it.
public struct TokenBucket: Sendable {
    public let bytesPerSecond: Double
    public let burst: Double
    private var tokens: Double
    private var lastMs: UInt64

    public init(bytesPerSecond: UInt64, burst: UInt64, nowMs: UInt64) {
        self.bytesPerSecond = Double(max(1, bytesPerSecond))
        self.burst = Double(burst)
        tokens = Double(burst)
        lastMs = nowMs
    }

    /// Takes `bytes` (the bucket may go into debt); returns the milliseconds to wait before sending.
    public mutating func reserve(_ bytes: Int, nowMs: UInt64) -> UInt64 {
        let elapsed = Double(nowMs &- lastMs) / 1000
        lastMs = nowMs
        tokens = min(burst, tokens + elapsed * bytesPerSecond)
        tokens -= Double(bytes)
        return tokens >= 0 ? 0 : UInt64((-tokens / bytesPerSecond * 1000).rounded(.up))
    }
}
