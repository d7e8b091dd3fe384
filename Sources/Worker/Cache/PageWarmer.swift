import Glibc
import UV
import Metrics

/// Keeps a cache reader's loop off the disk. Before bytes of a task's file go out (sendfile(2), or
/// a read on the loop for TLS), the pages they sit on must be in the page cache, or the loop
/// would wait for the disk with every other connection of the worker behind it (a node that
/// restarted, a blob not asked for in a while). `mincore(2)` on a mapping of the file tells;
/// pages that are not there are read on the thread pool first, a window at a time, and while a
/// window goes out the next one is read ahead.
final class PageWarmer {
    /// Held so that its file stays open while a read on the pool uses it.
    private let task: CacheTask
    private let length: Int64
    private let map: UnsafeMutableRawPointer?
    /// Being read on the pool, and what to do once it is in.
    private var warming: Range<Int64>?
    private var whenWarm: (() -> Void)?
    /// Bytes known to be in the page cache (as of the last look).
    private var known: Range<Int64> = 0..<0
    private var residency: [UInt8] = []

    static let window = 4 << 20
    static let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))

    init(task: CacheTask, length: Int64) {
        self.task = task
        self.length = length
        let m = length > 0 ? mmap(nil, Int(length), PROT_READ, MAP_SHARED, task.dataFD, 0) : nil
        map = m == MAP_FAILED ? nil : m
    }

    deinit {
        if let map { munmap(map, Int(length)) }
    }

    /// Whether `[offset, offset + count)` may go out now without the disk. When not, it is being
    /// read on the pool and `ready` runs on the loop once it is in.
    func isWarm(_ offset: Int64, _ count: Int, ready: @escaping () -> Void) -> Bool {
        let want = offset..<min(length, offset + Int64(count))
        guard map != nil, !want.isEmpty else { return true }
        if want.clamped(to: known) != want {
            guard warming == nil else {
                // A read is in flight: wait for it, then look again.
                whenWarm = ready
                return false
            }
            guard isResident(want) else {
                warm(want.lowerBound..<min(length, want.lowerBound + Int64(PageWarmer.window)), then: ready)
                return false
            }
            known = want
        }
        readAhead(from: want.upperBound)
        return true
    }

    /// Near the end of what is known to be in, the next window: looked at, and read on the pool
    /// while this one goes out when it is not in.
    private func readAhead(from end: Int64) {
        guard warming == nil, known.upperBound < length, known.upperBound - end < Int64(PageWarmer.window / 2) else { return }
        let next = known.upperBound..<min(length, known.upperBound + Int64(PageWarmer.window))
        if isResident(next) {
            known = known.lowerBound..<next.upperBound
        } else {
            warm(next, then: nil)
        }
    }

    private func isResident(_ r: Range<Int64>) -> Bool {
        guard let map else { return true }
        let start = r.lowerBound / PageWarmer.pageSize * PageWarmer.pageSize
        let bytes = Int(r.upperBound - start)
        let pages = (bytes + Int(PageWarmer.pageSize) - 1) / Int(PageWarmer.pageSize)
        if residency.count < pages { residency = [UInt8](repeating: 0, count: pages) }
        let rc = residency.withUnsafeMutableBufferPointer { mincore(map + Int(start), bytes, $0.baseAddress) }
        guard rc == 0 else { return true }  // cannot tell: the loop reads, as without this
        for i in 0..<pages where residency[i] & 1 == 0 { return false }
        return true
    }

    private func warm(_ r: Range<Int64>, then ready: (() -> Void)?) {
        warming = r
        whenWarm = ready
        let fd = task.dataFD
        ThreadPool.run({
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buf.deallocate() }
            var off = r.lowerBound
            while off < r.upperBound {
                let n = pread(fd, buf, Int(min(Int64(1 << 20), r.upperBound - off)), off_t(off))
                guard n > 0 else { break }
                off += Int64(n)
            }
            Metrics.count(.cacheDiskReadBytes, Int(off - r.lowerBound))
        }, then: { [self] in
            warming = nil
            known = r.lowerBound == known.upperBound ? known.lowerBound..<r.upperBound : r
            let ready = whenWarm
            whenWarm = nil
            ready?()
        })
    }
}
