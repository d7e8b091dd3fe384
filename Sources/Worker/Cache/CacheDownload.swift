import Foundation
import UV
import TLS
import HTTP
import Metrics

/// Fetches a task from the origin once, into pieces: the response head decides the pieces, each
/// full piece is written before it is marked present, and the digest is checked at the end. It
/// serves no client itself: every client of the task reads the pieces. Readers in this worker
/// read the bytes not yet on disk straight from its buffers (`inMemory`), woken as they arrive;
/// readers in other workers read the file.
///
/// The disk is off the loop: a full piece goes to libuv's thread pool, which writes it and hashes
/// it while the loop goes on receiving the next one. Pieces are written one at a time, in order;
/// with `maxQueued` pieces waiting, reading from the origin pauses until the disk catches up.
final class CacheDownload {
    let task: CacheTask
    let fetch: OriginFetch
    /// The piece being received.
    private var buffer: UnsafeMutableRawPointer
    private var filled = 0
    private var piece = 0
    /// Full pieces waiting for the disk (the first one being written), and spare buffers.
    private var queued: [(k: Int, buffer: UnsafeMutableRawPointer, count: Int)] = []
    private var spare: [UnsafeMutableRawPointer] = []
    private var writing = false
    private var pausedForDisk = false
    /// The origin's body ended while pieces were still queued.
    private var endedWhileQueued = false
    static let maxQueued = 2
    private var finished = false
    /// Every piece is in, waiting for the digest check and the flush that seals the task.
    private var sealing = false
    /// The digest matched (the flush may still be running): this worker's readers may send the
    /// last byte. Durability is the task's business, not the client's: a client is owed verified
    /// bytes, and the task counts as complete for every worker only once it is flushed.
    private(set) var isVerified = false
    private let stopwatch = Stopwatch()
    private var redirects: [String] = []
    /// Downloads in progress in this worker, which keep them alive.
    /// Touched on the loop thread only (the process has one loop), so no lock.
    nonisolated(unsafe) static var active: [String: CacheDownload] = [:]
    /// Loop thread only, like `active`.
    nonisolated(unsafe) static var diskFullLogged = false

    /// The registry asked (before any redirect to storage): proof of possession compares against it.
    private let origin: String

    /// Record each piece's sha256 for peers to check what they fetch from this host.
    var recordPieceDigests = false

    /// This worker's readers of the task, woken when bytes arrive.
    private var listeners: [ObjectIdentifier: () -> Void] = [:]

    func listen(_ reader: AnyObject, _ wake: @escaping () -> Void) { listeners[ObjectIdentifier(reader)] = wake }
    func unlisten(_ reader: AnyObject) { listeners[ObjectIdentifier(reader)] = nil }

    /// Received bytes from `offset` that are not on disk yet (the piece being received, or one
    /// waiting for the disk), up to `max`; nil when `offset` is not among them. Valid until the
    /// loop next runs this download (a stored piece's buffer is reused).
    func inMemory(at offset: Int64, max: Int) -> UnsafeRawBufferPointer? {
        guard !finished, max > 0, offset >= 0 else { return nil }
        let k = Int(offset / Int64(task.pieceSize))
        let within = Int(offset - Int64(k) * Int64(task.pieceSize))
        let held: (UnsafeMutableRawPointer, Int)?
        if k == piece {
            held = (buffer, filled)
        } else if let q = queued.first(where: { $0.k == k }) {
            held = (q.buffer, q.count)
        } else {
            held = nil
        }
        guard let (base, count) = held, within < count else { return nil }
        return UnsafeRawBufferPointer(start: base + within, count: Swift.min(max, count - within))
    }

    init(task: CacheTask, fetch: OriginFetch) {
        self.task = task
        self.fetch = fetch
        origin = AuthConfirmations.origin(fetch.url)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: task.pieceSize, alignment: 64)
    }

    deinit {
        buffer.deallocate()
        for b in spare { b.deallocate() }
        for q in queued { q.buffer.deallocate() }
    }

    /// Bytes received, and at the last stall check: an origin that trickles (each byte in time for
    /// the idle timeout) would otherwise park every joiner of the task forever.
    private var received: UInt64 = 0
    private var receivedAtCheck: UInt64 = 0
    private let stallCheck = LoopTimer()
    /// Less than this in one `upstreamTimeout` window is a stall.
    static let minimumBytesPerWindow: UInt64 = 64 * 1024

    func start() {
        CacheDownload.active[task.key.id] = self
        Metrics.gauge(.tasksActive, 1)
        stallCheck.start(ms: Limits.upstreamIdleMs, repeatMs: Limits.upstreamIdleMs) { [weak self] in self?.checkProgress() }
        fetch.onHead = { [self] h, framing in
            guard h.status == 200, case .length(let declared) = framing else {
                giveUp("origin answered \(h.status)\(h.status == 200 ? " without a length" : "")")
                return
            }
            // A length the cache cannot hold (beyond Int64, or more pieces than a task has) is an origin error.
            guard let n = Int64(exactly: declared), n <= task.maxContentLength else {
                giveUp("origin announced \(declared) bytes, more than a task can hold")
                return
            }
            let digest = h.headers["Docker-Content-Digest"] ?? task.key.expectedDigest ?? ""
            do {
                try task.describe(contentLength: n, contentType: h.headers["Content-Type"] ?? "application/octet-stream",
                                  digestHeader: digest, origin: origin)
                if n == 0 { complete() }
            } catch {
                giveUp("\(error)")
            }
        }
        fetch.onBody = { [self] b in take(b) }
        fetch.onEnd = { [self] in
            guard !finished else { return }
            if queued.isEmpty { complete() } else { endedWhileQueued = true }
        }
        fetch.onFail = { [self] error in giveUp(error.description) }
        fetch.onRedirect = { [self] status, next in redirects.append("\(status) \(next.authority)") }
        fetch.start()
    }

    private func checkProgress() {
        guard !sealing else { return }
        let progress = received - receivedAtCheck
        receivedAtCheck = received
        let remaining = task.contentLength.map { UInt64(max(0, $0)) - min(received, UInt64(max(0, $0))) }
        guard progress < CacheDownload.minimumBytesPerWindow, remaining.map({ progress < $0 }) ?? true else { return }
        giveUp("origin stalled: \(progress) bytes in \(Limits.upstreamIdleMs / 1000) s")
    }

    private func take(_ b: UnsafeRawBufferPointer) {
        received += UInt64(b.count)
        var off = 0
        while off < b.count && !finished {
            guard piece < task.pieceCount else {
                giveUp("origin sent more bytes than its Content-Length")
                return
            }
            let want = Int(task.pieceRange(piece).count) - filled
            let n = min(want, b.count - off)
            (buffer + filled).copyMemory(from: b.baseAddress! + off, byteCount: n)
            filled += n
            off += n
            if filled == Int(task.pieceRange(piece).count) { storeCurrent() }
        }
        wakeReaders()
    }

    /// This worker's readers of the task: there is more for them (bytes, or the digest matched).
    private func wakeReaders() {
        guard !listeners.isEmpty else { return }
        for wake in Array(listeners.values) { wake() }
    }

    /// A full piece: queued for the disk; a fresh buffer takes the next one.
    private func storeCurrent() {
        queued.append((piece, buffer, filled))
        piece += 1
        filled = 0
        buffer = spare.popLast() ?? UnsafeMutableRawPointer.allocate(byteCount: task.pieceSize, alignment: 64)
        if queued.count >= CacheDownload.maxQueued && !pausedForDisk {
            pausedForDisk = true
            fetch.pauseResponse()
        }
        writeNext()
    }

    /// Writes (and hashes) the first queued piece on the thread pool; marks it present on the loop.
    private func writeNext() {
        guard !writing, !finished, let q = queued.first else { return }
        let task = task, withDigest = recordPieceDigests
        let bytes = UnsafeRawBufferPointer(start: q.buffer, count: q.count)
        let offset: Int64
        do { offset = try task.pieceOffset(q.k, count: q.count) } catch { return giveUp("\(error)") }
        writing = true
        // The write and the hash of the piece run side by side on two pool threads.
        var written: Result<Void, Error> = .success(())
        var digest: [UInt8]?
        var pending = 2
        let both = { [self] in
            pending -= 1
            if pending == 0 { stored(q, written.map { digest }) }
        }
        ThreadPool.run({ written = Result { try task.writeBytes(bytes, at: offset) } }, then: both)
        ThreadPool.run({ digest = task.hashPiece(q.k, bytes, withDigest: withDigest) }, then: both)
    }

    /// Both halves of the first queued piece are done: it is present for every reader.
    private func stored(_ q: (k: Int, buffer: UnsafeMutableRawPointer, count: Int), _ result: Result<[UInt8]?, Error>) {
        do {
            writing = false
            queued.removeFirst()
            spare.append(q.buffer)
        }
        guard !finished else { return }
        do {
            try task.markStored(q.k, digest: try result.get())
        } catch let e as SystemError where e.isDiskFull {
            return diskFull(e)
        } catch {
            return giveUp("\(error)")
        }
        if pausedForDisk && queued.count < CacheDownload.maxQueued {
            pausedForDisk = false
            fetch.resumeResponse()
        }
        if queued.isEmpty && endedWhileQueued { return complete() }
        writeNext()
    }

    private func diskFull(_ e: SystemError) {
        if !CacheDownload.diskFullLogged {
            CacheDownload.diskFullLogged = true
            Log.shared.error("disk full: not caching", ["taskId": task.key.id, "error": "\(e)"])
        }
        guard !finished else { return }
        task.stopCaching()
        fetch.cancel()
        end("disk full")
    }

    private func complete() {
        guard !finished, !sealing else { return }
        guard piece == task.pieceCount else {
            giveUp("origin body ended at piece \(piece) of \(task.pieceCount)")
            return
        }
        // One flush per task, on the thread pool; the task is complete only once it is on disk.
        sealing = true
        task.verifyFlushAndSeal(verified: { [self] in
            isVerified = true
            wakeReaders()
        }) { [self] error in
            sealing = false
            guard !finished else { return }
            if error == "digest mismatch" { return end(error) }
            if let error { return giveUp(error) }
            end(nil)
        }
    }

    private func giveUp(_ reason: String) {
        guard !finished else { return }
        task.abandon()
        fetch.cancel()
        end(reason)
    }

    private func end(_ error: String?) {
        finished = true
        listeners.removeAll()
        stallCheck.close()
        let ms = stopwatch.elapsedMs
        var fields: [(String, LogValue)] = [("taskId", .string(task.key.id)), ("source", .string("origin")),
                                            ("bytes", .int(Int(task.contentLength ?? 0))), ("costMs", .double(ms.rounded())),
                                            ("upstream", .string(fetch.url.authority))]
        if !redirects.isEmpty { fields.append(("redirect", .string(redirects.joined(separator: ", ")))) }
        if let error { fields.append(("error", .string(error))) }
        Log.shared.write(error == nil ? "info" : "warn", error == nil ? "task downloaded" : "task download failed", fields)
        CacheDownload.active[task.key.id] = nil
        Metrics.gauge(.tasksActive, -1)
    }
}
