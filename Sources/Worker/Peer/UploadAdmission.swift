/// Which piece uploads a worker takes: at most `limit` at once, those waiting for
/// `upload.rateLimit` included, so the memory and sockets one worker lends to members are bounded.
/// Past the bound the answer is "busy, ask again after `retryAfterMs`", which the asking
/// host's fill takes as a pause for this source and a reason to ask another. Pure: the handler
/// asks, and says when an upload it was allowed has ended.
package struct UploadAdmission {
    package enum Decision: Equatable {
        /// Send the piece now.
        case start
        /// Send it after `ms`, the rate limit's wait; the slot is held meanwhile.
        case wait(ms: UInt64)
        /// Refuse with 503 and this `Retry-After`.
        case busy(retryAfterMs: UInt64)
    }

    package let limit: Int
    package private(set) var active = 0
    /// Long enough for an upload to end at a busy host, short next to a piece's transfer.
    package static let retryAfterMs: UInt64 = 100

    package init(limit: Int) { self.limit = max(1, limit) }

    /// A worker's share of the host's `peers.uploadSlots` (at least one), within `upload.concurrentLimit`.
    package static func perWorker(_ slots: Int, concurrentLimit: Int, workers: Int?) -> Int {
        max(1, min(concurrentLimit, slots / max(1, workers ?? 1)))
    }

    /// A member asks for a piece. `reserve` books its bytes under the rate limit and says how long
    /// they must wait; it is called only for an upload that is let in, so a refused one costs none.
    package mutating func ask(reserve: () -> UInt64) -> Decision {
        guard active < limit else { return .busy(retryAfterMs: Self.retryAfterMs) }
        active += 1
        let ms = reserve()
        return ms > 0 ? .wait(ms: ms) : .start
    }

    /// An upload this admitted has ended: sent, failed, or abandoned while it waited.
    package mutating func ended() {
        precondition(active > 0, "an upload ended that was never admitted")
        active -= 1
    }
}
