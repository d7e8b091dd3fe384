internal import CUV

/// This process's counters: its slab of the shared region. Without a region (unit tests, tools)
/// every call is a no-op.
public enum Metrics {
    /// Set once at startup, before the loop or any pool thread runs; then only read, from any
    /// thread (the counters themselves are atomic).
    nonisolated(unsafe) private static var attached: (region: SharedRegion, slab: UnsafeMutablePointer<UInt64>)?
    public static var region: SharedRegion? { attached?.region }
    private static var slab: UnsafeMutablePointer<UInt64>? { attached?.slab }

    public static func attach(_ region: SharedRegion, slab index: Int) {
        attached = (region, region.slab(index))
    }

    @inline(__always) static func add(_ slot: Int, _ n: UInt64) {
        guard let slab else { return }
        cuv_atomic_add_u64(slab + slot, n)
    }

    public static func count(_ s: Scalar, _ n: Int = 1) {
        guard n > 0 else { return }
        add(s.rawValue, UInt64(n))
    }

    /// A gauge goes up or down by `delta` (the sum over slabs is read as signed).
    public static func gauge(_ s: Scalar, _ delta: Int) { add(s.rawValue, UInt64(bitPattern: Int64(delta))) }

    public static func responseBytes(_ source: ByteSource, _ n: Int) {
        guard n > 0 else { return }
        add(Slot.bytes(source), UInt64(n))
    }

    /// One finished request: `requests_total` and the duration histogram.
    public static func request(_ mode: RequestMode, status: Int, seconds: Double) {
        guard slab != nil else { return }
        add(Slot.request(mode, status), 1)
        for (i, le) in Slot.buckets.enumerated() where seconds <= le { add(Slot.bucket(mode, i), 1) }
        add(Slot.count(mode), 1)
        add(Slot.sumMicros(mode), UInt64(max(0, seconds * 1e6).rounded()))
    }

    /// A daemon-wide gauge: the sum over every worker's slab (e.g. requests in flight for `maxConcurrency`).
    public static func total(_ s: Scalar) -> Int64 { region?.sum(s) ?? 0 }
}
