/// How a request reached the daemon: the `mode` label.
public enum RequestMode: Int, CaseIterable, Sendable {
    case proxy, mirror, hijack, tunnel, peer
    public var name: String { ["proxy", "mirror", "hijack", "tunnel", "peer"][rawValue] }
    public init?(name: String) {
        guard let i = ["proxy", "mirror", "hijack", "tunnel", "peer"].firstIndex(of: name) else { return nil }
        self.init(rawValue: i)
    }
}

/// Where the bytes of a response came from: the `source` label.
public enum ByteSource: Int, CaseIterable, Sendable {
    case origin, cache, peer
    public var name: String { ["origin", "cache", "peer"][rawValue] }
}

/// One number of a slab.
public enum Scalar: Int, CaseIterable, Sendable {
    case originBytes, cacheHits, cacheMisses, peerBytesIn, peerBytesOut, concurrencyRefused, cacheDiskReadBytes
    case peerBadPieces, peerUploadsRefused, peerRangeFallbacks, peerRestarts, peerCutThrough
    case manifestHits, manifestRevalidated, manifestFetched, staleTags, staleBlobs, registryDown, originResumes
    // Gauges (dropped with the worker that held them):
    case tasksActive, connectionsActive, connectionsIdle, requestsInFlight
    var isGauge: Bool { rawValue >= Scalar.tasksActive.rawValue }
}

/// The words of the global area.
public enum Global: Int, Sendable {
    case workerRestarts, reloads, reloadFailures
    /// GCRA clocks of the shared rate limiters (nanoseconds).
    case downloadClock, uploadClock
    /// `peerTableSize` pairs of (member hash, clock) for `download.perPeerRateLimit`.
    case peerTable = 16
}

/// Where each number lives in a slab: scalars, then `requests_total` by mode and code, then the
/// duration histogram by mode, then response bytes by source.
public enum Slot {
    /// Status codes with a series of their own; any other counts under its class (`2xx`...).
    public static let codes: [Int] = [200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 407,
                                      408, 411, 413, 414, 416, 429, 431, 500, 501, 502, 503, 504]
    static let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]
    static let perMode = codes.count + classes.count
    /// Histogram bucket bounds, seconds (`le`); `+Inf` is the count.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
    /// Per mode: the buckets, then the count, then the sum in microseconds.
    static let perHistogram = buckets.count + 2

    static let requestsBase = Scalar.allCases.count
    static let durationBase = requestsBase + RequestMode.allCases.count * perMode
    static let bytesBase = durationBase + RequestMode.allCases.count * perHistogram
    static let end = bytesBase + ByteSource.allCases.count

    static func scalar(_ s: Scalar) -> Int { s.rawValue }

    /// The series of a status code: its own, or its class's (anything outside 100...599 counts as 5xx).
    static func request(_ mode: RequestMode, _ status: Int) -> Int {
        let i = codes.firstIndex(of: status) ?? codes.count + min(4, max(0, status / 100 - 1))
        return requestsBase + mode.rawValue * perMode + i
    }

    static func codeLabel(_ i: Int) -> String { i < codes.count ? String(codes[i]) : classes[i - codes.count] }

    static func bucket(_ mode: RequestMode, _ b: Int) -> Int { durationBase + mode.rawValue * perHistogram + b }
    static func count(_ mode: RequestMode) -> Int { durationBase + mode.rawValue * perHistogram + buckets.count }
    static func sumMicros(_ mode: RequestMode) -> Int { durationBase + mode.rawValue * perHistogram + buckets.count + 1 }
    static func bytes(_ s: ByteSource) -> Int { bytesBase + s.rawValue }

    static func isGauge(_ k: Int) -> Bool { k < Scalar.allCases.count && Scalar(rawValue: k)!.isGauge }
}
