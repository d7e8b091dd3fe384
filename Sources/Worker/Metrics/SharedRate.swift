internal import CUV
import Foundation

/// A rate limit every worker of the daemon shares: GCRA over one word of the shared region (the
/// time at which the bytes reserved so far will have been paid for), moved by compare-and-swap, so
/// no process ever waits on another and a worker killed mid-update leaves nothing locked.
/// Reserving never fails: a sender learns how long to wait, so a limit slows a transfer down and
/// never fails it. Bursts up to `burstBytes` go at once.
/// Unchecked: a pointer to one word of the shared region, moved only by compare-and-swap.
public struct SharedRate: @unchecked Sendable {
    let clock: UnsafeMutablePointer<UInt64>
    let nsPerByte: Double
    let burstNs: UInt64

    init(clock: UnsafeMutablePointer<UInt64>, bytesPerSecond: UInt64, burstBytes: UInt64) {
        self.clock = clock
        nsPerByte = 1e9 / Double(max(1, bytesPerSecond))
        burstNs = UInt64(Double(burstBytes) * nsPerByte)
    }

    /// A small burst for a limit: a tenth of a second of it, at least 64 KiB (one read's worth).
    public static func burst(for bytesPerSecond: UInt64) -> UInt64 { max(64 << 10, bytesPerSecond / 10) }

    /// Takes `bytes`; returns the milliseconds to wait before going on.
    public func reserve(_ bytes: Int, nowNs: UInt64 = SharedRate.now()) -> UInt64 {
        let cost = UInt64(Double(max(0, bytes)) * nsPerByte)
        var old = cuv_atomic_load_u64(clock)
        while true {
            // A clock in the past (idle, or a first use) starts from now: no credit beyond the burst.
            let new = max(old, nowNs) &+ cost
            if cuv_atomic_cas_u64(clock, &old, new) != 0 {
                let ahead = new > nowNs ? new - nowNs : 0
                return ahead > burstNs ? (ahead - burstNs + 999_999) / 1_000_000 : 0
            }
        }
    }

    /// CLOCK_MONOTONIC, which every process of the host reads alike.
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

extension SharedRegion {
    public static let peerTableSize = 64

    /// `download.totalRateLimit`: bytes fetched from origins and peers, all workers together.
    public func downloadRate(_ bytesPerSecond: UInt64) -> SharedRate {
        SharedRate(clock: global(Global.downloadClock.rawValue), bytesPerSecond: bytesPerSecond, burstBytes: SharedRate.burst(for: bytesPerSecond))
    }

    /// `upload.rateLimit`: bytes served on the peer port, all workers together.
    public func uploadRate(_ bytesPerSecond: UInt64) -> SharedRate {
        SharedRate(clock: global(Global.uploadClock.rawValue), bytesPerSecond: bytesPerSecond, burstBytes: SharedRate.burst(for: bytesPerSecond))
    }

    /// `download.perPeerRateLimit` for one member: its own clock in a small open-addressed table
    /// (claimed by compare-and-swap); when the table is full, members share clocks by hash, which
    /// only ever makes the limit stricter.
    public func peerRate(_ member: String, _ bytesPerSecond: UInt64) -> SharedRate {
        let key = SharedRegion.memberKey(member)
        let n = SharedRegion.peerTableSize
        var slot = Int(key % UInt64(n))
        for i in 0..<n {
            let s = (Int(key % UInt64(n)) + i) % n
            let k = global(Global.peerTable.rawValue + 2 * s)
            var seen = cuv_atomic_load_u64(k)
            if seen == 0, cuv_atomic_cas_u64(k, &seen, key) != 0 { seen = key }
            if seen == key {
                slot = s
                break
            }
        }
        return SharedRate(clock: global(Global.peerTable.rawValue + 2 * slot + 1), bytesPerSecond: bytesPerSecond,
                          burstBytes: SharedRate.burst(for: bytesPerSecond))
    }

    /// FNV-1a of the member's `host:port`, never 0 (0 marks a free entry).
    static func memberKey(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h == 0 ? 1 : h
    }
}
