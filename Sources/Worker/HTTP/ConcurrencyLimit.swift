import UV
import Metrics

/// `proxy.maxConcurrency`, for the whole daemon: requests in flight (a tunnel counts until it
/// closes) beyond the limit get 503 with `Retry-After`, never a hang. 0 means no limit.
/// Each worker counts its own requests in its slab of the shared region and a request is admitted
/// when the sum over all workers, its own included, is within the limit: two workers racing for
/// the last place may both refuse, but the limit is never exceeded. Without a shared region (unit
/// tests) the count is this process's.
package final class ConcurrencyLimit {
    package let limit: Int
    package private(set) var inFlight = 0

    package init(limit: Int) { self.limit = limit }

    /// Runs `handle` for the exchange, or answers 503 when the daemon is at its limit.
    package func admit(_ ex: Exchange, _ handle: (Exchange) -> Void) {
        guard limit > 0 else { return handle(ex) }
        inFlight += 1
        Metrics.gauge(.requestsInFlight, 1)
        let total = Metrics.region == nil ? Int64(inFlight) : Metrics.total(.requestsInFlight)
        guard total <= Int64(limit) else {
            release()
            Metrics.count(.concurrencyRefused)
            Log.shared.info("over maxConcurrency: 503", ["peer": ex.peer, "inFlight": Int(total - 1), "limit": limit])
            ex.logFields.append(("error", .string("over maxConcurrency")))
            var h = HTTPHeaders()
            h.add("Retry-After", "1")
            ex.respond(status: 503, headers: h, body: "too many requests in flight; retry shortly\n")
            return
        }
        ex.onEnded = { [weak self] in self?.release() }
        handle(ex)
    }

    private func release() {
        inFlight -= 1
        Metrics.gauge(.requestsInFlight, -1)
    }
}
