import Foundation

// bench/swarm-sim: the swarm's decisions (the daemon's own code) over a modelled network.
//
//     bench/swarm-sim --hosts N --size BYTES --link-mbit M [--seeds K] [--kill-seed-at F]
//                     [--slow-hosts K --slow-mbit M] [--json]

func usage(_ why: String) -> Never {
    FileHandle.standardError.write(Data("swarm-sim: \(why)\n".utf8))
    FileHandle.standardError.write(Data("""
    usage: swarm-sim --hosts N --size BYTES --link-mbit M [--seeds 1] [--kill-seed-at F]
                     [--slow-hosts K --slow-mbit M] [--neighbours 8] [--upload-slots 4] [--latency-ms 0.5]
                     [--piece BYTES] [--cut-through PIECES]
                     [--workers 1] [--seed N] [--json]
    BYTES takes a suffix: K, M, G (or KiB, MiB, GiB; powers of 1024).

    """.utf8))
    exit(2)
}

func bytes(_ s: String) -> Int64? {
    let units: [(String, Int64)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
    for (u, m) in units where s.hasSuffix(u) { return Double(s.dropLast(u.count)).map { Int64($0 * Double(m)) } }
    return Int64(s)
}

var p = Swarm.Params()
var json = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    if a == "--json" { json = true; continue }
    if a == "-h" || a == "--help" { usage("the swarm simulator") }
    guard let v = args.popFirst() else { usage("\(a) needs a value") }
    func number() -> Double { if let d = Double(v) { return d }; usage("\(a): not a number: \(v)") }
    func size() -> Int64 { if let b = bytes(v) { return b }; usage("\(a): not a size: \(v)") }
    switch a {
    case "--hosts": p.hosts = Int(number())
    case "--size": p.size = size()
    case "--link-mbit": p.linkMbit = number()
    case "--seeds": if Int(number()) != 1 { usage("--seeds: only 1 seed per task is implemented") }
    case "--kill-seed-at": p.killSeedAt = number()
    case "--slow-hosts": p.slowHosts = Int(number())
    case "--slow-mbit": p.slowMbit = number()
    case "--neighbours": p.maxNeighbours = Int(number())
    case "--latency-ms": p.latencyMs = number()
    case "--piece": p.pieceSize = Int(size())
    case "--workers": p.workers = Int(number())
    case "--upload-slots": p.uploadSlots = Int(number())
    case "--seed": p.seed = UInt64(number())
    case "--dt-ms": p.dtMs = number()
    case "--poll-ms": p.pollMs = number()
    case "--cut-through": p.cutThrough = Int(number())
    default: usage("unknown option \(a)")
    }
}
guard p.hosts >= 1, p.size > 0, p.linkMbit > 0 else { usage("--hosts, --size and --link-mbit must be positive") }

let clock = ContinuousClock()
let t0 = clock.now
let swarm = Swarm(p)
let allEnded = swarm.run()
let wall = clock.now - t0
let wallS = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18

let live = swarm.hosts.filter(\.alive)
let times = live.compactMap { h in h.finished.map { $0 - (h.started ?? 0) } }.sorted()
func pct(_ q: Double) -> Double { times.isEmpty ? .nan : times[min(times.count - 1, Int(Double(times.count) * q))] }
let span = max(1e-9, swarm.hosts.compactMap(\.finished).max() ?? swarm.net.now)
let ideal = Double(p.size) * 8 / (p.linkMbit * 1e6)
let seed = swarm.firstSeed
let result: [(String, Any)] = [
    ("hosts", p.hosts),
    ("size_bytes", p.size),
    ("link_mbit", p.linkMbit),
    ("failed", live.count - times.count),
    ("fell_back", swarm.hosts.filter(\.fellBack).count),
    ("range_fallbacks", swarm.hosts.filter(\.rangeFallback).count),
    ("origin_copies", swarm.originBytes / Double(p.size)),
    ("ideal_s", ideal),
    ("p50_s", pct(0.5)),
    ("p99_s", pct(0.99)),
    ("max_s", times.last ?? .nan),
    ("max_conns_per_host", swarm.hosts.map(\.contacts.count).max() ?? 0),
    ("control_msgs_per_host_s", Double(swarm.hosts.map(\.controlMsgs).reduce(0, +)) / Double(p.hosts) / span),
    ("control_bytes_per_host_s", swarm.hosts.map(\.controlBytes).reduce(0, +) / Double(p.hosts) / span),
    ("seed_control_msgs_s", Double(seed.controlMsgs) / span),
    ("seed_control_bytes_s", seed.controlBytes / span),
    ("all_ended", allEnded),
    ("wall_s", wallS),
]

func fmt(_ v: Any) -> String {
    switch v {
    case let d as Double: return d.isNaN ? "null" : String(format: d.magnitude >= 100 ? "%.0f" : "%.3f", d)
    case let b as Bool: return b ? "true" : "false"
    default: return "\(v)"
    }
}
if json {
    print("{" + result.map { "\"\($0.0)\": \(fmt($0.1))" }.joined(separator: ", ") + "}")
} else {
    for (k, v) in result { print(k.padding(toLength: 26, withPad: " ", startingAt: 0), fmt(v)) }
    print("efficiency (ideal/p50)".padding(toLength: 26, withPad: " ", startingAt: 0), fmt(ideal / pct(0.5)))
}
exit(allEnded && times.count == live.count ? 0 : 1)
