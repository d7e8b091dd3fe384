import Foundation
import UV

/// The shared state of one task: a small file every worker maps (MAP_SHARED, read-only) and updates
/// with `pwrite`, so all workers see progress through the page cache, and an inotify watch on the
/// file wakes readers after each update. Layout (little-endian):
///
///     0   magic "DFPC"      4  version         8  state          12 piece size
///     16  content length (i64, -1 unknown)     24 piece count    28 pieces present
///     32  generation        64 content type (128 bytes)          192 digest header (96 bytes)
///     288 origin: the registry the bytes came from, `scheme://host:port` (224 bytes)
///     512 bitmap: one bit per piece (32768 pieces at most)
public enum TaskState: UInt32 {
    case empty = 0
    case downloading = 1
    case complete = 2
    case failed = 3
    /// Caching stopped (disk full): clients finish from the origin, nothing is kept.
    case uncached = 4
    /// The origin's bytes do not hash to the digest: no client gets them, from any path.
    case corrupt = 5
}

final class TaskMeta {
    static let magic: UInt32 = 0x4350_4644  // "DFPC"
    static let version: UInt32 = 1
    static let bitmapOffset = 512
    static let bitmapBytes = 4096
    static let size = bitmapOffset + bitmapBytes
    static let maxPieces = bitmapBytes * 8

    let path: String
    let fd: Int32
    private let map: UnsafeRawPointer

    /// Opens (creating when absent) and maps the meta file.
    init(path: String) throws {
        self.path = path
        let f = try syscall("open", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        do {
            var st = stat()
            try syscall("fstat", path: path) { fstat(f, &st) }
            if st.st_size < TaskMeta.size {
                try syscall("ftruncate", path: path) { ftruncate(f, off_t(TaskMeta.size)) }
            }
            let p = mmap(nil, TaskMeta.size, PROT_READ, MAP_SHARED, f, 0)
            guard let p, p != MAP_FAILED else { throw SystemError(op: "mmap", path: path, errno: errno) }
            map = UnsafeRawPointer(p)
            fd = f
        } catch {
            close(f)
            throw error
        }
    }

    /// A meta file's header read once, never created or changed (for the master's view):
    /// state, length, pieces and pieces present; nil if it is not there or not initialized.
    static func peek(path: String) -> (state: TaskState, length: Int64?, pieces: Int, present: Int)? {
        let f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard f >= 0 else { return nil }
        defer { close(f) }
        var head = [UInt8](repeating: 0, count: Header.bytes)
        guard pread(f, &head, Header.bytes, 0) == Header.bytes else { return nil }
        return head.withUnsafeBytes { b in
            let h = Header(b.baseAddress!)
            return h.isInitialized ? (h.state, h.contentLength, h.pieceCount, h.piecesPresent) : nil
        }
    }

    /// The header's numbers, read from wherever a copy of it is (the mapped file, or bytes read once).
    struct Header {
        static let bytes = 36
        let p: UnsafeRawPointer
        init(_ p: UnsafeRawPointer) { self.p = p }
        func u32(_ off: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: off, as: UInt32.self)) }
        func i64(_ off: Int) -> Int64 { Int64(littleEndian: p.loadUnaligned(fromByteOffset: off, as: Int64.self)) }
        var isInitialized: Bool { u32(0) == TaskMeta.magic && u32(4) == TaskMeta.version }
        var state: TaskState { isInitialized ? TaskState(rawValue: u32(8)) ?? .failed : .empty }
        var pieceSize: Int { Int(u32(12)) }
        var contentLength: Int64? { let n = i64(16); return isInitialized && n >= 0 ? n : nil }
        var pieceCount: Int { Int(u32(24)) }
        var piecesPresent: Int { Int(u32(28)) }
        var generation: UInt32 { u32(32) }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: map), TaskMeta.size)
        close(fd)
    }

    private var header: Header { Header(map) }
    var isInitialized: Bool { header.isInitialized }
    var state: TaskState { header.state }
    var pieceSize: Int { header.pieceSize }
    var contentLength: Int64? { header.contentLength }
    var pieceCount: Int { header.pieceCount }
    var piecesPresent: Int { header.piecesPresent }
    var generation: UInt32 { header.generation }
    var contentType: String { string(at: 64, max: 128) }
    var digestHeader: String { string(at: 192, max: 96) }
    var origin: String { string(at: 288, max: 224) }

    private func string(at off: Int, max: Int) -> String {
        let bytes = UnsafeRawBufferPointer(start: map + off, count: max)
        let end = bytes.firstIndex(of: 0) ?? max
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }

    func hasPiece(_ k: Int) -> Bool {
        guard k >= 0, k < TaskMeta.maxPieces else { return false }
        return map.load(fromByteOffset: TaskMeta.bitmapOffset + k / 8, as: UInt8.self) & (1 << UInt8(k % 8)) != 0
    }

    // MARK: Writes (the downloader only, holding the task's lock)

    private func put(_ bytes: [UInt8], at off: Int) throws {
        try bytes.withUnsafeBytes { try pwriteAll(fd, $0, at: Int64(off), path: path) }
    }

    private func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    private func le(_ v: Int64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    private func fixed(_ s: String, _ n: Int) -> [UInt8] {
        var b = Array(s.utf8.prefix(n - 1))
        b += [UInt8](repeating: 0, count: n - b.count)
        return b
    }

    /// A fresh download: header written, bitmap cleared, generation bumped.
    func reset(pieceSize: Int, origin: String = "") throws {
        let gen = isInitialized ? generation &+ 1 : 1
        var head = le(TaskMeta.magic) + le(TaskMeta.version) + le(TaskState.downloading.rawValue) + le(UInt32(pieceSize))
        head += le(Int64(-1)) + le(UInt32(0)) + le(UInt32(0)) + le(gen)
        head += [UInt8](repeating: 0, count: 288 - head.count) + fixed(origin, 224)
        try put(head + [UInt8](repeating: 0, count: TaskMeta.bitmapBytes), at: 0)
    }

    /// The response head arrived: length, piece count and the headers replayed to every client.
    func describe(contentLength: Int64, contentType: String, digestHeader: String, origin: String, pieceSize: Int? = nil) throws {
        if let pieceSize, pieceSize != self.pieceSize { try put(le(UInt32(pieceSize)), at: 12) }
        let count = Int((contentLength + Int64(self.pieceSize) - 1) / Int64(self.pieceSize))
        try put(fixed(contentType, 128) + fixed(digestHeader, 96) + fixed(origin, 224), at: 64)
        try put(le(UInt32(count)), at: 24)
        try put(le(contentLength), at: 16)
    }

    func markPiece(_ k: Int) throws {
        let off = TaskMeta.bitmapOffset + k / 8
        let byte = map.load(fromByteOffset: off, as: UInt8.self) | (1 << UInt8(k % 8))
        try put([byte], at: off)
        try put(le(UInt32(piecesPresent + 1)), at: 28)
    }

    /// Readers see the new state at once (page cache); the meta file reaches the disk with the
    /// kernel's writeback: after a crash before that, the task merely starts over.
    func setState(_ s: TaskState) throws {
        try put(le(s.rawValue), at: 8)
    }

    // MARK: The downloader's lock

    /// Non-blocking: true when this process now holds the task (nobody else is downloading it).
    func tryLock() -> Bool { flock(fd, LOCK_EX | LOCK_NB) == 0 }
    func unlock() { flock(fd, LOCK_UN) }
}
