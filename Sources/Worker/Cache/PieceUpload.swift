import UV
import TLS
import HTTP
import Metrics

/// Piece `k` of a task to a member: from the cache file to its socket with sendfile(2), as a hit
/// goes out, so an upload holds no copy of the piece; only what is present is served.
package final class PieceUpload {
    let exchange: Exchange
    let task: CacheTask
    let range: Range<Int64>
    let digest: [UInt8]
    private var pos: Int64
    private var sender: FileSender
    private var done = false
    private var pumping = false
    /// Runs once, when the upload ends in any way.
    var onEnd: (() -> Void)?

    /// Nil when the task does not have the piece (or its digest).
    package init?(exchange: Exchange, task: CacheTask, piece k: Int) {
        guard k >= 0, k < task.pieceCount, task.hasPiece(k), let digest = task.pieceDigest(k) else { return nil }
        self.exchange = exchange
        self.task = task
        self.digest = digest
        range = task.pieceRange(k)
        pos = range.lowerBound
        // Only the piece's own pages: the next ones of a task being filled are holes, and reading
        // them ahead zeroed pages for nothing on every upload.
        sender = FileSender(task: task, exchange: exchange, warm: true, end: range.upperBound)
    }

    package var count: Int { Int(range.count) }

    package func start(onEnd: @escaping () -> Void) {
        self.onEnd = onEnd
        task.beginReading()
        exchange.onAbort = { [self] in end() }
        exchange.onWritable = { [self] in pump() }
        var h = HTTPHeaders()
        h.add("Content-Type", "application/octet-stream")
        h.add("X-Dragonfly-Piece-Digest", Hex.encode(digest))
        exchange.sendHead(HTTPResponseHead(status: 200, headers: h), bodyLength: UInt64(range.count))
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
            switch sender.send(at: pos, count: n, ready: { [weak self] in self?.pump() }) {
            case .sent(let k):
                pos += Int64(k)
            case .wait:
                return
            case .failed(let error):
                end()
                exchange.abort(reason: "piece read failed: \(error)")
                return
            }
        }
    }

    private func end() {
        guard !done else { return }
        done = true
        exchange.onWritable = nil
        task.endReading()
        let f = onEnd
        onEnd = nil
        f?()
    }
}
