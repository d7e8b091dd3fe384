import UV
import TLS
import HTTP
import Metrics

/// Piece `k` of a task to a member: from the cache file to its socket with sendfile(2), as a hit
/// goes out, so an upload holds no copy of the piece; only what is present is served.
///
/// A piece the task's origin download is receiving now (or is about to) is cut through: the head
/// goes at once, without the piece's digest (the asking host gets it with the task's next news),
/// and the bytes follow as they land: from the download's buffers in the worker that runs it, from
/// the file once the piece is written in any other. The asking host never has to wait for a piece
/// to be stored here before it can start to forward it.
package final class PieceUpload {
    let exchange: Exchange
    let task: CacheTask
    let piece: Int
    let range: Range<Int64>
    /// Nil while the piece is being cut through.
    let digest: [UInt8]?
    private let generation: UInt32
    private var pos: Int64
    private var sender: FileSender
    private var done = false
    private var pumping = false
    /// The download in this worker, while it holds bytes of the piece not on disk yet.
    private weak var download: FillDriver?
    /// Checks a cut-through piece while it waits (another worker's download, or the task failing).
    private var watch: LoopTimer?
    private var lastMovedMs = EventLoop.nowMs
    /// Runs once, when the upload ends in any way.
    var onEnd: (() -> Void)?

    /// What a task can do with a request for piece `k`.
    package enum Availability: Equatable {
        case present
        /// Being received (or about to be): it can be cut through.
        case arriving
        /// Not here yet, but the task is being filled: ask again later.
        case notYet
        /// Never here (no such piece, or the task is not being filled).
        case absent
    }

    /// Pieces past the last one present that a request may wait for as they arrive: the origin's
    /// piece being received, the next ones, and those queued for the disk.
    package static let arrivingAhead = 4
    /// A cut-through piece that moves no byte for this long is given up (the asking host asks again).
    static let stallMs: UInt64 = 10_000
    static let watchMs: UInt64 = 25

    package static func availability(_ task: CacheTask, _ k: Int) -> Availability {
        guard k >= 0, k < task.pieceCount else { return task.state == .downloading && task.contentLength == nil ? .notYet : .absent }
        if task.hasPiece(k), task.pieceDigest(k) != nil { return .present }
        guard task.state == .downloading, task.contentLength != nil else { return .absent }
        // Only the origin's stream fills in order; a task this worker fills from peers is asked
        // again later (another worker's fill, if not in order, ends the wait at `stallMs`).
        if let d = FillDriver.active[task.key.id], !d.streamsFromOrigin { return .notYet }
        let first = (0..<task.pieceCount).first { !task.hasPiece($0) } ?? task.pieceCount
        return k < first + arrivingAhead ? .arriving : .notYet
    }

    /// Nil when the task does not have the piece (or its digest) and is not receiving it.
    package init?(exchange: Exchange, task: CacheTask, piece k: Int) {
        let what = PieceUpload.availability(task, k)
        guard what == .present || what == .arriving else { return nil }
        self.exchange = exchange
        self.task = task
        piece = k
        digest = what == .present ? task.pieceDigest(k) : nil
        generation = task.generation
        range = task.pieceRange(k)
        pos = range.lowerBound
        // Only the piece's own pages: the next ones of a task being filled are holes, and reading
        // them ahead zeroed pages for nothing on every upload.
        sender = FileSender(task: task, exchange: exchange, warm: true, end: range.upperBound)
    }

    package var count: Int { Int(range.count) }
    package var cutThrough: Bool { digest == nil }

    package func start(onEnd: @escaping () -> Void) {
        self.onEnd = onEnd
        task.beginReading()
        exchange.onAbort = { [self] in end() }
        exchange.onWritable = { [self] in pump() }
        var h = HTTPHeaders()
        h.add("Content-Type", "application/octet-stream")
        if let digest { h.add("X-Dragonfly-Piece-Digest", Hex.encode(digest)) }
        exchange.sendHead(HTTPResponseHead(status: 200, headers: h), bodyLength: UInt64(range.count))
        if cutThrough {
            Metrics.count(.peerCutThrough)
            exchange.logFields.append(("cutThrough", .bool(true)))
            if let d = FillDriver.active[task.key.id] {
                download = d
                d.listen(self) { [weak self] in self?.pump() }
            }
            let t = LoopTimer()
            t.start(ms: PieceUpload.watchMs, repeatMs: PieceUpload.watchMs) { [weak self] in self?.check() }
            watch = t
        }
        pump()
    }

    /// A cut-through piece while it waits: the bytes another worker wrote, or the end of it.
    private func check() {
        guard !done else { return }
        if task.generation != generation || (task.state != .downloading && !task.hasPiece(piece)) {
            return fail("the task's download stopped")
        }
        if EventLoop.nowMs &- lastMovedMs > PieceUpload.stallMs { return fail("piece stalled at its origin") }
        pump()
    }

    private func pump() {
        guard !done, !pumping else { return }
        pumping = true
        defer { pumping = false }
        while !done {
            if pos >= range.upperBound {
                Metrics.count(.peerBytesOut, count)
                end()
                exchange.finish()
                return
            }
            if exchange.isWriteBlocked { return }
            let n = Int(min(Int64(CacheReader.chunk), range.upperBound - pos))
            if cutThrough, !task.hasPiece(piece) {
                // Not on disk yet: what the download in this worker holds of it, else wait.
                guard let m = download?.inMemory(at: pos, max: n), m.count > 0 else { return }
                exchange.sendBody(m)
                pos += Int64(m.count)
                lastMovedMs = EventLoop.nowMs
                continue
            }
            switch sender.send(at: pos, count: n, ready: { [weak self] in self?.pump() }) {
            case .sent(let k):
                pos += Int64(k)
                lastMovedMs = EventLoop.nowMs
            case .wait:
                return
            case .failed(let error):
                return fail("piece read failed: \(error)")
            }
        }
    }

    private func fail(_ why: String) {
        end()
        exchange.abort(reason: why)
    }

    private func end() {
        guard !done else { return }
        done = true
        exchange.onWritable = nil
        watch?.close()
        watch = nil
        download?.unlisten(self)
        download = nil
        task.endReading()
        let f = onEnd
        onEnd = nil
        f?()
    }
}
