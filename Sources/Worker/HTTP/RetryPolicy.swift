/// When an upstream request that failed is sent again, on a fresh connection: only when a reused
/// keep-alive connection turned out dead before any response byte (the origin closed it while it
/// idled), the request can be replayed (no body), nothing was passed on yet, and nobody cancelled.
/// Any other failure goes to the client.
public enum RetryPolicy {
    public static func shouldRetry(connectionWasReused: Bool, responseStarted: Bool, requestHasBody: Bool,
                                   responseDelivered: Bool, cancelled: Bool) -> Bool {
        connectionWasReused && !responseStarted && !requestHasBody && !responseDelivered && !cancelled
    }
}

/// When the rest of a response that already has its head (a 200 is a promise) is asked of the
/// origin again after a failure: a connection that failed or broke, or an answer of 429 or 5xx, is
/// retried with a doubling backoff (or the origin's `Retry-After`, capped) while the attempts and
/// the total wait stay within the client's patience; anything else, and the last failure, is an
/// abort, so the client sees an error and never a clean short body. Pure: the caller keeps the count.
public struct ContinuationRetry: Sendable {
    public var attempts = 0
    public var waitedMs: UInt64 = 0
    public let maxAttempts: Int
    public let patienceMs: UInt64
    static let firstMs: UInt64 = 500
    static let capMs: UInt64 = 10_000

    public init(maxAttempts: Int = 6, patienceMs: UInt64 = 60_000) {
        self.maxAttempts = maxAttempts
        self.patienceMs = patienceMs
    }

    /// Statuses worth asking again: the origin is overloaded or a gateway failed, not "no".
    public static func retryable(status: Int) -> Bool { status == 429 || status == 502 || status == 503 || status == 504 }

    /// The wait before the next attempt, or nil: give up. `retryAfterMs`: what the origin asked for.
    public mutating func next(retryAfterMs: UInt64? = nil) -> UInt64? {
        guard attempts < maxAttempts else { return nil }
        let backoff = min(ContinuationRetry.capMs, ContinuationRetry.firstMs << UInt64(attempts))
        let wait = min(ContinuationRetry.capMs, retryAfterMs ?? backoff)
        guard waitedMs + wait <= patienceMs else { return nil }
        attempts += 1
        waitedMs += wait
        return wait
    }
}
