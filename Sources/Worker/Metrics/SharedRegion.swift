// Module Metrics: what the processes of one daemon share in memory (nginx's shared zones): every
// worker's counters in a slab of its own, the master's tallies, the rate limiters' clocks; and the
// Prometheus text the master makes of them.
// May import: CUV.

internal import CUV
import Foundation

/// One memfd the master creates before its first worker and every worker maps at its fd 4. Words
/// are 64-bit and touched only atomically. Layout: a header, the global words (the master's
/// tallies and the shared rate limiters), then `slabCount` slabs of `slabSlots` words. Slab 0 is the
/// master's; each live worker writes only its own slab, so counting never contends.
/// Unchecked: a fixed mapping whose words are only touched atomically.
public final class SharedRegion: @unchecked Sendable {
    public static let slabSlots = 384
    /// Slab 0 plus two generations of the most workers a config allows (a reload overlaps them).
    public static let slabCount = 1 + 2 * 256
    static let headerWords = 8
    static let globalWords = 256
    static let magic: UInt64 = 0x4446_4745_5453_484D  // "DFGETSHM"
    static let words = headerWords + globalWords + slabCount * slabSlots

    public let fd: Int32
    let base: UnsafeMutablePointer<UInt64>

    private init(fd: Int32, base: UnsafeMutablePointer<UInt64>) {
        self.fd = fd
        self.base = base
    }

    /// The master's: a new zeroed region (ftruncate of a fresh memfd reads as zeros).
    public static func create() throws -> SharedRegion {
        let fd = cuv_memfd_create("dfget-shared")
        guard fd >= 0 else { throw SharedRegionError("memfd_create: \(String(cString: strerror(errno)))") }
        guard ftruncate(fd, off_t(words * 8)) == 0 else {
            let e = errno
            close(fd)
            throw SharedRegionError("ftruncate: \(String(cString: strerror(e)))")
        }
        let r = try map(fd)
        cuv_atomic_store_u64(r.base + 1, UInt64(slabSlots))
        cuv_atomic_store_u64(r.base + 2, UInt64(slabCount))
        cuv_atomic_store_u64(r.base, magic)
        return r
    }

    /// A worker's: the master's region, inherited as `fd`.
    public static func attach(fd: Int32) throws -> SharedRegion {
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == words * 8 else { throw SharedRegionError("fd \(fd) is not the master's shared region") }
        let r = try map(fd)
        guard cuv_atomic_load_u64(r.base) == magic, cuv_atomic_load_u64(r.base + 1) == UInt64(slabSlots),
              cuv_atomic_load_u64(r.base + 2) == UInt64(slabCount) else {
            throw SharedRegionError("fd \(fd): shared region of another layout")
        }
        return r
    }

    private static func map(_ fd: Int32) throws -> SharedRegion {
        guard let p = mmap(nil, words * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw SharedRegionError("mmap: \(String(cString: strerror(errno)))")
        }
        return SharedRegion(fd: fd, base: p.assumingMemoryBound(to: UInt64.self))
    }

    func global(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        precondition(i >= 0 && i < SharedRegion.globalWords)
        return base + SharedRegion.headerWords + i
    }

    func slab(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        precondition(i >= 0 && i < SharedRegion.slabCount)
        return base + SharedRegion.headerWords + SharedRegion.globalWords + i * SharedRegion.slabSlots
    }

    // MARK: The master's bookkeeping

    /// A worker's slab after it exited: its counters join slab 0 (totals never go down), its gauges
    /// are dropped (what it held is gone with it), and the slab is zero for the next worker.
    public func retire(slab i: Int) {
        guard i > 0 else { return }
        let s = slab(i), master = slab(0)
        for k in 0..<SharedRegion.slabSlots {
            let v = cuv_atomic_load_u64(s + k)
            if v != 0 && !Slot.isGauge(k) { cuv_atomic_add_u64(master + k, v) }
            cuv_atomic_store_u64(s + k, 0)
        }
    }

    /// Every slab summed: what the daemon as a whole counted.
    public func totals() -> [UInt64] {
        var out = [UInt64](repeating: 0, count: SharedRegion.slabSlots)
        for i in 0..<SharedRegion.slabCount {
            let s = slab(i)
            for k in 0..<SharedRegion.slabSlots {
                out[k] &+= cuv_atomic_load_u64(s + k)
            }
        }
        return out
    }

    public func addGlobal(_ g: Global, _ n: UInt64 = 1) { cuv_atomic_add_u64(global(g.rawValue), n) }
    public func loadGlobal(_ g: Global) -> UInt64 { cuv_atomic_load_u64(global(g.rawValue)) }
}

public struct SharedRegionError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension SharedRegion {
    /// A gauge or counter summed over every slab (signed, for gauges).
    public func sum(_ s: Scalar) -> Int64 {
        var total: UInt64 = 0
        for i in 0..<SharedRegion.slabCount { total &+= cuv_atomic_load_u64(slab(i) + s.rawValue) }
        return Int64(bitPattern: total)
    }

    /// Requests answered so far, every mode and worker together.
    public func requestsAnswered() -> UInt64 {
        var total: UInt64 = 0
        for i in 0..<SharedRegion.slabCount {
            for m in RequestMode.allCases { total &+= cuv_atomic_load_u64(slab(i) + Slot.count(m)) }
        }
        return total
    }
}
