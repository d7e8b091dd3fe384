import Foundation
import UV
import HTTP

/// Serves one client from a task: waits for the length, sends the head (200, or 206 for a range),
/// then each byte as soon as its piece is present, with the client's backpressure. Wakes on the
/// task's meta file changing (any worker's writes); a task that fails mid-stream aborts the client,
/// never a short 200. While waiting it checks, once a second, whether the downloader is gone.
final class CacheReader {
    let exchange: Exchange
    let task: CacheTask
    let range: ByteRange
    let source: String
    let peerID: String
    private var pos: Int64 = 0
    private var end: Int64 = 0
    private var watch: FileWatch?
    private var probe: LoopTimer?
    private var pumping = false
    private var done = false
    /// The task's download when it runs in this worker: bytes not yet on disk come from its buffers.
    private weak var download: FillDriver?
    /// How bytes of the file go out (only once they are in the page cache; read on the pool if not).
    private var sender: FileSender?
    /// That download found the digest right: every byte may go out, flushed or not (it stays so
    /// even if the flush then fails: the bytes are still the blob's, and the open file has them).
    private var verified = false
    /// The download's range fallback, as last seen (the access line tells it).
    private var fallback: (why: FillFailure, originBytes: Int)?
    private let stopwatch = Stopwatch()
    /// The task failed before anything was sent: serve the client some other way.
    var onFallback: (() -> Void)?
    /// The downloader is gone and this worker now holds the task: start downloading it.
    var onTakeover: (() -> Void)?
    /// Caching stopped mid-stream: send bytes `[from, to)` from the origin instead.
    var onContinue: ((_ from: Int64, _ to: Int64) -> Void)?

    static let chunk = 256 << 10
    static let probeMs: UInt64 = 1000
    static let pollMs: UInt64 = 50
    static let inotifyDisabled = ProcessInfo.processInfo.environment["DFGET_NO_INOTIFY"] == "1"

    init(exchange: Exchange, task: CacheTask, range: ByteRange, source: String, peerID: String) {
        self.exchange = exchange
        self.task = task
        self.range = range
        self.source = source
        self.peerID = peerID
    }

    func start() {
        if serveSmall() { return }
        // A shared lock on the content: garbage collection never evicts a task under a reader.
        task.beginReading()
        exchange.onAbort = { [self] in stop() }
        exchange.onWritable = { [self] in pump() }
        if !task.isComplete, let d = FillDriver.active[task.key.id] {
            download = d
            d.listen(self) { [weak self] in self?.pump() }
        }
        if !task.isComplete {
            // inotify wakes the reader on every change of the task; without it (none left, or
            // DFGET_NO_INOTIFY=1) the reader polls.
            watch = CacheReader.inotifyDisabled ? nil : try? FileWatch(path: task.metaPath) { [weak self] in self?.pump() }
            let every = watch == nil ? CacheReader.pollMs : CacheReader.probeMs
            var sinceCheck: UInt64 = 0
            let t = LoopTimer()
            t.start(ms: every, repeatMs: every) { [weak self] in
                guard let self else { return }
                if watch == nil { pump() }
                sinceCheck += every
                if sinceCheck >= CacheReader.probeMs {
                    sinceCheck = 0
                    checkDownloader()
                }
            }
            probe = t
        }
        pump()
    }

    /// A small complete blob goes out from memory in one piece (see `CacheTask.smallBody`).
    private func serveSmall() -> Bool {
        guard let body = task.smallBody(), let r = range.resolve(length: Int64(body.count)) else { return false }
        task.touchIfDue()
        done = true
        exchange.sendHead(task.responseHead(partial: range == .whole ? nil : r, peerID: peerID), bodyLength: UInt64(r.count))
        body.withUnsafeBytes { exchange.sendBody(UnsafeRawBufferPointer(rebasing: $0[Int(r.lowerBound)..<Int(r.upperBound)])) }
        exchange.finish()
        return true
    }

    private func checkDownloader() {
        guard !done, task.state == .downloading || task.state == .empty, !task.isDownloader else { return }
        if (try? task.claim(pieceSize: task.pieceSize)) == true {
            Log.shared.warn("task downloader is gone: taking over", ["taskId": task.key.id])
            onTakeover?()
        }
    }

    private func pump() {
        guard !done, !pumping else { return }
        pumping = true
        defer { pumping = false }
        while !done {
            if download?.isVerified == true { verified = true }
            if let d = download, let why = d.rangeFallback { fallback = (why, d.originBytes) }
            let state = verified ? TaskState.complete : task.state
            let view = ReaderStep.Task(state: state, contentLength: task.contentLength, readable: { [task, download] from, max in
                let onDisk = task.readableBytes(from: from, max: max)
                return onDisk > 0 ? onDisk : download?.inMemory(at: from, max: max)?.count ?? 0
            })
            let progress = ReaderStep.Progress(headSent: exchange.headSent, pos: pos, end: end, clientBlocked: exchange.isWriteBlocked)
            switch ReaderStep.next(view, progress, range: range, chunk: CacheReader.chunk) {
            case .fallback(let reason):
                let fallback = onFallback
                finish(error: "\(reason) before the response")
                fallback?()
                return
            case .refuseCorrupt:
                let digest = task.key.expectedDigest ?? task.key.id
                finish(error: "blob does not match its digest")
                exchange.respond(status: 502, body: "upstream sent bytes that do not match \(digest)\n")
                return
            case .continueFromOrigin:
                let (from, to, cont) = (pos, end, onContinue)
                finish(error: "caching stopped: the rest comes from the origin")
                cont?(from, to)
                return
            case .abortFailed:
                finish(error: "task failed")
                exchange.abort(reason: "cached task failed mid-stream")
                return
            case .waitForLength, .waitForClient, .waitForTask:
                return
            case .unsatisfiable(let length):
                var h = HTTPHeaders()
                h.add("Content-Range", "bytes */\(length)")
                finish(error: nil)
                exchange.respond(status: 416, headers: h)
                return
            case .sendHead(let r):
                (pos, end) = (r.lowerBound, r.upperBound)
                exchange.sendHead(task.responseHead(partial: range == .whole ? nil : r, peerID: peerID), bodyLength: UInt64(end - pos))
            case .finish:
                finish(error: nil)
                exchange.finish()
                return
            case .inconsistent:
                finish(error: "complete task missing bytes")
                exchange.abort(reason: "cache inconsistency")
                return
            case .send(let n):
                // The download's own buffer first (bytes not on disk yet), else the file.
                if let m = download?.inMemory(at: pos, max: n), m.count == n {
                    exchange.sendBody(m)
                    pos += Int64(n)
                    continue
                }
                // A download's pages were just written; a complete task's may have to be read first.
                if sender == nil || sender?.warm != task.isComplete { sender = FileSender(task: task, exchange: exchange, warm: task.isComplete) }
                switch sender!.send(at: pos, count: n, ready: { [weak self] in self?.pump() }) {
                case .sent(let k):
                    pos += Int64(k)
                case .wait:
                    return
                case .failed(let error):
                    finish(error: error)
                    exchange.abort(reason: "cache read failed: \(error)")
                    return
                }
            }
        }
    }

    private func finish(error: String?) {
        guard !done else { return }
        done = true
        if let (why, bytes) = fallback {
            exchange.logFields += [("fallback", .string("range: \(why)")), ("originBytes", .int(bytes))]
        }
        stop()
        // A served request is told by its access line (task, source, bytes, duration); only a
        // reader that failed gets a line of its own.
        guard error != nil else { return }
        let ms = stopwatch.elapsedMs
        var f: [(String, LogValue)] = [("taskId", .string(task.key.id)), ("source", .string(source)),
                                       ("bytes", .int(Int(max(0, pos - (range.resolve(length: task.contentLength ?? 0)?.lowerBound ?? 0))))),
                                       ("costMs", .double(ms.rounded())), ("peer", .string(exchange.peer))]
        if let error { f.append(("error", .string(error))) }
        Log.shared.write("warn", "peer task done", f)
    }

    private func stop() {
        done = true
        download?.unlisten(self)
        download = nil
        sender = nil
        watch?.close()
        watch = nil
        probe?.close()
        probe = nil
        task.endReading()
        exchange.onWritable = nil
    }
}
