import Foundation
import Cache
import Peer

/// One blob pulled by every host at once, through the daemon's own decisions: the task's
/// rendezvous order (`Rendezvous`), whom each host follows (`Overlay`), the fill (`TaskFill`, with
/// its piece picker and seed schedule), upload admission (`UploadAdmission`) and the fallback's
/// waits (`PeerNetwork.idleMs`). What is modelled, not run, is the I/O: `PeerSource`'s requests
/// (the seed's task info and the neighbours' bitmaps every `pollMs`, piece GETs) become messages
/// and flows on `Network`, the disk is instant, and hashing is free.
final class Swarm {
    struct Params {
        var hosts = 8
        var size: Int64 = 64 << 20
        var linkMbit = 100.0
        /// Nil: the daemon's, from the blob's length (`PieceCache.pieceSize`).
        var pieceSize: Int?
        var latencyMs = 0.5
        var killSeedAt: Double?
        var slowHosts = 0
        var slowMbit = 10.0
        var maxNeighbours = 8
        var backupSeeds = 2
        var workers = 1
        /// `peers.uploadSlots`.
        var uploadSlots = 4
        var pollMs = 100.0
        /// `TaskFill.Tuning.cutThrough` (nil: the daemon's default).
        var cutThrough: Int?
        var dtMs = 1.0
        var seed: UInt64 = 1
        var limitS = 900.0
    }

    /// Sizes on the wire (bytes), as the daemon's requests and answers are.
    enum Wire {
        static let request = 350.0
        static let head = 200.0
        static func taskInfo(pieces: Int, newDigests: Int, holders: ArraySlice<String>) -> Double {
            280 + Double((pieces + 7) / 8 * 2) + Double(newDigests * 67) + Double(holders.reduce(0) { $0 + $1.utf8.count + 3 })
        }
        static func bitmap(pieces: Int) -> Double { head + Double((pieces + 7) / 8) }
    }

    let p: Params
    let net: Network
    let task: String
    let pieceCount: Int
    let pieceSize: Int
    private(set) var hosts: [SimHost] = []
    /// The origin's index in `net`.
    let origin: Int
    /// Bytes the origin sent.
    var originBytes = 0.0
    /// The true sha256 of each piece (a liar's bytes hash to something else).
    let digests: [[UInt8]]
    private var rng: SplitMix

    init(_ p: Params) {
        self.p = p
        var rng = SplitMix(p.seed)
        let bps = p.linkMbit * 1e6 / 8
        var links = Array(repeating: Network.Link(up: bps, down: bps), count: p.hosts + 1)
        origin = p.hosts
        task = (0..<32).map { _ in String(rng.next() & 0xff, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        pieceSize = p.pieceSize ?? PieceCache.pieceSize(base: PieceCache.defaultPieceSize, length: p.size)
        pieceCount = Int((p.size + Int64(pieceSize) - 1) / Int64(pieceSize))
        digests = (0..<pieceCount).map { k in (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ k) } }
        let members = (0..<p.hosts).map { Member(host: "10.\($0 >> 16 & 255).\($0 >> 8 & 255).\($0 & 255)", port: 65002) }
        let order = Rendezvous.order(task, members)
        let rank = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        // Slow hosts: any but the first seed.
        var slow = Set<Int>()
        let slowBps = p.slowMbit * 1e6 / 8
        while slow.count < min(p.slowHosts, p.hosts - 1) {
            let h = Int(rng.next() % UInt64(p.hosts))
            if members[h] != order[0] { slow.insert(h) }
        }
        for h in slow { links[h] = Network.Link(up: slowBps, down: slowBps) }
        net = Network(links: links, latency: p.latencyMs / 1000, dt: p.dtMs / 1000)
        self.rng = rng
        let byMember = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1, $0) })
        hosts = members.enumerated().map { i, m in
            SimHost(i, m, swarm: self, rank: rank[m]!, above: order.prefix { $0 != m }.map { byMember[$0]! }, slow: slow.contains(i))
        }
    }

    func host(_ s: SourceID) -> SimHost? { index[s.name].map { hosts[$0] } }
    func member(_ name: String) -> Member? { index[name].map { hosts[$0].member } }
    private lazy var index: [String: Int] = Dictionary(uniqueKeysWithValues: hosts.map { ($0.sid.name, $0.index) })

    var firstSeed: SimHost { hosts.first { $0.rank == 0 }! }

    /// Every host's client asks for the blob within the first 20 ms; runs until each pull ended.
    func run() -> Bool {
        for h in hosts {
            let jitter = Double(rng.next() % 20_000) / 1e6
            net.at(jitter) { h.pull() }
        }
        if trace { traceEverySecond(0) }
        return net.run(until: p.limitS) { hosts.allSatisfy { $0.ended || !$0.alive } }
    }

    /// `SWARM_TRACE=1`: a line a second on stderr (the seed's uplink, pieces held across the swarm).
    let trace = ProcessInfo.processInfo.environment["SWARM_TRACE"] == "1"
    private var lastSent: [Double] = []

    private func traceEverySecond(_ t: Double) {
        net.at(t) { [self] in
            let sent = net.sentBytes
            let seed = firstSeed.index
            let up = lastSent.isEmpty ? 0 : (sent[seed] - lastSent[seed]) * 8 / 1e6
            let total = lastSent.isEmpty ? 0 : (zip(sent, lastSent).map { $0 - $1 }.reduce(0, +) - (sent[origin] - lastSent[origin])) * 8 / 1e6
            lastSent = sent
            let held = hosts.map(\.present).reduce(0, +)
            let done = hosts.filter { $0.finished != nil }.count
            let idle = hosts.filter { !$0.ended && $0.alive && $0.inFlight == 0 }.count
            let busy = hosts.map(\.busyAnswers).reduce(0, +)
            let msg = String(format: "t=%5.1f seed up %6.1f mbit, swarm up %7.1f mbit (%.0f%% of all uplinks), pieces held %5.1f%%, seed has %d, done %d, idle %d, busy answers %d\n",
                             t, up, total, total / (p.linkMbit * Double(p.hosts)) * 100, Double(held) / Double(pieceCount * p.hosts) * 100,
                             firstSeed.present, done, idle, busy)
            FileHandle.standardError.write(Data(msg.utf8))
            if t == 21, let h = hosts.first(where: { !$0.ended && $0.alive && $0.inFlight == 0 }) {
                FileHandle.standardError.write(Data((h.dump() + "\n").utf8))
            }
            if !hosts.allSatisfy({ $0.ended || !$0.alive }) { traceEverySecond(t + 1) }
        }
    }

    /// The seed dies once it stored this many pieces.
    var killAfterPieces: Int? { p.killSeedAt.map { max(1, Int(($0 * Double(pieceCount)).rounded())) } }
}

/// SplitMix64: a small, seeded, repeatable generator.
struct SplitMix {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
