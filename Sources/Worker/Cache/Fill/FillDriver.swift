import Foundation
import UV
import TLS
import Metrics

/// Carries out a `TaskFill`'s decisions for one claimed task with one `PieceSource`: hashes a piece
/// that arrived and writes one that matched on libuv's thread pool, marks it present (every
/// worker's readers take it from there), seals the task, or hands it back to the origin. It decides
/// nothing itself: every event goes to the fill, every action comes from it.
package final class FillDriver: PieceSink {
    let task: CacheTask
    let source: PieceSource
    /// Starts the download from the origin instead (the claim is kept).
    let origin: () -> Void
    private var fill: TaskFill
    /// Pieces in hand, between `delivered` and their write.
    private var held: [Int: [UInt8]] = [:]
    private var digests: [Int: [UInt8]] = [:]
    private let ticker = LoopTimer()
    private var ended = false
    private let stopwatch = Stopwatch()
    /// Fills in progress in this worker, which keep them alive.
    nonisolated(unsafe) static var active: [String: FillDriver] = [:]  // loop thread only
    /// `DFGET_TRACE_PIECES=1`: a log line per piece stored (for the benchmark's timeline).
    static let trace = ProcessInfo.processInfo.environment["DFGET_TRACE_PIECES"] == "1"

    package init(task: CacheTask, source: PieceSource, me: SourceID?, tuning: TaskFill.Tuning = TaskFill.Tuning(),
                 origin: @escaping () -> Void) {
        self.task = task
        self.source = source
        self.origin = origin
        fill = TaskFill(pieceSize: task.pieceSize, me: me, now: EventLoop.nowMs, tuning: tuning, spread: { [weak source] k in
            source?.spread(k) ?? UInt64(k)
        })
    }

    package var phase: TaskFill.Phase { fill.phase }

    package func start() {
        FillDriver.active[task.key.id] = self
        Metrics.gauge(.tasksActive, 1)
        ticker.start(ms: 1000, repeatMs: 1000) { [weak self] in self?.handle(.tick) }
        source.start(self)
    }

    // MARK: PieceSink

    package func news(_ news: PieceNews, seed: SourceID) { handle(.news(news, seed: seed)) }

    package func failed(_ why: FillFailure) { handle(.failed(why)) }

    package func fetchFailed(_ k: Int, from: SourceID, _ why: FetchFailure) { handle(.fetchFailed(k, from: from, why)) }

    /// The piece's sha256 runs on the thread pool; the piece stays in flight meanwhile.
    package func delivered(_ k: Int, from: SourceID, bytes: [UInt8]) {
        guard !ended else { return }
        var digest: [UInt8] = []
        ThreadPool.run({
            let h = SHA256Digest()
            bytes.withUnsafeBytes { h.update($0) }
            digest = h.finalize()
        }, then: { [self] in
            guard !ended else { return }
            held[k] = bytes
            digests[k] = digest
            handle(.arrived(k, from: from, digest: digest))
            held[k] = nil
            digests[k] = nil
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
        case .describe(let length, let contentType):
            do {
                try task.describe(contentLength: length, contentType: contentType, digestHeader: task.key.expectedDigest ?? "", origin: task.origin)
            } catch {
                handle(.failed(.store("\(error)")))
            }
        case .fetch(let k, let from):
            source.fetch(k, from: from, count: Int(task.pieceRange(k).count))
        case .store(let k, let from):
            guard let bytes = held[k], let digest = digests[k] else { return handle(.storeFailed(k, from: from, .store("piece \(k) not in hand"))) }
            store(k, from: from, bytes, digest: digest)
        case .avoid(let s, let why):
            switch why {
            case .badDigest(let k):
                Metrics.count(.peerBadPieces)
                Log.shared.warn("peer sent a piece that does not match its digest: avoided", ["taskId": task.key.id, "peer": s.name, "piece": k])
            case .refused(let k):
                Log.shared.warn("peer failed a piece: avoided", ["taskId": task.key.id, "peer": s.name, "piece": k])
            case .unreachable:
                break
            }
            source.avoid(s, unreachable: why == .unreachable)
        case .replaceSeed(let s):
            source.replaceSeed(s)
        case .seal:
            // Pieces land out of order: the blob's hash follows them on the pool, then the seal.
            task.catchUpHash { [self] in
                task.verifyFlushAndSeal { [self] error in
                    handle(.sealed(error.map { $0 == "digest mismatch" ? .digestMismatch : .seal($0) }))
                }
            }
        case .fallBack(let why):
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
            end(why)
        }
    }

    /// The write runs on the thread pool; marking the piece present (and the blob's hash catching
    /// up) on the loop.
    private func store(_ k: Int, from: SourceID, _ bytes: [UInt8], digest: [UInt8]) {
        let offset: Int64
        do { offset = try task.pieceOffset(k, count: bytes.count) } catch {
            return handle(.storeFailed(k, from: from, .store("\(error)")))
        }
        var written: Result<Void, Error> = .success(())
        ThreadPool.run({ [task] in
            written = Result { try bytes.withUnsafeBytes { try task.writeBytes($0, at: offset) } }
        }, then: { [self] in
            guard !ended else { return }
            do {
                try written.get()
                try task.markStored(k, digest: digest)
                task.catchUpHash()
            } catch let e as SystemError where e.isDiskFull {
                return handle(.storeFailed(k, from: from, .diskFull))
            } catch {
                return handle(.storeFailed(k, from: from, .store("\(error)")))
            }
            source.stored(k, from: from)
            if FillDriver.trace {
                Log.shared.info("piece stored", ["taskId": task.key.id, "piece": k, "from": from.name, "ms": stopwatch.elapsedMs.rounded()])
            }
            handle(.stored(k, from: from, bytes: bytes.count))
        })
    }

    private func end(_ error: FillFailure?) {
        ended = true
        ticker.close()
        source.stop()
        let from = fill.bytesFrom
        var f: [(String, LogValue)] = [("taskId", .string(task.key.id)), ("source", .string("peers")),
                                       ("bytes", .int(from.values.reduce(0, +))), ("originBytes", .int(0)),
                                       ("costMs", .double(stopwatch.elapsedMs.rounded())), ("owner", .string(fill.seed?.name ?? "-"))]
        f.append(("fromPeers", .string(from.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))))
        if let error { f.append(("error", .string(error.description))) }
        Log.shared.write(error == nil ? "info" : "warn", error == nil ? "task downloaded" : "task from peers stopped", f)
        FillDriver.active[task.key.id] = nil
        Metrics.gauge(.tasksActive, -1)
    }
}
