import UV
import HTTP

/// The origin as a source of pieces: one GET of the whole blob, its body cut into pieces as it
/// streams in, each pushed to the fill whole. Its head gives the length. It owns the buffers (a
/// few, reused) and the stall check; what to do with a piece or a failure is the fill's.
final class OriginSource: PieceSource {
    let fetch: OriginFetch
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

    init(fetch: OriginFetch, pieceSize: Int, maxLength: Int64) {
        self.fetch = fetch
        self.pieceSize = pieceSize
        self.maxLength = maxLength
        registry = fetch.url.origin
        buffer = PieceBuffer(capacity: pieceSize)
    }

    func start(_ sink: PieceSink) {
        self.sink = sink
        stallCheck.start(ms: Limits.upstreamIdleMs, repeatMs: Limits.upstreamIdleMs) { [weak self] in self?.checkProgress() }
        fetch.onHead = { [self] h, framing in
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
            sink.described(length: n, contentType: h.headers["Content-Type"] ?? "application/octet-stream",
                           digestHeader: h.headers["Docker-Content-Digest"])
        }
        fetch.onBody = { [self] b in take(b) }
        fetch.onEnd = { [self] in if !stopped { self.sink?.streamEnded() } }
        fetch.onFail = { [self] error in fail(.sourceFailed(error.description)) }
        fetch.onRedirect = { [self] status, next in redirects.append("\(status) \(next.authority)") }
        fetch.start()
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

    func pause() { fetch.pauseResponse() }
    func resume() { fetch.resumeResponse() }

    var logFields: [(String, LogValue)] {
        var f: [(String, LogValue)] = [("source", .string("origin")), ("bytes", .int(Int(length))), ("upstream", .string(fetch.url.authority))]
        if !redirects.isEmpty { f.append(("redirect", .string(redirects.joined(separator: ", ")))) }
        return f
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        stallCheck.close()
        fetch.cancel()
    }

    // Pushed, not asked: the origin has no pieces to fetch one by one, no seed, no order.
    func fetch(_ k: Int, from: SourceID, count: Int) {}
    func avoid(_ s: SourceID, unreachable: Bool) {}
    func replaceSeed(_ s: SourceID) {}
    func spread(_ k: Int) -> UInt64 { UInt64(k) }
}
