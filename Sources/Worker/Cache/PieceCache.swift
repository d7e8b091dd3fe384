// Module Cache: the piece cache every worker shares (storage facade, task keys, downloads into
// pieces, readers, authorization confirmations, garbage collection).
// May import: CUV (internally), UV, TLS, HTTP, Config, Metrics.

import Foundation
import UV

/// The piece cache's facade: tasks by key, their listing for garbage collection. Content lives in
/// `<root>/<id>.data`, shared state in `<root>/<id>.meta`; no caller sees either.
public final class PieceCache {
    public let root: String
    public let pieceSize: Int
    /// The smallest piece (the task's piece size until its length is known). A blob's pieces are
    /// this size, or the power of two above it that keeps them within `TaskMeta.maxPieces`: 1 MiB
    /// up to 32 GiB. Small pieces let a swarm pass a layer on sooner (a host can serve a piece
    /// once it has it, so a hop costs one piece's time) and keep the origin's buffers small.
    public static let defaultPieceSize = 1 << 20
    /// The largest piece, and so the largest blob a task holds (`maxPieces` of them: 8 TiB).
    public static let maxPieceSize = 256 << 20

    /// The piece size of a blob of `length` bytes, from `base` (the cache's): the same on every host.
    public static func pieceSize(base: Int, length: Int64) -> Int {
        var size = max(1, base)
        while Int64(size) * Int64(TaskMeta.maxPieces) < length && size < maxPieceSize { size *= 2 }
        return size
    }

    public init(root: String, pieceSize: Int = PieceCache.defaultPieceSize) throws {
        self.root = root
        self.pieceSize = pieceSize
        // Cached layers may be private: the folder is the daemon's alone.
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(root, 0o700)
    }

    func paths(_ id: String) -> (meta: String, data: String) {
        ("\(root)/\(id).meta", "\(root)/\(id).data")
    }

    /// Complete tasks this worker has open, reused by every hit: no open, mmap, munmap and close
    /// per request. A complete task does not change; one that garbage collection unlinked is
    /// dropped at its next use. At most `openLimit` (two descriptors each).
    private var complete: [String: (task: CacheTask, used: UInt64)] = [:]
    private var uses: UInt64 = 0
    static let openLimit = 512

    /// The task for `key`, created empty when absent.
    public func open(_ key: TaskKey) throws -> CacheTask {
        if let t = openComplete(key.id) { return t }
        let p = paths(key.id)
        let t = try CacheTask(key: key, metaPath: p.meta, dataPath: p.data)
        if t.isComplete { keep(t) }
        return t
    }

    /// The task if the cache has heard of it.
    public func lookup(_ key: TaskKey) -> CacheTask? {
        if let t = openComplete(key.id) { return t }
        return FileManager.default.fileExists(atPath: paths(key.id).meta) ? try? open(key) : nil
    }

    private func openComplete(_ id: String) -> CacheTask? {
        guard let e = complete[id] else { return nil }
        guard e.task.isComplete, e.task.isLinkedLately else {
            complete[id] = nil
            return nil
        }
        uses += 1
        complete[id] = (e.task, uses)
        return e.task
    }

    /// Closes the kept tasks that garbage collection (of any worker) unlinked, so their disk space
    /// is given back; the worker calls it every few seconds.
    public func dropEvicted() {
        for (id, e) in complete where !e.task.isLinked { complete[id] = nil }
    }

    private func keep(_ t: CacheTask) {
        if complete.count >= PieceCache.openLimit, let oldest = complete.min(by: { $0.value.used < $1.value.used }) {
            complete[oldest.key] = nil
        }
        uses += 1
        complete[t.key.id] = (t, uses)
    }

    public struct Entry {
        public let id: String
        public let bytes: Int64
        public let lastAccess: Date
    }

    /// Where the cache lives under the daemon's `dataDir`.
    public static func root(dataDir: String) -> String { (dataDir as NSString).appendingPathComponent("cache") }

    /// What the cache under `dataDir` holds: the bytes of its blob data files and how many tasks
    /// (a directory listing and a stat per task; for the master's scrape, which opens nothing).
    public static func usage(dataDir: String) -> (bytes: UInt64, tasks: Int) {
        let dir = root(dataDir: dataDir)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return (0, 0) }
        var total: UInt64 = 0, tasks = 0
        for n in names where n.hasSuffix(".data") {
            var st = stat()
            guard stat((dir as NSString).appendingPathComponent(n), &st) == 0 else { continue }
            total += UInt64(max(0, st.st_size))
            tasks += 1
        }
        return (total, tasks)
    }

    /// A task being filled, as its meta file says (for `GET /debug/tasks`).
    public struct Filling: Codable, Equatable, Sendable {
        public let digest: String
        public let state: String
        public let size: Int64?
        public let pieces: Int
        public let piecesDone: Int
    }

    /// The tasks under `dataDir` that are being filled now (reads each meta's header; opens nothing
    /// for writing).
    public static func filling(dataDir: String) -> [Filling] {
        let dir = root(dataDir: dataDir)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".meta") }.sorted().compactMap { name in
            guard let m = TaskMeta.peek(path: (dir as NSString).appendingPathComponent(name)),
                  m.state == .downloading || m.state == .empty else { return nil }
            return Filling(digest: "sha256:" + name.dropLast(5), state: "\(m.state)", size: m.length, pieces: m.pieces, piecesDone: m.present)
        }
    }

    /// Every task on disk, least recently used first.
    public func entries() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { $0.hasSuffix(".meta") }.compactMap { name in
            let id = String(name.dropLast(5))
            let p = paths(id)
            guard let m = try? FileManager.default.attributesOfItem(atPath: p.meta) else { return nil }
            let size = (try? FileManager.default.attributesOfItem(atPath: p.data))?[.size] as? Int64 ?? 0
            return Entry(id: id, bytes: size, lastAccess: m[.modificationDate] as? Date ?? .distantPast)
        }.sorted { $0.lastAccess < $1.lastAccess }
    }

    /// Removes a task unless someone downloads it now (its lock) or reads it (a shared lock on the data).
    @discardableResult
    public func evict(_ id: String) -> Bool {
        guard PieceCache.removeFiles(paths(id)) else { return false }
        // This worker's hits stop here at once; other workers notice within a second.
        complete[id] = nil
        return true
    }

    /// The files' part of `evict`: reads and changes nothing but the files, so any thread may run it.
    static func removeFiles(_ p: (meta: String, data: String)) -> Bool {
        let mfd = Glibc.open(p.meta, O_RDWR | O_CLOEXEC)
        guard mfd >= 0 else { return false }
        defer { close(mfd) }
        guard flock(mfd, LOCK_EX | LOCK_NB) == 0 else { return false }
        let dfd = Glibc.open(p.data, O_RDONLY | O_CLOEXEC)
        defer { if dfd >= 0 { close(dfd) } }
        if dfd >= 0 && flock(dfd, LOCK_EX | LOCK_NB) != 0 { return false }
        unlink(p.data)
        unlink(p.meta)
        CacheTask.unlinkSidecars(dataPath: p.data)
        return true
    }

    /// Evicts tasks unused for `expireAfter` seconds, then least recently used ones until the cache is
    /// under `maxBytes`. Returns the ids removed. On the calling thread: tests and tools.
    public func collectGarbage(now: Date = Date(), expireAfter: TimeInterval, maxBytes: Int64?) -> [String] {
        let removed = evictFiles(now: now, expireAfter: expireAfter, maxBytes: maxBytes)
        for id in removed { complete[id] = nil }
        return removed
    }

    /// The same off the loop: the listing, a stat per file and the unlinks (thousands of files in a
    /// big cache) run on the thread pool, and so does `maxBytes` (it may list the cache too); `done`
    /// gets the ids removed, on the loop.
    public func collectGarbage(expireAfter: TimeInterval, maxBytes: @escaping () -> Int64?, then done: @escaping ([String]) -> Void) {
        var removed: [String] = []
        ThreadPool.run({ [self] in
            removed = evictFiles(now: Date(), expireAfter: expireAfter, maxBytes: maxBytes())
        }, then: { [self] in
            for id in removed { complete[id] = nil }
            done(removed)
        })
    }

    /// The files' part of garbage collection: touches nothing of this object but `root` (any thread).
    private func evictFiles(now: Date, expireAfter: TimeInterval, maxBytes: Int64?) -> [String] {
        var removed: [String] = []
        var live = entries()
        for e in live where now.timeIntervalSince(e.lastAccess) > expireAfter && PieceCache.removeFiles(paths(e.id)) { removed.append(e.id) }
        live.removeAll { removed.contains($0.id) }
        if let maxBytes {
            var total = live.reduce(0) { $0 + $1.bytes }
            for e in live where total > maxBytes {
                if PieceCache.removeFiles(paths(e.id)) {
                    removed.append(e.id)
                    total -= e.bytes
                }
            }
        }
        return removed
    }
}
