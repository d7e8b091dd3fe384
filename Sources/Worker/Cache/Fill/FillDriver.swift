import Foundation
import UV
import TLS
import HTTP
import Metrics

/// Carries out a `TaskFill`'s decisions for one claimed task with one `PieceSource`: hashes a peer's
/// piece and writes a piece that may be stored on libuv's thread pool, marks it present (every
/// worker's readers take it from there), seals the task, or hands it back to the origin. It decides
/// nothing itself: every event goes to the fill, every action comes from it.
///
/// The origin's pieces are written one at a time, in order, each hashed into the blob's running
/// sha256 beside its write (the write and the hash on two pool threads); with `maxQueued` of them
/// waiting, the origin is paused until the disk catches up. This worker's readers take the bytes
/// not yet on disk straight from those buffers (`inMemory`), woken as they arrive. A peer's pieces
/// land out of order, each checked against the seed's digest: when every piece matched the digests
/// of a seed that verified the blob, the blob is not hashed again (`sealChecked`); otherwise its
/// hash catches up from the file (`CacheTask.catchUpHash`).
package final class FillDriver: PieceSink {
    let task: CacheTask
    let source: PieceSource
    /// Starts the download from the origin instead (the claim is kept).
    let origin: () -> Void
    /// Record each piece's sha256 for peers to check what they fetch from this host.
    let recordPieceDigests: Bool
    private var fill: TaskFill
    /// Pieces in hand, between `delivered` and their write, with their sha256 when it was taken.
    private var held: [Int: (buffer: PieceBuffer, digest: [UInt8]?)] = [:]
    /// The origin's pieces waiting for the disk, in order (the first one being written).
    private var queued: [(k: Int, buffer: PieceBuffer)] = []
    private var writing = false
    private var paused = false
    static let maxQueued = 2
    private let ticker = LoopTimer()
    private var ended = false
    private let stopwatch = Stopwatch()
    /// The digest matched (the flush may still be running): this worker's readers may send the
    /// last byte. Durability is the task's business, not the client's: a client is owed verified
    /// bytes, and the task counts as complete for every worker only once it is flushed.
    private(set) var isVerified = false
    /// This worker's readers of the task, woken when bytes arrive.
    private var listeners: [ObjectIdentifier: () -> Void] = [:]
    /// Fills in progress in this worker, which keep them alive.
    private static let running = LoopBound([String: FillDriver]())
    static var active: [String: FillDriver] {
        get { running.value }
        set { running.value = newValue }
    }
    private static let diskFull = LoopBound(false)
    /// `DFGET_TRACE_PIECES=1`: a log line per piece stored (for the benchmark's timeline).
    static let trace = ProcessInfo.processInfo.environment["DFGET_TRACE_PIECES"] == "1"

    /// `fromOrigin`: the source streams the whole blob (the origin); else it is asked piece by piece,
    /// and `originRanges` (a GET of the blob with that `Range`) brings the pieces the peers could
    /// not, if the fill asks for them.
    package init(task: CacheTask, source: PieceSource, me: SourceID?, fromOrigin: Bool, recordPieceDigests: Bool = false,
                 tuning: TaskFill.Tuning = TaskFill.Tuning(), originRanges: ((String) -> OriginFetch)? = nil,
                 origin: @escaping () -> Void = {}) {
        self.task = task
        self.source = originRanges.map { PeersThenOrigin(peers: source, origin: RangeOrigin(task: task, makeFetch: $0)) } ?? source
        self.origin = origin
        self.recordPieceDigests = recordPieceDigests
        fill = TaskFill(pieceSize: task.pieceSize, me: me, now: EventLoop.nowMs, fromOrigin: fromOrigin, maxLength: task.maxContentLength,
                        tuning: tuning, spread: { [weak source] k in source?.spread(k) ?? UInt64(k) })
    }

    /// The origin's stream into `task` (claimed by this worker).
    /// `resume` (a GET of the blob with a `Range`) takes a download the origin cut on from its last whole piece.
    package static func fromOrigin(_ task: CacheTask, fetch: OriginFetch, recordPieceDigests: Bool,
                                   resume: ((String) -> OriginFetch)? = nil) -> FillDriver {
        FillDriver(task: task, source: OriginSource(fetch: fetch, pieceSize: task.pieceSize, maxLength: task.maxContentLength, resume: resume),
                   me: nil, fromOrigin: true, recordPieceDigests: recordPieceDigests)
    }

    package var phase: TaskFill.Phase { fill.phase }
    /// The origin streams the blob to this fill, in order.
    var streamsFromOrigin: Bool { fill.fromOrigin }
    /// Why the peers could not finish and the origin's ranges bring the rest (nil: they did not fail).
    var rangeFallback: FillFailure? { fill.rangeFallback }
    var originBytes: Int { fill.bytesFrom[.origin] ?? 0 }

    package func start() {
        FillDriver.active[task.key.id] = self
        Metrics.gauge(.tasksActive, 1)
        if !fill.fromOrigin { ticker.start(ms: 1000, repeatMs: 1000) { [weak self] in self?.handle(.tick) } }
        source.start(self)
    }

    // MARK: Readers in this worker

    func listen(_ reader: AnyObject, _ wake: @escaping () -> Void) {
        listeners[ObjectIdentifier(reader)] = wake
        handle(.readerAttached)
    }

    func unlisten(_ reader: AnyObject) {
        guard listeners.removeValue(forKey: ObjectIdentifier(reader)) != nil else { return }
        handle(.readerLeft)
    }

    private func wakeReaders() {
        guard !listeners.isEmpty else { return }
        for wake in Array(listeners.values) { wake() }
    }

    /// Received bytes from `offset` that are not on disk yet (the origin's piece being received, or
    /// one waiting for the disk), up to `max`; nil when `offset` is not among them. Valid until the
    /// loop next runs this fill (a stored piece's buffer is reused). A peer's bytes never show here
    /// before their digest matched and they are on disk.
    func inMemory(at offset: Int64, max: Int) -> UnsafeRawBufferPointer? {
        guard !ended, max > 0, offset >= 0, fill.fromOrigin else { return nil }
        let k = Int(offset / Int64(task.pieceSize))
        let within = Int(offset - Int64(k) * Int64(task.pieceSize))
        guard let q = queued.first(where: { $0.k == k }) else { return source.partial(at: offset, max: max) }
        guard within < q.buffer.count else { return nil }
        return UnsafeRawBufferPointer(start: q.buffer.base + within, count: Swift.min(max, q.buffer.count - within))
    }

    // MARK: PieceSink

    package func news(_ news: PieceNews, seed: SourceID) {
        // The seed's holders become this task's too: a host that follows this one instead (a relay,
        // when it cannot reach the owner) sees the whole swarm, not only those that came to it.
        let new = news.followers.filter { knownHolders.insert($0).inserted }
        if !new.isEmpty { task.addHolders(new.map(\.name)) }
        handle(.news(news, seed: seed))
    }
    private var knownHolders: Set<SourceID> = []

    package func described(length: Int64, contentType: String, digestHeader: String?) {
        handle(.described(length: length, contentType: contentType, digestHeader: digestHeader))
    }

    package func progressed() {
        // The origin's bytes are this worker's readers' at once; a peer's only once stored.
        if fill.fromOrigin { return wakeReaders() }
        // A peer's bytes arriving, at most once a second: the fill is slow, not stalled.
        guard EventLoop.nowMs &- lastBytesReported >= 1000 else { return }
        lastBytesReported = EventLoop.nowMs
        handle(.bytesArrived)
    }
    private var lastBytesReported: UInt64 = 0

    package func streamEnded() { handle(.streamEnded) }

    package func failed(_ why: FillFailure) { handle(.failed(why)) }

    package func fetchFailed(_ k: Int, from: SourceID, _ why: FetchFailure) { handle(.fetchFailed(k, from: from, why)) }

    /// The origin's piece goes straight to the fill (the blob's digest checks it); a peer's is hashed
    /// on the thread pool first, and stays in flight meanwhile.
    package func delivered(_ k: Int, from: SourceID, _ buffer: PieceBuffer) {
        guard !ended else { return }
        if from == .origin && fill.fromOrigin {
            held[k] = (buffer, nil)
            handle(.arrived(k, from: from, digest: nil))
            held[k] = nil
            return
        }
        var digest: [UInt8] = []
        ThreadPool.run({
            let h = SHA256Digest()
            h.update(buffer.bytes)
            digest = h.finalize()
        }, then: { [self] in
            guard !ended else { return }
            held[k] = (buffer, digest)
            handle(.arrived(k, from: from, digest: digest))
            // Cut through: kept until the seed's digest says whether to store it.
            if !fill.awaitsDigest(k) { held[k] = nil }
        })
    }

    // MARK: The fill's actions

    private func handle(_ event: TaskFill.Event) {
        guard !ended else { return }
        for action in fill.handle(event, now: EventLoop.nowMs) { run(action) }
    }

    private func run(_ action: FillAction) {
        guard !ended else { return }
        switch action {
        case .describe(let length, let contentType, let digestHeader):
            do {
                let registry = source.registry.isEmpty ? task.origin : source.registry
                try task.describe(contentLength: length, contentType: contentType,
                                  digestHeader: digestHeader ?? task.key.expectedDigest ?? "", origin: registry, pieceSize: fill.pieceSize)
            } catch {
                handle(.failed(.store("\(error)")))
            }
        case .fetch(let k, let from):
            source.fetch(k, from: from, count: Int(task.pieceRange(k).count))
        case .store(let k, let from):
            guard let (buffer, digest) = held.removeValue(forKey: k) else {
                return handle(.storeFailed(k, from: from, .store("piece \(k) not in hand")))
            }
            if from == .origin && fill.fromOrigin {
                queued.append((k, buffer))
                if queued.count >= FillDriver.maxQueued && !paused {
                    paused = true
                    source.pause()
                }
                writeNext()
            } else {
                storePeerPiece(k, from: from, buffer, digest: digest)
            }
        case .drop(let k):
            held[k] = nil
        case .avoid(let s, let why):
            switch why {
            case .badDigest(let k):
                Metrics.count(.peerBadPieces)
                Log.shared.warn("peer sent a piece that does not match its digest: avoided", ["taskId": task.key.id, "peer": s.name, "piece": k])
            case .refused(let k):
                Log.shared.warn(s == .origin ? "origin failed a piece: from the whole blob" : "peer failed a piece: avoided",
                                ["taskId": task.key.id, "peer": s.name, "piece": k])
            case .unreachable:
                Log.shared.info(s == .origin ? "origin unreachable: from the whole blob" : "peer unreachable: avoided",
                                ["taskId": task.key.id, "peer": s.name])
            }
            source.avoid(s, unreachable: why == .unreachable)
        case .rangeFromOrigin(let why):
            Metrics.count(.peerRangeFallbacks)
            Log.shared.warn("peers could not finish the task: the missing pieces from the origin by range",
                            ["taskId": task.key.id, "error": why.description, "missing": fill.missing])
        case .replaceSeed(let s):
            source.replaceSeed(s)
        case .seal:
            seal(checked: false)
        case .sealChecked:
            seal(checked: true)
        case .fallBack(let why):
            Metrics.count(.peerRestarts)
            Log.shared.warn("peers could not fill the task: from the origin", ["taskId": task.key.id, "error": why.description])
            guard task.isDownloader, (try? task.restartDownload()) != nil else {
                task.abandon()
                return end(why)
            }
            end(why)
            origin()
        case .finish:
            end(nil)
        case .abort(let why):
            switch why {
            case .diskFull:
                if !FillDriver.diskFull.value {
                    FillDriver.diskFull.value = true
                    Log.shared.error("disk full: not caching", ["taskId": task.key.id])
                }
                task.stopCaching()
            case .digestMismatch:
                break  // dropped as corrupt already
            default:
                task.abandon()
            }
            end(why)
        }
    }

    /// The first queued origin piece: written and hashed (the blob's running hash, and its own
    /// sha256 when peers may ask) side by side on two pool threads; present once both are done.
    private func writeNext() {
        guard !writing, !ended, let q = queued.first else { return }
        // Each piece's own sha256 only once a member asked for the task: until then each byte is
        // hashed once (the pieces before are hashed from the file if a member asks later).
        let task = task, withDigest = recordPieceDigests && task.peersWant
        let bytes = q.buffer.bytes
        let offset: Int64
        do { offset = try task.pieceOffset(q.k, count: bytes.count) } catch {
            return handle(.storeFailed(q.k, from: .origin, .store("\(error)")))
        }
        writing = true
        var written: Result<Void, Error> = .success(())
        var digest: [UInt8]?
        var pending = 2
        let both = { [self] in
            pending -= 1
            guard pending == 0 else { return }
            writing = false
            queued.removeFirst()
            mark(q.k, from: .origin, q.buffer, written.map { digest })
            if paused && queued.count < FillDriver.maxQueued && !ended {
                paused = false
                source.resume()
            }
            writeNext()
        }
        ThreadPool.run({ written = Result { try task.writeBytes(bytes, at: offset) } }, then: both)
        ThreadPool.run({ digest = task.hashPiece(q.k, bytes, withDigest: withDigest) }, then: both)
    }

    /// A peer's piece (its digest matched): written on the pool, then present, and the blob's hash
    /// catches up from the file.
    private func storePeerPiece(_ k: Int, from: SourceID, _ buffer: PieceBuffer, digest: [UInt8]?) {
        let offset: Int64
        do { offset = try task.pieceOffset(k, count: buffer.count) } catch {
            return handle(.storeFailed(k, from: from, .store("\(error)")))
        }
        var written: Result<Void, Error> = .success(())
        ThreadPool.run({ [task] in
            written = Result { try task.writeBytes(buffer.bytes, at: offset) }
        }, then: { [self] in
            mark(k, from: from, buffer, written.map { digest })
            // Pieces checked against a seed's digests need no hash of the blob here (`sealChecked`);
            // once that cannot be, the blob's hash follows the pieces from the file.
            if !ended && !fill.seedChecked { task.catchUpHash() }
        })
    }

    /// The piece is written (or not): present for every reader, or the fill hears why not.
    private func mark(_ k: Int, from: SourceID, _ buffer: PieceBuffer, _ result: Result<[UInt8]?, Error>) {
        let count = buffer.count
        source.stored(k, from: from, buffer: buffer)
        guard !ended else { return }
        do {
            try task.markStored(k, digest: try result.get())
        } catch let e as SystemError where e.isDiskFull {
            return handle(.storeFailed(k, from: from, .diskFull))
        } catch {
            return handle(.storeFailed(k, from: from, .store("\(error)")))
        }
        if FillDriver.trace {
            Log.shared.info("piece stored", ["taskId": task.key.id, "piece": k, "from": from.name, "ms": stopwatch.elapsedMs.rounded()])
        }
        handle(.stored(k, from: from, bytes: count))
    }

    /// One flush per task, on the thread pool; the task is complete only once it is on disk.
    /// `checked`: every piece matched the digests of a seed that verified the blob, so the blob is
    /// not hashed again here.
    private func seal(checked: Bool) {
        let verifyAndSeal = { [self] in
            task.verifyFlushAndSeal(checked: checked, verified: { [self] in
                isVerified = true
                wakeReaders()
            }) { [self] error in
                handle(.sealed(error.map { $0 == "digest mismatch" ? .digestMismatch : .seal($0) }))
            }
        }
        // A peer's pieces land out of order: the blob's hash follows them on the pool first.
        if fill.fromOrigin || checked { verifyAndSeal() } else { task.catchUpHash(then: verifyAndSeal) }
    }

    /// The fill's record for `/debug/tasks`: where its bytes came from, how long it took, why it stopped.
    private func remember(_ error: FillFailure?) {
        let ms = stopwatch.elapsedMs
        var bytes = TaskHistory.Bytes()
        for (s, n) in fill.bytesFrom { if s == .origin { bytes.origin += n } else { bytes.peers[s.name] = n } }
        if fill.fromOrigin, error == nil { bytes.origin = Int(task.contentLength ?? 0) }
        let total = bytes.origin + bytes.peers.values.reduce(0, +)
        // A peer fill stops for the origin to take over, unless it was aborted (full disk, corrupt).
        let state = error == nil ? "complete"
            : !fill.fromOrigin && error != .diskFull && error != .digestMismatch ? "stopped" : "failed"
        let r = TaskHistory.Record(digest: "sha256:" + task.key.id, state: state, source: fill.fromOrigin ? "origin" : "peers",
                                   size: task.contentLength, bytes: bytes, owner: fill.seed?.name,
                                   fallback: fill.rangeFallback.map { "range: \($0)" }, error: error?.description,
                                   started: TaskHistory.timestamp(Date(timeIntervalSinceNow: -ms / 1000)), durationMs: ms.rounded(),
                                   mbPerSecond: ms > 0 && total > 0 ? (Double(total) / 1e6 / (ms / 1000) * 10).rounded() / 10 : nil,
                                   pid: getpid())
        TaskHistory.record(r, root: (task.dataPath as NSString).deletingLastPathComponent)
    }

    private func end(_ error: FillFailure?) {
        ended = true
        ticker.close()
        source.stop()
        listeners.removeAll()
        var f: [(String, LogValue)] = [("taskId", .string(task.key.id))]
        if fill.fromOrigin {
            f += source.logFields
            f.append(("costMs", .double(stopwatch.elapsedMs.rounded())))
        } else {
            let from = fill.bytesFrom
            f += [("source", .string("peers")), ("bytes", .int(from.values.reduce(0, +))), ("originBytes", .int(originBytes)),
                  ("costMs", .double(stopwatch.elapsedMs.rounded())), ("owner", .string(fill.seed?.name ?? "-")),
                  ("fromPeers", .string(from.filter { $0.key != .origin }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")))]
            if let why = fill.rangeFallback { f.append(("fallback", .string("range: \(why)"))) }
        }
        if let error { f.append(("error", .string(error.description))) }
        let failed = fill.fromOrigin ? "task download failed" : "task from peers stopped"
        Log.shared.write(error == nil ? "info" : "warn", error == nil ? "task downloaded" : failed, f)
        remember(error)
        FillDriver.active[task.key.id] = nil
        Metrics.gauge(.tasksActive, -1)
    }
}
