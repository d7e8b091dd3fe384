import XCTest
@testable import UV
@testable import TLS
@testable import HTTP
@testable import Config
@testable import Cache
@testable import Proxy

final class PieceCacheTests: XCTestCase {
    var root = ""
    let pieceSize = 1024

    override func setUp() {
        root = NSTemporaryDirectory() + "dfget-cache-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func content(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }

    func key(for bytes: [UInt8]) -> TaskKey {
        TaskKey.forURL(UpstreamURL("http://reg.test/v2/a/blobs/sha256:" + SHA256Digest.hex(bytes))!)
    }

    /// Claims, describes and stores every piece of `bytes`.
    func download(_ cache: PieceCache, _ k: TaskKey, _ bytes: [UInt8]) throws -> CacheTask {
        let t = try cache.open(k)
        XCTAssertTrue(try t.claim(pieceSize: pieceSize))
        try t.describe(contentLength: Int64(bytes.count), contentType: "application/octet-stream", digestHeader: k.expectedDigest ?? "")
        for p in 0..<t.pieceCount {
            let r = t.pieceRange(p)
            try bytes[Int(r.lowerBound)..<Int(r.upperBound)].withUnsafeBytes { try t.storePiece(p, $0) }
        }
        return t
    }

    func testKeys() {
        let hex = String(repeating: "ab", count: 32)
        let a = TaskKey.forURL(UpstreamURL("https://one.test/v2/x/blobs/sha256:\(hex)?ns=one.test")!)
        let b = TaskKey.forURL(UpstreamURL("http://two.test:5000/v2/y/z/blobs/sha256:\(hex.uppercased())")!)
        XCTAssertEqual(a, b, "the same layer from two registries is one task")
        XCTAssertEqual(a.id, hex)
        XCTAssertEqual(a.expectedDigest, "sha256:" + hex)
        let u1 = TaskKey.forURL(UpstreamURL("http://s3.test/obj?Expires=1&Signature=a&x=1")!, filter: ["Expires", "Signature"])
        let u2 = TaskKey.forURL(UpstreamURL("http://s3.test/obj?Expires=2&Signature=b&x=1")!, filter: ["Expires", "Signature"])
        let u3 = TaskKey.forURL(UpstreamURL("http://s3.test/obj?Expires=2&Signature=b&x=2")!, filter: ["Expires", "Signature"])
        XCTAssertEqual(u1, u2)
        XCTAssertNotEqual(u1, u3)
        XCTAssertNil(u1.expectedDigest)
        XCTAssertNotEqual(TaskKey.forURL(UpstreamURL("http://s3.test/obj")!, tag: "a"), TaskKey.forURL(UpstreamURL("http://s3.test/obj")!, tag: "b"))
        XCTAssertNil(RequestTarget("/v2/a/blobs/sha256:short").blobDigest)
        XCTAssertEqual(TaskKey.filterNames("Expires&Signature& ns"), ["Expires", "Signature", "ns"])
    }

    func testDownloadVerifyAndServe() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let bytes = content(3000)
        let k = key(for: bytes)
        let t = try download(cache, k, bytes)
        XCTAssertEqual(t.pieceCount, 3)
        XCTAssertEqual(t.state, .downloading)
        XCTAssertFalse(t.isComplete, "not complete before verification")
        XCTAssertTrue(try t.finish())
        XCTAssertTrue(t.isComplete)
        // Another worker's view: its own open, same shared state.
        let reader = try XCTUnwrap(cache.lookup(k))
        XCTAssertTrue(reader.isComplete)
        XCTAssertEqual(reader.contentLength, 3000)
        XCTAssertEqual(reader.digestHeader, k.expectedDigest)
        var out = [UInt8](repeating: 0, count: 3000)
        XCTAssertEqual(try out.withUnsafeMutableBytes { try reader.read(offset: 0, into: $0) }, 3000)
        XCTAssertEqual(out, bytes)
        var piece = [UInt8](repeating: 0, count: pieceSize)
        XCTAssertEqual(try piece.withUnsafeMutableBytes { try reader.readPiece(2, into: $0) }, 952)
        XCTAssertEqual(Array(piece[0..<952]), Array(bytes[2048...]))
    }

    func testDigestMismatchIsNeverCached() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let bytes = content(2500)
        var corrupt = bytes
        corrupt[100] ^= 0xFF
        let k = key(for: bytes)
        let reader = try cache.open(k)
        let t = try download(cache, k, corrupt)
        XCTAssertFalse(try t.finish())
        XCTAssertEqual(reader.state, .corrupt, "readers streaming it see the failure")
        XCTAssertNil(cache.lookup(k), "nothing is kept")
    }

    /// Pieces stored without the running hash (as the peers' out-of-order pieces can be): the
    /// downloader's seal hashes the file on the thread pool, never on the loop, and still tells a
    /// good blob from a corrupt one.
    func testSealHashesTheFileOffTheLoopWhenTheRunningHashMissedPieces() throws {
        let bytes = content(3500)
        for corrupt in [false, true] {
            let cache = try PieceCache(root: root + "/\(corrupt)", pieceSize: pieceSize)
            var stored = bytes
            if corrupt { stored[3000] ^= 1 }
            let k = key(for: bytes)
            let t = try cache.open(k)
            XCTAssertTrue(try t.claim(pieceSize: pieceSize))
            try t.describe(contentLength: Int64(bytes.count), contentType: "application/octet-stream", digestHeader: k.expectedDigest ?? "")
            for p in (0..<t.pieceCount).reversed() {
                let r = t.pieceRange(p)
                try stored[Int(r.lowerBound)..<Int(r.upperBound)].withUnsafeBytes { try t.writeBytes($0, at: t.pieceOffset(p, count: $0.count)) }
                try t.markStored(p, digest: nil)
            }
            var events: [String] = []
            var hashedOn: [Bool] = []
            t.verifyFlushAndSeal(verified: { events.append("verified"); hashedOn.append(Thread.isMainThread) }) { error in
                events.append(error ?? "sealed")
            }
            XCTAssertEqual(events, [], "the file is hashed on the pool: nothing is decided before the loop runs")
            EventLoop.run()
            XCTAssertEqual(events, corrupt ? ["digest mismatch"] : ["verified", "sealed"])
            XCTAssertEqual(t.state, corrupt ? .corrupt : .complete)
            XCTAssertEqual(hashedOn, corrupt ? [] : [true], "completions come back on the loop's thread")
        }
    }

    /// No member asked for the task: no piece digest is wanted. Once one asks, the digests of the
    /// pieces stored before are taken from the file, off the loop, and match the pieces.
    func testPieceDigestsAreTakenLazilyOnceAMemberAsks() throws {
        let bytes = content(3500)
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let k = key(for: bytes)
        let t = try download(cache, k, bytes)
        XCTAssertFalse(t.peersWant, "nobody asked")
        XCTAssertEqual(t.pieceDigests(), [nil, nil, nil, nil])
        t.recordMissingDigests()
        EventLoop.run()
        XCTAssertEqual(t.pieceDigests(), [nil, nil, nil, nil], "not before the blob is verified and sealed")
        XCTAssertTrue(try t.finish())
        t.recordMissingDigests()
        EventLoop.run()
        let want = (0..<4).map { p -> [UInt8]? in
            let r = t.pieceRange(p)
            let h = SHA256Digest()
            bytes[Int(r.lowerBound)..<Int(r.upperBound)].withUnsafeBytes { h.update($0) }
            return h.finalize()
        }
        XCTAssertEqual(t.pieceDigests(), want)
        // Another worker's object of the same task sees a member asked once one did.
        let other = try cache.open(k)
        XCTAssertFalse(other.peersWant)
        t.expectPeers()
        XCTAssertTrue(try PieceCache(root: root, pieceSize: pieceSize).open(k).peersWant)
    }

    /// The file rotted after the seal, before any member asked: the pass that takes the digests
    /// finds the blob no longer matches, records none, and evicts the task for every worker.
    func testARottedBlobIsEvictedWhenItsDigestsAreTaken() throws {
        let bytes = content(3500)
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let k = key(for: bytes)
        let t = try download(cache, k, bytes)
        XCTAssertTrue(try t.finish())
        let fd = open(t.dataPath, O_WRONLY)
        var b: UInt8 = 0x5a
        XCTAssertEqual(pwrite(fd, &b, 1, 2000), 1)
        close(fd)
        let otherWorker = try PieceCache(root: root, pieceSize: pieceSize).open(k)
        XCTAssertTrue(otherWorker.isComplete)
        t.recordMissingDigests()
        EventLoop.run()
        XCTAssertEqual(t.pieceDigests().compactMap { $0 }, [], "no digest vouches for rotten pieces")
        XCTAssertEqual(otherWorker.state, .corrupt, "every worker's handle lets it go")
        XCTAssertNil(cache.lookup(k), "gone: the next request fetches it again")
    }

    /// What `/debug/tasks` reads: a task being filled from its meta alone (nothing created), and the
    /// fills' records in order, the part moved aside included.
    func testTheDebugViewReadsFillingTasksAndTheHistory() throws {
        let bytes = content(3500)
        let cache = try PieceCache(root: root + "/cache", pieceSize: pieceSize)
        let k = key(for: bytes)
        let t = try cache.open(k)
        XCTAssertTrue(try t.claim(pieceSize: pieceSize))
        try t.describe(contentLength: 3500, contentType: "application/octet-stream", digestHeader: "")
        try bytes[0..<1024].withUnsafeBytes { try t.storePiece(0, $0) }
        XCTAssertEqual(PieceCache.filling(dataDir: root), [.init(digest: "sha256:" + k.id, state: "downloading", size: 3500, pieces: 4, piecesDone: 1)])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/cache").filter { $0.hasSuffix(".meta") }.count, 1)
        func record(_ n: Int) -> TaskHistory.Record {
            TaskHistory.Record(digest: "sha256:\(n)", state: "complete", source: "peers", size: 10, bytes: .init(origin: 4, peers: ["a:1": 6]),
                               owner: "a:1", fallback: nil, error: nil, started: "t", durationMs: 1, mbPerSecond: nil, pid: 1)
        }
        TaskHistory.record(record(1), root: root + "/cache")
        rename(TaskHistory.path(root + "/cache"), TaskHistory.path(root + "/cache") + ".1")
        TaskHistory.record(record(2), root: root + "/cache")
        XCTAssertEqual(TaskHistory.read(root: root + "/cache"), [record(1), record(2)])
        XCTAssertEqual(TaskHistory.read(root: root + "/cache", limit: 1), [record(2)])
    }

    func testOneDownloaderAtATimeAndTakeoverWhenItDies() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let bytes = content(4096)
        let k = key(for: bytes)
        var first: CacheTask? = try cache.open(k)
        XCTAssertTrue(try first!.claim(pieceSize: pieceSize))
        try first!.describe(contentLength: 4096, contentType: "x", digestHeader: "")
        try bytes[0..<1024].withUnsafeBytes { try first!.storePiece(0, $0) }
        let second = try cache.open(k)
        XCTAssertFalse(try second.claim(pieceSize: pieceSize), "someone is downloading")
        XCTAssertTrue(second.hasPiece(0))
        XCTAssertFalse(second.hasPiece(1))
        XCTAssertEqual(second.readableBytes(from: 0, max: 10_000), 1024)
        let gen = second.generation
        first = nil  // the downloader dies: its lock goes with it
        XCTAssertTrue(try second.claim(pieceSize: pieceSize), "another worker takes over")
        XCTAssertEqual(second.generation, gen + 1)
        XCTAssertFalse(second.hasPiece(0), "an unfinished download's pieces are not trusted")
        try second.describe(contentLength: 4096, contentType: "x", digestHeader: "")
        for p in 0..<4 { try bytes[p * 1024..<(p + 1) * 1024].withUnsafeBytes { try second.storePiece(p, $0) } }
        XCTAssertTrue(try second.finish())
    }

    func testRecoveryAfterRestart() throws {
        let bytes = content(2048)
        let k = key(for: bytes)
        do {
            let cache = try PieceCache(root: root, pieceSize: pieceSize)
            XCTAssertTrue(try download(cache, k, bytes).finish())
            let other = content(5000)
            _ = try download(cache, key(for: other), other)  // never finished: "crashes" here
        }
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        XCTAssertTrue(try XCTUnwrap(cache.lookup(k)).isComplete, "complete tasks survive a restart")
        let unfinished = try XCTUnwrap(cache.lookup(key(for: content(5000))))
        XCTAssertFalse(unfinished.isComplete, "an unfinished one is never served as complete")
        XCTAssertTrue(try unfinished.claim(pieceSize: pieceSize), "and starts over")
        XCTAssertEqual((0..<5).filter(unfinished.hasPiece), [])
    }

    func testTheLengthSetsThePieceSizeForEveryWorker() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let bytes = content(5000)
        let t = try cache.open(key(for: bytes))
        XCTAssertTrue(try t.claim(pieceSize: pieceSize))
        try t.describe(contentLength: 5000, contentType: "", digestHeader: "", pieceSize: 2048)
        let other = try cache.open(key(for: bytes))
        XCTAssertEqual([t.pieceSize, other.pieceSize, other.pieceCount], [2048, 2048, 3], "another worker reads the same size")
        XCTAssertThrowsError(try content(1024).withUnsafeBytes { try t.storePiece(0, $0) }, "a piece of the old size")
        for p in 0..<3 { try bytes[p * 2048..<min(5000, (p + 1) * 2048)].withUnsafeBytes { try t.storePiece(p, $0) } }
        XCTAssertTrue(try t.finish())
        let tooMany = try cache.open(key(for: content(7)))
        XCTAssertTrue(try tooMany.claim(pieceSize: pieceSize))
        XCTAssertThrowsError(try tooMany.describe(contentLength: Int64(TaskMeta.maxPieces) * 16 + 1, contentType: "", digestHeader: "", pieceSize: 16),
                             "more pieces than a task holds")
    }

    func testPieceLengthsChecked() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let t = try cache.open(key(for: content(10)))
        XCTAssertTrue(try t.claim(pieceSize: pieceSize))
        try t.describe(contentLength: 1500, contentType: "", digestHeader: "")
        XCTAssertThrowsError(try content(1000).withUnsafeBytes { try t.storePiece(0, $0) }, "short piece")
        XCTAssertThrowsError(try content(1024).withUnsafeBytes { try t.storePiece(2, $0) }, "no such piece")
        XCTAssertThrowsError(try t.finish(), "pieces missing")
    }

    /// Complete tasks of `2000 + i` bytes, task i last used `secondsAgo[i]` seconds ago.
    func completeTasks(_ cache: PieceCache, lastUsedSecondsAgo secondsAgo: [TimeInterval]) throws -> [TaskKey] {
        try secondsAgo.enumerated().map { i, age in
            let b = content(2000 + i)
            let k = key(for: b)
            XCTAssertTrue(try download(cache, k, b).finish())
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: cache.paths(k.id).meta)
            return k
        }
    }

    func testGarbageCollection() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        // Ages: task 0 is the least recently used.
        let keys = try completeTasks(cache, lastUsedSecondsAgo: [600, 540, 480])
        let busy = try cache.open(keys[0])
        XCTAssertTrue(try busy.claim(pieceSize: pieceSize) == false, "complete: not claimable")
        // Expiry: tasks unused for over 8.5 minutes go (tasks 0 and 1, 10 and 9 minutes old).
        XCTAssertEqual(Set(cache.collectGarbage(expireAfter: 510, maxBytes: nil)), [keys[0].id, keys[1].id])
        XCTAssertNotNil(cache.lookup(keys[2]))
        // Threshold: over 1000 bytes, least recently used first; a task being read is kept.
        let reading = try XCTUnwrap(cache.lookup(keys[2]))
        XCTAssertEqual(flock(reading.dataFD, LOCK_SH), 0)
        XCTAssertEqual(cache.collectGarbage(expireAfter: 1e9, maxBytes: 1000), [], "never evicted under a reader")
        flock(reading.dataFD, LOCK_UN)
        XCTAssertEqual(cache.collectGarbage(expireAfter: 1e9, maxBytes: 1000), [keys[2].id])
    }

    /// The daemon's garbage collection: listing, stats and unlinks on the thread pool, the kept
    /// tasks forgotten on the loop once it is done.
    func testGarbageCollectionRunsOffTheLoop() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let keys = try completeTasks(cache, lastUsedSecondsAgo: [3600, 3600, 0])
        for k in keys { XCTAssertNotNil(cache.lookup(k), "kept open for hits") }
        var removed: [String]?
        var limitAskedOnLoopThread: Bool?
        cache.collectGarbage(expireAfter: 600, maxBytes: { limitAskedOnLoopThread = Thread.isMainThread; return nil }) { removed = $0 }
        XCTAssertNil(removed, "decided on the loop, once the pool is done")
        EventLoop.run()
        XCTAssertEqual(Set(removed ?? []), [keys[0].id, keys[1].id])
        XCTAssertEqual(limitAskedOnLoopThread, false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.paths(keys[0].id).data))
        XCTAssertNil(cache.lookup(keys[0]), "the kept task is forgotten")
        XCTAssertNotNil(cache.lookup(keys[2]))
    }

    func testHitsReuseOneOpenTaskUntilItIsEvicted() throws {
        let cache = try PieceCache(root: root, pieceSize: pieceSize)
        let bytes = content(2500)
        let k = key(for: bytes)
        let d = try download(cache, k, bytes)
        let unfinished = try cache.open(k)
        XCTAssertFalse(unfinished === d, "a task being downloaded is never shared")
        XCTAssertTrue(try d.finish())
        let a = try cache.open(k), b = try XCTUnwrap(cache.lookup(k))
        XCTAssertTrue(a === b, "hits share the open complete task")
        // Two readers, one shared lock: the first one done must not let garbage collection in.
        a.beginReading()
        b.beginReading()
        a.endReading()
        XCTAssertEqual(cache.collectGarbage(expireAfter: 0, maxBytes: nil), [], "never evicted under a reader")
        b.endReading()
        XCTAssertEqual(cache.collectGarbage(expireAfter: 0, maxBytes: nil), [k.id])
        XCTAssertFalse(a.isLinked)
        let fresh = try cache.open(k)
        XCTAssertFalse(fresh === a, "an evicted task is not reused")
        XCTAssertFalse(fresh.isComplete)
    }
}

final class PieceCacheFailureTests: XCTestCase {
    func testFailedClaimReleasesTheTask() throws {
        let root = NSTemporaryDirectory() + "dfget-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = try PieceCache(root: root, pieceSize: 1024)
        let k = TaskKey.forURL(UpstreamURL("http://reg.test/v2/a/blobs/sha256:" + String(repeating: "0", count: 64))!)
        let t = try cache.open(k)
        // The data file turns read-only under the task: the reset's truncate fails.
        let ro = open(cache.paths(k.id).data, O_RDONLY)
        XCTAssertGreaterThanOrEqual(ro, 0)
        XCTAssertEqual(dup2(ro, t.dataFD), t.dataFD)
        close(ro)
        XCTAssertThrowsError(try t.claim(pieceSize: 1024))
        XCTAssertFalse(t.isDownloader)
        XCTAssertTrue(try cache.open(k).claim(pieceSize: 1024), "the lock is free for the next request")
    }
}
