import XCTest
@testable import Metrics

final class MetricsTests: XCTestCase {
    func testEverySlotFitsInASlab() {
        XCTAssertLessThanOrEqual(Slot.end, SharedRegion.slabSlots)
        XCTAssertLessThan(Global.peerTable.rawValue + 2 * SharedRegion.peerTableSize, SharedRegion.globalWords)
        // Every (mode, code) pair has its own word, and codes outside the list fall into their class.
        var seen = Set<Int>()
        for m in RequestMode.allCases {
            for i in 0..<Slot.perMode { XCTAssertTrue(seen.insert(Slot.requestsBase + m.rawValue * Slot.perMode + i).inserted) }
        }
        XCTAssertEqual(Slot.codeLabel(Slot.request(.proxy, 418) - Slot.requestsBase), "4xx")
        XCTAssertEqual(Slot.codeLabel(Slot.request(.proxy, 200) - Slot.requestsBase), "200")
        XCTAssertEqual(Slot.codeLabel(Slot.request(.proxy, 999) - Slot.requestsBase), "5xx")
        XCTAssertEqual(Slot.codeLabel(Slot.request(.proxy, 0) - Slot.requestsBase), "1xx")
    }

    func testRetiredSlabKeepsCountersAndDropsGauges() throws {
        let r = try SharedRegion.create()
        let w = r.slab(3)
        w[Scalar.cacheHits.rawValue] = 7
        w[Scalar.connectionsActive.rawValue] = 2
        r.slab(0)[Scalar.cacheHits.rawValue] = 1
        XCTAssertEqual(r.sum(.cacheHits), 8)
        XCTAssertEqual(r.sum(.connectionsActive), 2)
        r.retire(slab: 3)
        XCTAssertEqual(r.sum(.cacheHits), 8, "a counter never goes down when its worker exits")
        XCTAssertEqual(r.sum(.connectionsActive), 0, "what an exited worker held is gone")
        XCTAssertEqual(w[Scalar.cacheHits.rawValue], 0, "the slab is clean for the next worker")
        // A worker attaching the master's region by its descriptor sees the same words.
        let again = try SharedRegion.attach(fd: r.fd)
        XCTAssertEqual(again.sum(.cacheHits), 8)
    }

    func testGaugesAreSignedAcrossSlabs() throws {
        let r = try SharedRegion.create()
        r.slab(1)[Scalar.tasksActive.rawValue] = UInt64(bitPattern: 3)
        r.slab(2)[Scalar.tasksActive.rawValue] = UInt64(bitPattern: -1)
        XCTAssertEqual(r.sum(.tasksActive), 2)
    }

    func testSharedRateKeepsTheAverageAndTheBurst() throws {
        let r = try SharedRegion.create()
        let mib: UInt64 = 1 << 20
        let rate = r.downloadRate(16 * mib)  // burst: 1.6 MiB
        let t0: UInt64 = 1_000_000_000_000
        XCTAssertEqual(rate.reserve(Int(mib), nowNs: t0), 0, "within the burst: no wait")
        // 64 MiB at once from a fresh clock: 4 s of debt minus the burst's tenth of a second.
        let r2 = try SharedRegion.create().downloadRate(16 * mib)
        XCTAssertEqual(r2.reserve(Int(64 * mib), nowNs: t0), 3900, accuracy: 1)
        // Reading in 64 KiB steps as fast as the waits allow lands on the rate: 64 MiB take 3.9 s.
        let r3 = try SharedRegion.create().downloadRate(16 * mib)
        var now = t0
        for _ in 0..<1024 {
            let wait = r3.reserve(64 << 10, nowNs: now)
            now += wait * 1_000_000
        }
        XCTAssertEqual(Double(now - t0) / 1e9, 3.9, accuracy: 0.05)
        // An idle limiter gives no credit beyond its burst.
        XCTAssertEqual(r3.reserve(Int(16 * mib), nowNs: now + 3_600_000_000_000), 900, accuracy: 1)
    }

    func testSharedRateSlowsButNeverRefuses() {
        var clock: UInt64 = 0
        withUnsafeMutablePointer(to: &clock) { c in
            let b = SharedRate(clock: c, bytesPerSecond: 1000, burstBytes: 500)
            let ms: UInt64 = 1_000_000, t0: UInt64 = 7_000 * ms
            XCTAssertEqual(b.reserve(500, nowNs: t0), 0, "the burst goes at once")
            XCTAssertEqual(b.reserve(1000, nowNs: t0), 1000, "then a second per thousand bytes")
            XCTAssertEqual(b.reserve(0, nowNs: t0 + 500 * ms), 500, "the debt is paid back over time")
            XCTAssertEqual(b.reserve(0, nowNs: t0 + 1000 * ms), 0)
            XCTAssertEqual(b.reserve(100, nowNs: t0 + 10_000 * ms), 0, "idle time refills up to the burst only")
            XCTAssertEqual(b.reserve(500, nowNs: t0 + 10_000 * ms), 100)
        }
    }

    func testTwoLimitersOnOneClockShareTheRate() throws {
        let r = try SharedRegion.create()
        let a = r.uploadRate(10 << 20), b = r.uploadRate(10 << 20)
        let t0: UInt64 = 5_000_000_000
        _ = a.reserve(10 << 20, nowNs: t0)
        XCTAssertEqual(b.reserve(10 << 20, nowNs: t0), 1900, accuracy: 1, "the second worker waits for the first one's bytes")
    }

    func testPeerTableGivesEachMemberItsOwnClock() throws {
        let r = try SharedRegion.create()
        let a = r.peerRate("10.0.0.1:65002", 1 << 20), a2 = r.peerRate("10.0.0.1:65002", 1 << 20), b = r.peerRate("10.0.0.2:65002", 1 << 20)
        XCTAssertEqual(a.clock, a2.clock)
        XCTAssertNotEqual(a.clock, b.clock)
        // A full table: members share clocks rather than go unlimited.
        for i in 0..<(SharedRegion.peerTableSize + 5) { _ = r.peerRate("10.1.0.\(i):65002", 1 << 20) }
        XCTAssertNotNil(r.peerRate("192.168.0.1:1", 1 << 20).clock)
    }

    func testExpositionIsWellFormedText() throws {
        var totals = [UInt64](repeating: 0, count: SharedRegion.slabSlots)
        totals[Slot.request(.mirror, 200)] = 3
        totals[Slot.request(.peer, 401)] = 1
        for i in 0..<Slot.buckets.count where Slot.buckets[i] >= 0.01 { totals[Slot.bucket(.mirror, i)] = 3 }
        totals[Slot.count(.mirror)] = 3
        totals[Slot.sumMicros(.mirror)] = 25_000
        totals[Scalar.connectionsIdle.rawValue] = UInt64(bitPattern: -1)  // a transient negative gauge reads 0
        let text = Exposition(totals: totals, workerRestarts: 2, cacheBytes: 42, version: "1.2\"3").render()
        let expected = [
            #"dfget_requests_total{mode="mirror",code="200"} 3"#,
            #"dfget_requests_total{mode="peer",code="401"} 1"#,
            #"dfget_request_duration_seconds_bucket{mode="mirror",le="0.005"} 0"#,
            #"dfget_request_duration_seconds_bucket{mode="mirror",le="0.01"} 3"#,
            #"dfget_request_duration_seconds_bucket{mode="mirror",le="+Inf"} 3"#,
            #"dfget_request_duration_seconds_sum{mode="mirror"} 0.025"#,
            #"dfget_connections{state="idle"} 0"#,
            #"dfget_worker_restarts_total 2"#,
            #"dfget_cache_bytes 42"#,
            #"dfget_build_info{version="1.2\"3"} 1"#,
        ]
        let lines = Set(text.split(separator: "\n").map(String.init))
        for e in expected { XCTAssertTrue(lines.contains(e), e) }
        // Every family is declared once, before its samples.
        var declared = Set<String>()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                XCTAssertTrue(declared.insert(String(line.split(separator: " ")[2])).inserted, String(line))
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let family = ["_bucket", "_sum", "_count"].reduce(name) { n, s in
                    n.hasSuffix(s) && declared.contains(String(n.dropLast(s.count))) ? String(n.dropLast(s.count)) : n
                }
                XCTAssertTrue(declared.contains(family), "sample before its TYPE: \(line)")
            }
        }
    }
}
