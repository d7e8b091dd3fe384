internal import CUV
import Foundation
import UV
import TLS
import HTTP

/// One cached task as the daemon sees it: state, length, which pieces are present, and the two
/// piece operations the peer exchange will use too: "here is piece k, store it" and "give me piece k".
public final class CacheTask {
    public let key: TaskKey
    let meta: TaskMeta
    let dataPath: String
    let dataFD: Int32
    public private(set) var isDownloader = false
    private var hasher: SHA256Digest?
    private var hashedPieces = 0
    /// The piece digests' sidecar (see CacheTask+Peers.swift), opened on first use; -2 until then.
    var openedDigestsFD: Int32 = -2
    /// A member asked for this task (see `expectPeers`); missing digests are being recorded; every
    /// piece's digest is known (`recordMissingDigests`).
    var peersExpected = false
    var recordingDigests = false
    var digestsKnown = false

    init(key: TaskKey, metaPath: String, dataPath: String) throws {
        self.key = key
        meta = try TaskMeta(path: metaPath)
        self.dataPath = dataPath
        dataFD = try syscall("open", path: dataPath) { open(dataPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        // Until the file is whole, readahead would read its holes: pages zeroed for nothing, to be
        // overwritten by the pieces (a sixth of the CPU of a 48-host swarm). Pieces are read just
        // after they are written, from the page cache.
        if meta.state != .complete { posix_fadvise(dataFD, 0, 0, Int32(POSIX_FADV_RANDOM)) }
    }

    deinit {
        if isDownloader { meta.unlock() }
        close(dataFD)
        if openedDigestsFD >= 0 { close(openedDigestsFD) }
    }

    public var state: TaskState { meta.state }
    public var contentLength: Int64? { meta.contentLength }
    public var pieceSize: Int { meta.pieceSize }
    public var pieceCount: Int { meta.pieceCount }
    public var contentType: String { meta.contentType }
    public var digestHeader: String { meta.digestHeader }
    /// The registry the bytes came from (`scheme://host:port`), as the downloader recorded it.
    public var origin: String { meta.origin }
    public var generation: UInt32 { meta.generation }
    public var metaPath: String { meta.path }
    public func hasPiece(_ k: Int) -> Bool { meta.hasPiece(k) }

    /// The head of an answer from this task (200 for all of it, 206 with `partial` = the byte range).
    public func responseHead(partial: Range<Int64>? = nil, peerID: String) -> HTTPResponseHead {
        // A complete task's whole answer is the same every time: built once (hits ask for it).
        if partial == nil, let w = wholeHead, w.peerID == peerID { return w.head }
        var h = HTTPResponseHead(status: partial == nil ? 200 : 206)
        h.headers.add("Content-Type", contentType.isEmpty ? "application/octet-stream" : contentType)
        if !digestHeader.isEmpty { h.headers.add("Docker-Content-Digest", digestHeader) }
        h.headers.add("Accept-Ranges", "bytes")
        if let r = partial { h.headers.add("Content-Range", "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(contentLength ?? 0)") }
        h.headers.add("X-Dragonfly-Task", key.id)
        h.headers.add("X-Dragonfly-Peer", peerID)
        if partial == nil && isComplete { wholeHead = (peerID, h) }
        return h
    }

    private var wholeHead: (peerID: String, head: HTTPResponseHead)?

    /// Complete and verified: safe to serve without the origin.
    public var isComplete: Bool { meta.state == .complete && meta.contentLength != nil }

    /// Byte range `[start, end)` of piece `k`.
    public func pieceRange(_ k: Int) -> Range<Int64> {
        let start = Int64(k) * Int64(pieceSize)
        return start..<min(start + Int64(pieceSize), contentLength ?? 0)
    }

    // MARK: Downloader

    /// Takes the task for downloading when nobody holds it (a holder that died released it). A task
    /// that is not complete starts over: pieces of an unfinished earlier download are not trusted.
    /// `origin`: the registry the download will ask (joiners through another registry must not join).
    public func claim(pieceSize: Int, origin: String = "") throws -> Bool {
        guard !isDownloader else { return true }
        guard meta.tryLock() else { return false }
        if isComplete {
            meta.unlock()
            return false
        }
        isDownloader = true
        do {
            try startOver(pieceSize: pieceSize, origin: origin)
        } catch {
            // Nobody may be left holding a task that will never be downloaded.
            release()
            throw error
        }
        return true
    }

    /// No piece present, nothing hashed: the state of a download about to begin.
    private func startOver(pieceSize: Int, origin: String) throws {
        try meta.reset(pieceSize: pieceSize, origin: origin)
        try syscall("ftruncate", path: dataPath) { ftruncate(dataFD, 0) }
        hasher = key.expectedDigest != nil ? SHA256Digest() : nil
        hashedPieces = 0
    }

    /// The most a task can hold: as many full pieces as its bitmap has bits.
    public var maxContentLength: Int64 { Int64(TaskMeta.maxPieces) * Int64(PieceCache.maxPieceSize) }

    /// The origin's response head: the length decides the pieces.
    /// `pieceSize`: the blob's (`PieceCache.pieceSize(base:length:)`, or its seed's); nil keeps the
    /// task's. No piece is present yet, so nothing is cut the old way.
    public func describe(contentLength: Int64, contentType: String, digestHeader: String, origin: String = "", pieceSize: Int? = nil) throws {
        precondition(isDownloader)
        let size = pieceSize ?? self.pieceSize
        guard contentLength >= 0, contentLength <= maxContentLength, size > 0, size <= PieceCache.maxPieceSize,
              (contentLength + Int64(size) - 1) / Int64(size) <= Int64(TaskMeta.maxPieces) else {
            throw SystemError(op: "describe", path: dataPath, errno: EFBIG)
        }
        try syscall("ftruncate", path: dataPath) { ftruncate(dataFD, off_t(contentLength)) }
        try meta.describe(contentLength: contentLength, contentType: contentType, digestHeader: digestHeader, origin: origin, pieceSize: size)
    }

    /// "Here is piece k, store it": written to the page cache and marked present (every worker reads
    /// it from there); the disk gets it with the one flush that seals the task (`seal`). Its parts,
    /// `writeBytes`, `hashPiece` and `markStored`, are there for a caller that runs them apart.
    public func storePiece(_ k: Int, _ bytes: UnsafeRawBufferPointer) throws {
        try writeBytes(bytes, at: pieceOffset(k, count: bytes.count))
        _ = hashPiece(k, bytes, withDigest: false)
        try markStored(k, digest: nil)
    }

    /// Where piece `k` of `count` bytes goes in the data file: checked on the loop, before its
    /// write, while this worker holds the task.
    package func pieceOffset(_ k: Int, count: Int) throws -> Int64 {
        precondition(isDownloader)
        guard k >= 0, k < pieceCount, Int64(count) == pieceRange(k).count else {
            throw SystemError(op: "store piece \(k)", path: dataPath, errno: EINVAL)
        }
        return pieceRange(k).lowerBound
    }

    /// The write of a piece at `offset` (from `pieceOffset`): may run on a pool thread beside
    /// `hashPiece` of the same piece, and reads nothing the loop changes. If the loop gives the
    /// task up meanwhile, the bytes go to a file that is gone or will be written again, and are
    /// never marked present.
    package func writeBytes(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        try pwriteAll(dataFD, bytes, at: offset, path: dataPath)
        // Start this piece's way to the disk now, so the one flush that seals the task has little left.
        _ = cuv_start_writeback(dataFD, offset, Int64(bytes.count))
    }

    /// The blob's running hash over piece `k` (pieces in order, one at a time) and, with
    /// `withDigest`, the piece's own sha256.
    func hashPiece(_ k: Int, _ bytes: UnsafeRawBufferPointer, withDigest: Bool) -> [UInt8]? {
        if let hasher, hashedPieces == k {
            hasher.update(bytes)
            hashedPieces += 1
        }
        guard withDigest else { return nil }
        let h = SHA256Digest()
        h.update(bytes)
        return h.finalize()
    }

    /// The loop's half: the piece (and its digest) is there for every reader.
    package func markStored(_ k: Int, digest: [UInt8]?) throws {
        if let digest { try setPieceDigest(k, digest) }
        try meta.markPiece(k)
    }

    /// All pieces are in: verified, flushed (on the calling thread), sealed. Tests and tools; the
    /// downloader does the same off the loop (`verifyFlushAndSeal`).
    public func finish() throws -> Bool {
        guard try verify() else { return false }
        try syscall("fdatasync", path: dataPath) { fdatasync(dataFD) }
        try seal()
        return true
    }

    /// All pieces are in: a digest-keyed task counts as cached only if its sha256 matches.
    /// Returns false (and drops the task as corrupt) on a mismatch. Reads the file on the calling
    /// thread when the running hash does not cover every piece: tests and tools; the downloader
    /// uses `verifyFlushAndSeal`.
    public func verify() throws -> Bool {
        let length = try allPiecesIn()
        guard key.expectedDigest != nil else { return true }
        return accept(try runningDigest() ?? hashFile(length))
    }

    /// The content's length, once every piece is present.
    private func allPiecesIn() throws -> Int64 {
        precondition(isDownloader)
        guard let length = contentLength, (0..<pieceCount).allSatisfy(hasPiece), meta.piecesPresent == pieceCount else {
            throw SystemError(op: "finish", path: dataPath, errno: EINVAL)
        }
        return length
    }

    /// The running hash's digest when it took in every piece; nil when the file must be read.
    private func runningDigest() -> String? {
        guard let hasher, hashedPieces == pieceCount else { return nil }
        return hasher.finalizeHex()
    }

    /// Whether `actual` (hex) is the expected digest; a mismatch drops the task as corrupt.
    private func accept(_ actual: String) -> Bool {
        guard let expected = key.expectedDigest, "sha256:" + actual != expected else { return true }
        Log.shared.error("digest mismatch: not cached", ["taskId": key.id, "expected": expected, "actual": "sha256:" + actual])
        drop(.corrupt)
        return false
    }

    /// All pieces are in: verify the digest, flush the data, seal; the loop does neither a file
    /// read nor the flush (when the running hash missed pieces, the file is hashed on the thread
    /// pool). `verified` runs once the digest matched, before the flush; `done` gets nil when the
    /// task is complete, else why not (a mismatch leaves the task corrupt). `checked`: the pieces
    /// are a verified seed's, each matched its digest; the blob is not hashed again.
    package func verifyFlushAndSeal(checked: Bool = false, verified: @escaping () -> Void = {}, _ done: @escaping (String?) -> Void) {
        let length: Int64
        do { length = try allPiecesIn() } catch { return done("\(error)") }
        let check = { [self] (actual: Result<String, Error>?) in
            guard isDownloader else { return done("task given up while verifying") }
            switch actual {
            case .failure(let error)?: return done("\(error)")
            case .success(let hex)?: guard accept(hex) else { return done("digest mismatch") }
            case nil: break
            }
            verified()
            flushAndSeal(done)
        }
        guard key.expectedDigest != nil, !checked else { return check(nil) }
        if let hex = runningDigest() { return check(.success(hex)) }
        var actual: Result<String, Error> = .success("")
        ThreadPool.run({ [self] in actual = Result { try hashFile(length) } }, then: { check(actual) })
    }

    /// The one flush of the data file, on the thread pool, then the seal.
    private func flushAndSeal(_ done: @escaping (String?) -> Void) {
        FileSync.fdatasync(dataFD) { [self] rc in
            guard rc == 0 else { return done("fdatasync: \(UVError(rc))") }
            guard isDownloader else { return done("task given up while flushing") }
            do {
                try seal()
                done(nil)
            } catch {
                done("\(error)")
            }
        }
    }

    /// Starts the download over (this worker holds the task): no piece present, same claim.
    package func restartDownload() throws {
        precondition(isDownloader)
        try startOver(pieceSize: pieceSize, origin: origin)
    }

    /// The content is verified and on disk: complete from now on, for every worker and restart.
    public func seal() throws {
        precondition(isDownloader)
        try meta.setState(.complete)
        posix_fadvise(dataFD, 0, 0, Int32(POSIX_FADV_NORMAL))
        release()
    }

    private func hashFile(_ length: Int64) throws -> String { try hashPrefix(length).finalizeHex() }

    /// The running hash of the content's first `length` bytes.
    func hashPrefix(_ length: Int64) throws -> SHA256Digest {
        let h = SHA256Digest()
        _ = try CacheTask.feed(h, fd: dataFD, path: dataPath, 0..<length)
        return h
    }

    /// Feeds `h` the file's bytes in `range`, read 1 MiB at a time (any thread: nothing of the task
    /// is touched). Returns how many were fed: fewer when the file ends first.
    private static func feed(_ h: SHA256Digest, fd: Int32, path: String, _ range: Range<Int64>) throws -> Int64 {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buf.deallocate() }
        var off = range.lowerBound
        while off < range.upperBound {
            let n = try preadFull(fd, into: buf, count: Int(min(Int64(1 << 20), range.upperBound - off)), at: off, path: path)
            guard n > 0 else { break }
            h.update(UnsafeRawBufferPointer(start: buf, count: n))
            off += Int64(n)
        }
        return off - range.lowerBound
    }

    // MARK: Pieces out of order (from peers)

    /// Pieces that arrive out of order are hashed later, in order, on a pool thread: each round
    /// reads the pieces present after the last hashed one back from the page cache. So the blob's
    /// sha256 is ready when the last piece lands, instead of a read of the whole file at the end.
    /// Whoever stores pieces while this runs must not hash them itself (`writeBytes`, `markStored`).
    private var catchingUp = false
    private var caughtUp: [() -> Void] = []

    /// Hashes what is there in order; `then` runs on the loop once a round found nothing more to do.
    package func catchUpHash(then: (() -> Void)? = nil) {
        if let then { caughtUp.append(then) }
        guard !catchingUp else { return }
        var end = hashedPieces
        while end < pieceCount && hasPiece(end) { end += 1 }
        guard let hasher, end > hashedPieces, let length = contentLength else {
            let waiting = caughtUp
            caughtUp = []
            waiting.forEach { $0() }
            return
        }
        catchingUp = true
        let fd = dataFD, path = dataPath
        let from = pieceRange(hashedPieces).lowerBound, to = min(length, pieceRange(end - 1).upperBound)
        var ok = true
        ThreadPool.run({
            ok = (try? CacheTask.feed(hasher, fd: fd, path: path, from..<to)) == to - from
        }, then: { [self] in
            catchingUp = false
            // The download started over meanwhile: that round was for a hash nobody uses now.
            guard self.hasher === hasher else { return catchUpHash() }
            guard ok else {
                // The hash is now of an unknown prefix: verify() reads the whole file instead.
                self.hasher = nil
                let waiting = caughtUp
                caughtUp = []
                return waiting.forEach { $0() }
            }
            hashedPieces = end
            catchUpHash()
        })
    }

    /// Gives the task up: readers see it failed, the files go, the next request starts over.
    public func abandon() { drop(.failed) }

    /// Stops caching (the disk is full): readers finish from the origin, the files go.
    public func stopCaching() { drop(.uncached) }

    /// The blob on disk no longer matches its digest, found after its seal: every worker's handle
    /// sees the task corrupt and lets it go, and its files go; the next request fetches it again.
    func evictCorrupt() {
        // Set whoever holds the task: a complete one has no downloader to do it.
        try? meta.setState(.corrupt)
        drop(.corrupt)
    }

    private func drop(_ state: TaskState) {
        if isDownloader { try? meta.setState(state) }
        unlink(dataPath)
        unlink(meta.path)
        CacheTask.unlinkSidecars(dataPath: dataPath)
        release()
    }

    func release() {
        guard isDownloader else { return }
        isDownloader = false
        meta.unlock()
    }

    // MARK: Readers (see CacheTask+Reading.swift): their state in this process

    /// The last touch by a reader of this object: garbage collection counts age in minutes, so a
    /// busy task is touched once every few seconds, not on every hit.
    var touchedMs: UInt64 = 0
    /// Readers in this process of this (shared) task object: one shared lock on the content for
    /// all of them, so garbage collection never evicts a task under a reader. (flock belongs to the
    /// open file: the first reader takes it, the last one lets it go.)
    var readers = 0
    /// A small complete blob's bytes, once read (`smallBody`).
    var small: [UInt8]?
    /// When `isLinked` last said yes.
    var linkedAtMs: UInt64 = 0
}
