import Foundation
import UV

/// How the daemon reads a task: the shared lock that keeps garbage collection away, the touch that
/// dates its last use, small blobs kept in memory, and the reads themselves.
extension CacheTask {
    /// Records an access for the least-recently-used eviction.
    public func touch() { futimens(meta.fd, nil) }

    /// A reader touches the task at most this often.
    static let touchEveryMs: UInt64 = 5000

    func beginReading() {
        if readers == 0 { flock(dataFD, LOCK_SH) }
        readers += 1
        touchIfDue()
    }

    /// Marks the task used for garbage collection, at most once every `touchEveryMs`.
    func touchIfDue() {
        let now = EventLoop.nowMs
        if touchedMs == 0 || now &- touchedMs >= CacheTask.touchEveryMs {
            touchedMs = now
            touch()
        }
    }

    /// Complete blobs up to this size are kept in memory by each worker that serves them.
    static let smallLimit: Int64 = 16 * 1024

    /// A small complete blob's bytes: read once, then served from memory with no lock and no
    /// read (a hit on a config blob is then one write). The bytes were verified before the task
    /// completed, and a complete task never changes; if garbage collection unlinks it meanwhile,
    /// the open file still holds them, and the worker drops the task within seconds.
    func smallBody() -> [UInt8]? {
        if let small { return small }
        guard isComplete, let n = contentLength, n <= CacheTask.smallLimit else { return nil }
        var b = [UInt8](repeating: 0, count: Int(n))
        guard (try? b.withUnsafeMutableBytes { try read(offset: 0, into: $0) }) == Int(n) else { return nil }
        small = b
        return b
    }

    func endReading() {
        readers -= 1
        if readers == 0 { flock(dataFD, LOCK_UN) }
    }

    /// Still the task on disk: garbage collection has not unlinked it.
    var isLinked: Bool {
        var st = stat()
        return fstat(meta.fd, &st) == 0 && st.st_nlink > 0
    }

    /// `isLinked`, asked of the file at most once a second (a hit on a kept task asks every time).
    var isLinkedLately: Bool {
        let now = EventLoop.nowMs
        if linkedAtMs != 0 && now &- linkedAtMs < 1000 { return true }
        guard isLinked else { return false }
        linkedAtMs = now
        return true
    }

    /// "Give me piece k": its bytes, if present.
    public func readPiece(_ k: Int, into buf: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard k >= 0, k < pieceCount, hasPiece(k) else { return nil }
        let r = pieceRange(k)
        precondition(buf.count >= r.count)
        return try preadFull(dataFD, into: buf.baseAddress!, count: Int(r.count), at: r.lowerBound, path: dataPath)
    }

    /// Bytes at `offset` (all within present pieces: the caller checked).
    public func read(offset: Int64, into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        try preadFull(dataFD, into: buf.baseAddress!, count: buf.count, at: offset, path: dataPath)
    }

    /// Whether every piece covering `[offset, offset+count)` is present; the number of bytes from
    /// `offset` that are readable now.
    public func readableBytes(from offset: Int64, max: Int) -> Int {
        guard let length = contentLength, offset < length else { return 0 }
        var end = offset
        let limit = min(length, offset + Int64(max))
        while end < limit {
            let k = Int(end / Int64(pieceSize))
            guard hasPiece(k) else { break }
            end = min(Int64(k + 1) * Int64(pieceSize), limit)
        }
        return Int(end - offset)
    }
}
