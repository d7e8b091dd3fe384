import UV
import HTTP
import Metrics

/// The origin as a source of pieces: one GET of the whole blob, its body cut into pieces as it
/// streams in, each pushed to the fill whole. Its head gives the length. It owns the buffers (a
/// few, reused) and the stall check; what to do with a piece or a failure is the fill's.
///
/// A download the origin cuts mid-way (a reset, a stall, a 5xx or 429 on the way back) goes on with
/// a Range request from the start of the piece being received (`resume`, with `ContinuationRetry`'s
/// backoff), not from zero: the pieces before it are already with the fill.
final class OriginSource: PieceSource {
    private(set) var fetch: OriginFetch
    /// A GET of the blob with this `Range`; nil: a cut download fails.
    let resumeFrom: ((String) -> OriginFetch)?
    private var retry = ContinuationRetry()
    private var resumeTimer: LoopTimer?
    private var pausedByFill = false
    /// The task's piece size, then the blob's once its length is known (`PieceCache.pieceSize`).
    private(set) var pieceSize: Int
    let maxLength: Int64
    package let registry: String
    private var length: Int64 = 0
    private var pieceCount = 0
    /// The piece being received, its index, and spare buffers.
    private var buffer: PieceBuffer
    private var piece = 0
    private var spare: [PieceBuffer] = []
    private weak var sink: PieceSink?
    private var stopped = false
    private var redirects: [String] = []
    /// Bytes received, and at the last stall check: an origin that trickles (each byte in time for
    /// the idle timeout) would otherwise park every joiner of the task forever.
    private var received: UInt64 = 0
    private var receivedAtCheck: UInt64 = 0
    private let stallCheck = LoopTimer()
    /// Less than this in one `upstreamTimeout` window is a stall.
    static let minimumBytesPerWindow: UInt64 = 64 * 1024

    init(fetch: OriginFetch, pieceSize: Int, maxLength: Int64, resume: ((String) -> OriginFetch)? = nil) {
        self.fetch = fetch
        self.resumeFrom = resume
        self.pieceSize = pieceSize
        self.maxLength = maxLength
        registry = fetch.url.origin
        buffer = PieceBuffer(capacity: pieceSize)
    }

    func start(_ sink: PieceSink) {
        self.sink = sink
        stallCheck.start(ms: Limits.upstreamIdleMs, repeatMs: Limits.upstreamIdleMs) { [weak self] in self?.checkProgress() }
        attach(fetch, from: nil)
    }

    /// Runs `f`: the whole blob (`from` nil), or its bytes from `from` on, resuming a cut download.
    private func attach(_ f: OriginFetch, from: Int64?) {
        fetch = f
        if pausedByFill { f.pauseResponse() }
        if let from {
            f.onHead = { [self] h, framing in
                guard h.status == 206, framing == .length(UInt64(length - from)),
                      h.headers["Content-Range"].map({ $0.hasPrefix("bytes \(from)-\(length - 1)/") }) ?? true else {
                    return interrupted("origin answered \(h.status) to the range that resumes the download",
                                       retryable: ContinuationRetry.retryable(status: h.status),
                                       retryAfterMs: h.headers["Retry-After"].flatMap(UInt64.init).map { $0 * 1000 })
                }
            }
        } else {
            f.onHead = { [self] h, framing in head(h, framing) }
        }
        f.onBody = { [self] b in take(b) }
        f.onEnd = { [self] in if !stopped { self.sink?.streamEnded() } }
        f.onFail = { [self] error in interrupted(error.description, retryable: pieceCount > 0, retryAfterMs: nil) }
        f.onRedirect = { [self] status, next in redirects.append("\(status) \(next.authority)") }
        f.start()
    }

    /// The origin stopped sending: resume from the piece being received, or fail.
    private func interrupted(_ why: String, retryable: Bool, retryAfterMs: UInt64?) {
        guard !stopped else { return }
        guard retryable, let resumeFrom, pieceCount > 0, piece < pieceCount, let wait = retry.next(retryAfterMs: retryAfterMs) else {
            return fail(.sourceFailed(why))
        }
        let from = Int64(piece) * Int64(pieceSize)
        buffer.reset()
        fetch.cancel()
        Metrics.count(.originResumes)
        Log.shared.warn("origin cut the download: resuming from the last whole piece",
                        ["url": fetch.url.description, "from": Int(from), "error": why, "waitMs": Int(wait), "attempt": retry.attempts])
        let t = LoopTimer()
        resumeTimer = t
        t.start(ms: wait) { [self] in
            t.close()
            resumeTimer = nil
            guard !stopped else { return }
            attach(resumeFrom("bytes=\(from)-\(length - 1)"), from: from)
        }
    }

    private func head(_ h: HTTPResponseHead, _ framing: BodyFraming) {
            guard h.status == 200, case .length(let declared) = framing else {
                return fail(.sourceFailed("origin answered \(h.status)\(h.status == 200 ? " without a length" : "")"))
            }
            // A length the cache cannot hold (beyond Int64, or more pieces than a task has) is an origin error.
            guard let n = Int64(exactly: declared), n <= maxLength else {
                return fail(.badLength("origin announced \(declared) bytes, more than a task can hold"))
            }
            length = n
            pieceSize = PieceCache.pieceSize(base: pieceSize, length: n)
            if buffer.capacity < pieceSize { buffer = PieceBuffer(capacity: pieceSize) }
            pieceCount = Int((n + Int64(pieceSize) - 1) / Int64(pieceSize))
            sink?.described(length: n, contentType: h.headers["Content-Type"] ?? "application/octet-stream",
                            digestHeader: h.headers["Docker-Content-Digest"])
    }

    private func fail(_ why: FillFailure) {
        guard !stopped else { return }
        sink?.failed(why)
    }

    private func checkProgress() {
        let progress = received - receivedAtCheck
        receivedAtCheck = received
        let remaining = pieceCount > 0 || length == 0 ? UInt64(length) - min(received, UInt64(length)) : nil
        guard progress < OriginSource.minimumBytesPerWindow, remaining.map({ progress < $0 }) ?? true else { return }
        fail(.sourceFailed("origin stalled: \(progress) bytes in \(Limits.upstreamIdleMs / 1000) s"))
    }

    private func pieceLength(_ k: Int) -> Int {
        Int(min(Int64(pieceSize), length - Int64(k) * Int64(pieceSize)))
    }

    private func take(_ b: UnsafeRawBufferPointer) {
        received += UInt64(b.count)
        var off = 0
        while off < b.count && !stopped {
            guard piece < pieceCount else { return fail(.badLength("origin sent more bytes than its Content-Length")) }
            let want = pieceLength(piece) - buffer.count
            off += buffer.append(UnsafeRawBufferPointer(rebasing: b[off..<min(b.count, off + want)]))
            if buffer.count == pieceLength(piece) {
                let full = buffer
                buffer = spare.popLast().flatMap { $0.capacity >= pieceSize ? $0 : nil } ?? PieceBuffer(capacity: pieceSize)
                buffer.reset()
                piece += 1
                sink?.delivered(piece - 1, from: .origin, full)
            }
        }
        if !stopped { sink?.progressed() }
    }

    func stored(_ k: Int, from: SourceID, buffer: PieceBuffer) { spare.append(buffer) }

    func partial(at offset: Int64, max: Int) -> UnsafeRawBufferPointer? {
        guard !stopped, piece < pieceCount, offset >= Int64(piece) * Int64(pieceSize) else { return nil }
        let within = Int(offset - Int64(piece) * Int64(pieceSize))
        guard within < buffer.count else { return nil }
        return UnsafeRawBufferPointer(start: buffer.base + within, count: Swift.min(max, buffer.count - within))
    }

    func pause() {
        pausedByFill = true
        fetch.pauseResponse()
    }
    func resume() {
        pausedByFill = false
        fetch.resumeResponse()
    }

    var logFields: [(String, LogValue)] {
        var f: [(String, LogValue)] = [("source", .string("origin")), ("bytes", .int(Int(length))), ("upstream", .string(fetch.url.authority))]
        if !redirects.isEmpty { f.append(("redirect", .string(redirects.joined(separator: ", ")))) }
        return f
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        stallCheck.close()
        resumeTimer?.close()
        resumeTimer = nil
        fetch.cancel()
    }

    // Pushed, not asked: the origin has no pieces to fetch one by one, no seed, no order.
    func fetch(_ k: Int, from: SourceID, count: Int) {}
    func avoid(_ s: SourceID, unreachable: Bool) {}
    func replaceSeed(_ s: SourceID) {}
    func spread(_ k: Int) -> UInt64 { UInt64(k) }
}
