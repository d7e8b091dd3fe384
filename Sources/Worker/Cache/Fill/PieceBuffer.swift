/// One piece's bytes in memory, between a source and the disk: allocated once and reused by the
/// origin's stream (a fresh 4 MiB buffer per piece costs its page faults every time).
package final class PieceBuffer {
    let base: UnsafeMutableRawPointer
    package let capacity: Int
    package private(set) var count = 0

    package init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: max(1, capacity), alignment: 64)
    }

    deinit { base.deallocate() }

    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Appends what fits; returns how many bytes of `b` were taken.
    @discardableResult
    package func append(_ b: UnsafeRawBufferPointer) -> Int {
        let n = min(b.count, capacity - count)
        if n > 0 { (base + count).copyMemory(from: b.baseAddress!, byteCount: n) }
        count += n
        return n
    }

    package func reset() { count = 0 }
}
