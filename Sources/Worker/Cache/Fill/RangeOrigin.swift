import UV
import HTTP

/// The origin as a source of single pieces, by range, for a fill the peers could not finish: piece
/// k is `GET` with `Range: bytes=a-b` and the requesting client's credentials. An overloaded or
/// unreachable origin (429, 502–504, a failed connection) is asked again after its `Retry-After`
/// or a backoff (`ContinuationRetry`), told to the fill as `busy`; any other answer, or a 200
/// without the range, is a refusal, and the fill starts over from the whole blob.
final class RangeOrigin {
    let task: CacheTask
    /// A GET of the blob with these extra headers (the range), to the client's registry.
    let makeFetch: (_ range: String) -> OriginFetch
    private weak var sink: PieceSink?
    private var retry = ContinuationRetry()
    /// The origin is not asked before then (the last failure's pause).
    private var pausedUntil: UInt64 = 0
    private var inFlight: [Int: OriginFetch] = [:]
    private var spare: [PieceBuffer] = []
    private var stopped = false

    init(task: CacheTask, makeFetch: @escaping (_ range: String) -> OriginFetch) {
        self.task = task
        self.makeFetch = makeFetch
    }

    func start(_ sink: PieceSink) { self.sink = sink }

    func fetch(_ k: Int, count: Int) {
        let r = task.pieceRange(k)
        guard !stopped, r.count == count, count > 0 else { return sink?.fetchFailed(k, from: .origin, .refused) ?? () }
        let bytes = spare.popLast().flatMap { $0.capacity >= count ? $0 : nil } ?? PieceBuffer(capacity: count)
        bytes.reset()
        let f = makeFetch("bytes=\(r.lowerBound)-\(r.upperBound - 1)")
        inFlight[k] = f
        var status = 0
        f.onHead = { [self] h, framing in
            status = h.status
            let fits = h.status == 206 && framing == .length(UInt64(count))
                && h.headers["Content-Range"]?.hasPrefix("bytes \(r.lowerBound)-\(r.upperBound - 1)/") == true
            guard !fits else { return }
            // Not the range (an error, or the whole blob from an origin without ranges): its body
            // is not read.
            f.cancel()
            inFlight[k] = nil
            guard !stopped else { return }
            again(k, status: status, retryAfterMs: h.headers["Retry-After"].flatMap(UInt64.init).map { $0 * 1000 },
                  "origin answered \(status) to the range of piece \(k)")
        }
        f.onBody = { b in _ = bytes.append(b) }
        f.onEnd = { [self] in
            inFlight[k] = nil
            guard !stopped else { return }
            guard bytes.count == count else {
                return again(k, status: status, retryAfterMs: nil, "origin sent \(bytes.count) of the \(count) bytes of piece \(k)")
            }
            retry = ContinuationRetry()
            sink?.delivered(k, from: .origin, bytes)
        }
        f.onFail = { [self] error in
            inFlight[k] = nil
            guard !stopped else { return }
            again(k, status: nil, retryAfterMs: nil, error.description)
        }
        f.start()
    }

    /// A failed piece: busy for a while when the origin may answer later, else refused.
    private func again(_ k: Int, status: Int?, retryAfterMs: UInt64?, _ why: String) {
        let retryable = status.map(ContinuationRetry.retryable(status:)) ?? true
        let now = EventLoop.nowMs
        // Pieces that failed together are one attempt: the pause already running holds for them.
        if retryable, pausedUntil > now { return sink?.fetchFailed(k, from: .origin, .busy(retryAfterMs: pausedUntil - now)) ?? () }
        if retryable, let wait = retry.next(retryAfterMs: retryAfterMs) {
            pausedUntil = now + wait
            Log.shared.warn("origin failed a piece: asking again", ["taskId": task.key.id, "piece": k, "error": why, "waitMs": wait])
            return sink?.fetchFailed(k, from: .origin, .busy(retryAfterMs: wait)) ?? ()
        }
        Log.shared.warn("origin refused a piece", ["taskId": task.key.id, "piece": k, "error": why])
        sink?.fetchFailed(k, from: .origin, status == nil ? .unreachable : .refused)
    }

    func stored(_ buffer: PieceBuffer) { if spare.count < 4 { spare.append(buffer) } }

    func stop() {
        stopped = true
        for f in inFlight.values { f.cancel() }
        inFlight.removeAll()
    }
}

/// A peer fill's sources: the peers, and the origin's ranges once the fill asks for them. Every
/// call goes to the peers but a piece asked from (or stored from) the origin.
final class PeersThenOrigin: PieceSource {
    let peers: PieceSource
    let origin: RangeOrigin

    init(peers: PieceSource, origin: RangeOrigin) {
        self.peers = peers
        self.origin = origin
    }

    func start(_ sink: PieceSink) {
        origin.start(sink)
        peers.start(sink)
    }

    func fetch(_ k: Int, from: SourceID, count: Int) {
        from == .origin ? origin.fetch(k, count: count) : peers.fetch(k, from: from, count: count)
    }

    func stored(_ k: Int, from: SourceID, buffer: PieceBuffer) {
        from == .origin ? origin.stored(buffer) : peers.stored(k, from: from, buffer: buffer)
    }

    func avoid(_ s: SourceID, unreachable: Bool) { if s != .origin { peers.avoid(s, unreachable: unreachable) } }
    func replaceSeed(_ s: SourceID) { peers.replaceSeed(s) }
    func spread(_ k: Int) -> UInt64 { peers.spread(k) }
    func pause() { peers.pause() }
    func resume() { peers.resume() }
    func partial(at offset: Int64, max: Int) -> UnsafeRawBufferPointer? { peers.partial(at: offset, max: max) }
    var registry: String { peers.registry }
    var logFields: [(String, LogValue)] { peers.logFields }

    func stop() {
        origin.stop()
        peers.stop()
    }
}
