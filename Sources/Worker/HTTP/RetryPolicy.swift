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
