/// Crash-loop backoff for a supervised process: one that dies within `healthyAfterMs` of starting
/// waits before its restart, doubling from `initialMs` up to `maxMs`; one that lived longer is
/// restarted at once and its backoff forgotten.
public struct RestartBackoff: Equatable, Sendable {
    public let initialMs: UInt64
    public let maxMs: UInt64
    public let healthyAfterMs: UInt64
    public private(set) var delayMs: UInt64 = 0

    public init(initialMs: UInt64 = 100, maxMs: UInt64 = 5000, healthyAfterMs: UInt64 = 1000) {
        self.initialMs = initialMs
        self.maxMs = maxMs
        self.healthyAfterMs = healthyAfterMs
    }

    /// The process exited after living `livedMs`: how long to wait before starting it again.
    public mutating func exited(afterLivingMs livedMs: UInt64) -> UInt64 {
        delayMs = livedMs < healthyAfterMs ? min(max(delayMs.multipliedReportingOverflow(by: 2).partialValue, initialMs), maxMs) : 0
        return delayMs
    }
}
