import UV

/// `proxy.maxConcurrency`, this worker's share: requests in flight (a tunnel counts until it
/// closes) beyond the limit get 503 with `Retry-After`, never a hang. 0 means no limit.
package final class ConcurrencyLimit {
    package let limit: Int
    package private(set) var inFlight = 0
    package private(set) var refused = 0

    package init(limit: Int) { self.limit = limit }

    /// The share of a daemon-wide limit that each of `workers` workers enforces.
    package static func share(of total: Int, workers: Int) -> Int {
        guard total > 0 else { return 0 }
        let w = max(1, workers)
        return (total + w - 1) / w
    }

    /// Runs `handle` for the exchange, or answers 503 when the worker is at its limit.
    package func admit(_ ex: Exchange, _ handle: (Exchange) -> Void) {
        guard limit == 0 || inFlight < limit else {
            refused += 1
            Log.shared.info("over maxConcurrency: 503", ["peer": ex.peer, "inFlight": inFlight, "limit": limit])
            ex.logFields.append(("error", .string("over maxConcurrency")))
            var h = HTTPHeaders()
            h.add("Retry-After", "1")
            ex.respond(status: 503, headers: h, body: "too many requests in flight; retry shortly\n")
            return
        }
        inFlight += 1
        ex.onEnded = { [weak self] in self?.inFlight -= 1 }
        handle(ex)
    }
}
