import Foundation
import UV
import TLS

/// What the peer exchange keeps beside a task: each piece's sha256 and the members that hold pieces.
extension CacheTask {
    /// `<id>.digests`: the sha256 of each piece (32 bytes at k*32), recorded by whoever stores the
    /// piece; peers check every piece they fetch against the digests of the host that got the bytes
    /// from the origin. `<id>.holders`: the members known to hold pieces (one `host:port` a line),
    /// kept by the task's owner.
    static func sidecars(dataPath: String) -> (digests: String, holders: String) {
        let base = String(dataPath.dropLast(".data".count))
        return (base + ".digests", base + ".holders")
    }

    static func unlinkSidecars(dataPath: String) {
        let s = sidecars(dataPath: dataPath)
        unlink(s.digests)
        unlink(s.holders)
    }

    private var digestsFD: Int32 {
        if openedDigestsFD == -2 {
            openedDigestsFD = open(CacheTask.sidecars(dataPath: dataPath).digests, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        }
        return openedDigestsFD
    }

    /// Records piece `k`'s sha256 (before it is marked present).
    public func setPieceDigest(_ k: Int, _ digest: [UInt8]) throws {
        guard digestsFD >= 0, digest.count == 32 else { throw SystemError(op: "piece digest \(k)", path: dataPath, errno: EINVAL) }
        try digest.withUnsafeBytes { try pwriteAll(digestsFD, $0, at: Int64(k) * 32, path: dataPath) }
    }

    /// Piece `k`'s recorded sha256, if any.
    public func pieceDigest(_ k: Int) -> [UInt8]? {
        guard digestsFD >= 0, hasPiece(k) else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        let n = (try? out.withUnsafeMutableBytes { try preadFull(digestsFD, into: $0.baseAddress!, count: 32, at: Int64(k) * 32, path: dataPath) }) ?? 0
        return n == 32 && out.contains(where: { $0 != 0 }) ? out : nil
    }

    /// The recorded sha256 of every piece from `first` on (nil where absent), read in one go: an
    /// asker that has the first ones costs only the read of the rest.
    public func pieceDigests(from first: Int = 0) -> [[UInt8]?] {
        let count = pieceCount, first = max(0, first)
        guard digestsFD >= 0, count > first else { return [] }
        var all = [UInt8](repeating: 0, count: (count - first) * 32)
        let n = (try? all.withUnsafeMutableBytes {
            try preadFull(digestsFD, into: $0.baseAddress!, count: (count - first) * 32, at: Int64(first) * 32, path: dataPath)
        }) ?? 0
        return (first..<count).map { k in
            let i = k - first
            let d = Array(all[i * 32..<(i + 1) * 32])
            return hasPiece(k) && (i + 1) * 32 <= n && d.contains(where: { $0 != 0 }) ? d : nil
        }
    }

    /// A member asked for this task (to fetch it, or to follow it): from now on each piece's
    /// sha256 is taken as it is stored, and pieces stored before are hashed from the file when
    /// a member asks for the task's info (`recordMissingDigests`). Until then a download that
    /// no member follows hashes each byte once, for the blob's digest alone. The sign is the
    /// holders' file existing, for every worker.
    public func expectPeers() {
        addHolders([])
        peersExpected = true
    }

    /// Whether a member asked for this task (its holders' file exists; checked until it does).
    package var peersWant: Bool {
        if !peersExpected { peersExpected = access(CacheTask.sidecars(dataPath: dataPath).holders, F_OK) == 0 }
        return peersExpected
    }

    /// The sha256 of each piece that has none (stored before any member asked), from the file, on
    /// the thread pool, once the task is complete: in one pass that hashes the whole blob too, and
    /// the digests are recorded only if the blob still matches its digest (else the task is evicted,
    /// and the asker goes on without this host). A member checks every
    /// piece against these and a follower that matched them all does not hash the blob again, so
    /// digests taken from a file that rotted after its seal would pass the rot on. One pass at a
    /// time per task object; the asker gets the digests with its next poll.
    public func recordMissingDigests() {
        // Once every digest is known (a complete task's stay so), the polls that follow read none.
        guard !recordingDigests, !digestsKnown, isComplete, let expected = key.expectedDigest else { return }
        let known = pieceDigests()
        let missing = Set(known.indices.filter { known[$0] == nil })
        guard !missing.isEmpty else {
            digestsKnown = true
            return
        }
        recordingDigests = true
        let ranges = (0..<pieceCount).map { pieceRange($0) }
        var matched = false, recorded = false, actual = ""
        ThreadPool.run({ [self] in
            let buf = UnsafeMutableRawPointer.allocate(byteCount: pieceSize, alignment: 64)
            defer { buf.deallocate() }
            let whole = SHA256Digest()
            var digests: [Int: [UInt8]] = [:]
            for (k, r) in ranges.enumerated() {
                guard let n = try? preadFull(dataFD, into: buf, count: Int(r.count), at: r.lowerBound, path: dataPath), n == r.count else { return }
                let bytes = UnsafeRawBufferPointer(start: buf, count: n)
                whole.update(bytes)
                if missing.contains(k) {
                    let h = SHA256Digest()
                    h.update(bytes)
                    digests[k] = h.finalize()
                }
            }
            actual = "sha256:" + whole.finalizeHex()
            guard actual == expected else { return }
            matched = true
            recorded = true
            for (k, d) in digests where (try? setPieceDigest(k, d)) == nil { recorded = false }
        }, then: { [self] in
            recordingDigests = false
            digestsKnown = recorded
            if !matched {
                Log.shared.error("cached blob no longer matches its digest: evicted",
                                 ["taskId": key.id, "expected": expected, "actual": actual.isEmpty ? "unreadable" : actual])
                evictCorrupt()
            }
        })
    }

    /// Adds a member to the task's holders (the owner's tracker); idempotent enough: readers dedupe.
    public func addHolder(_ member: String) { addHolders([member]) }

    /// Appends members to the holders' file in one write (creating it, even for none).
    public func addHolders(_ members: [String]) {
        let fd = open(CacheTask.sidecars(dataPath: dataPath).holders, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let lines = Array(members.map { $0 + "\n" }.joined().utf8)
        if !lines.isEmpty { _ = lines.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }

    public var holders: [String] {
        let path = CacheTask.sidecars(dataPath: dataPath).holders
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var seen = Set<String>()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init).filter { seen.insert($0).inserted }
    }

    /// The piece bitmap, as peers exchange it: one bit per piece, lowest piece in the lowest bit.
    public var bitmap: [UInt8] { (0..<(pieceCount + 7) / 8).map { byte in (0..<8).reduce(UInt8(0)) { acc, bit in
        let k = byte * 8 + bit
        return k < pieceCount && hasPiece(k) ? acc | (1 << UInt8(bit)) : acc
    } } }
}
