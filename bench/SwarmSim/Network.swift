/// The modelled network: every host has an uplink and a downlink of its own capacity; the bytes in
/// flight are fluid flows sharing them fairly (each link's share split evenly among its flows, and
/// what a flow bottlenecked elsewhere leaves unused given to the others on the same uplink); small
/// messages queue on the sender's uplink beside the flows and arrive after the one-way latency.
/// Time advances in steps of `dt` seconds between events.
final class Network {
    struct Link {
        var up: Double
        var down: Double
    }

    final class Flow {
        let src: Int
        let dst: Int
        var remaining: Double
        var sent: Double = 0
        var rate: Double = 0
        var cancelled = false
        /// Called with the bytes moved in each step (for streams that cut pieces as they go).
        var progress: ((Double) -> Void)?
        /// Called once if the flow is cancelled before its end.
        var onCancel: (() -> Void)?
        /// The bytes that exist to be sent so far (a piece cut through as it arrives at its
        /// source): the flow never gets ahead of them, and takes no share while it waits.
        var available: (() -> Double)?
        let done: () -> Void
        init(src: Int, dst: Int, bytes: Double, done: @escaping () -> Void) {
            self.src = src
            self.dst = dst
            remaining = bytes
            self.done = done
        }

        func cancel() {
            guard !cancelled, remaining > 1e-6 else { return }
            cancelled = true
            let f = onCancel
            onCancel = nil
            f?()
        }
    }

    var links: [Link]
    let latency: Double
    let dt: Double
    private(set) var now: Double = 0
    private var flows: [Flow] = []
    private var events = EventQueue()
    /// Small messages waiting on each host's uplink: their bytes left and what happens on arrival.
    private var backlog: [[(bytes: Double, arrive: () -> Void)]]
    private var backlogBytes: [Double]
    /// Bytes each host sent (data and control) and received.
    private(set) var sentBytes: [Double]

    init(links: [Link], latency: Double, dt: Double) {
        self.links = links
        self.latency = latency
        self.dt = dt
        backlog = Array(repeating: [], count: links.count)
        backlogBytes = Array(repeating: 0, count: links.count)
        sentBytes = Array(repeating: 0, count: links.count)
    }

    func at(_ t: Double, _ f: @escaping () -> Void) { events.push(max(t, now), f) }
    func after(_ s: Double, _ f: @escaping () -> Void) { at(now + s, f) }

    /// A small message from `src`: queued on its uplink, delivered a latency after its last byte left.
    func send(_ bytes: Double, from src: Int, _ arrive: @escaping () -> Void) {
        backlog[src].append((bytes, arrive))
        backlogBytes[src] += bytes
    }

    @discardableResult
    func stream(_ bytes: Double, from src: Int, to dst: Int, progress: ((Double) -> Void)? = nil,
                done: @escaping () -> Void) -> Flow {
        let f = Flow(src: src, dst: dst, bytes: bytes, done: done)
        f.progress = progress
        flows.append(f)
        return f
    }

    /// Runs until `finished` says so or `limit` seconds pass; false at the limit.
    func run(until limit: Double, finished: () -> Bool) -> Bool {
        while !finished() {
            while let t = events.nextTime, t <= now {
                events.pop()()
                if finished() { return true }
            }
            if flows.isEmpty && backlogBytes.allSatisfy({ $0 == 0 }) {
                guard let t = events.nextTime else { return finished() }
                now = max(now, t)
            } else {
                step()
            }
            if now > limit { return false }
        }
        return true
    }

    private func step() {
        let n = links.count
        var nUp = [Int](repeating: 0, count: n), nDown = [Int](repeating: 0, count: n)
        flows.removeAll { $0.cancelled }
        let limit = flows.map { f in f.available.map { $0() } ?? .infinity }
        let waiting = zip(flows, limit).map { f, l in f.sent >= l - 1e-6 }
        for (i, f) in flows.enumerated() where !waiting[i] {
            nUp[f.src] += 1
            nDown[f.dst] += 1
        }
        // Control first, as one more flow on its uplink that takes no more than it has queued.
        var upLeft = [Double](repeating: 0, count: n)
        var arrived: [() -> Void] = []
        for h in 0..<n {
            upLeft[h] = links[h].up
            guard backlogBytes[h] > 0 else { continue }
            var budget = min(backlogBytes[h], links[h].up / Double(nUp[h] + 1) * dt)
            upLeft[h] -= budget / dt
            sentBytes[h] += budget
            backlogBytes[h] -= budget
            while budget > 0, !backlog[h].isEmpty {
                let take = min(budget, backlog[h][0].bytes)
                backlog[h][0].bytes -= take
                budget -= take
                if backlog[h][0].bytes <= 1e-9 { arrived.append(backlog[h].removeFirst().arrive) }
            }
            if backlog[h].isEmpty { backlogBytes[h] = 0 }
        }
        // Data: each flow its even share of both ends, then the uplinks' unused share to the flows
        // limited by their uplink (capped by what their downlinks have left).
        var downLeft = links.map(\.down)
        for (i, f) in flows.enumerated() {
            let r = waiting[i] ? 0 : min(upLeft[f.src] / Double(nUp[f.src]), links[f.dst].down / Double(nDown[f.dst]),
                                         (limit[i] - f.sent) / dt)
            f.rate = max(0, r)
        }
        var used = [Double](repeating: 0, count: n)
        for f in flows {
            used[f.src] += f.rate
            downLeft[f.dst] -= f.rate
        }
        var limitedBySrc = [Int](repeating: 0, count: n)
        for (i, f) in flows.enumerated() where !waiting[i] && f.rate >= upLeft[f.src] / Double(nUp[f.src]) - 1e-6 { limitedBySrc[f.src] += 1 }
        for (i, f) in flows.enumerated() where !waiting[i] && limitedBySrc[f.src] > 0 && f.rate >= upLeft[f.src] / Double(nUp[f.src]) - 1e-6 {
            let spare = (upLeft[f.src] - used[f.src]) / Double(limitedBySrc[f.src])
            let extra = max(0, min(spare, downLeft[f.dst]))
            f.rate += extra
            downLeft[f.dst] -= extra
        }
        now += dt
        var finished: [Flow] = []
        for (i, f) in flows.enumerated() {
            let moved = min(f.remaining, f.rate * dt, max(0, limit[i] - f.sent))
            f.remaining -= moved
            f.sent += moved
            sentBytes[f.src] += moved
            f.progress?(moved)
            if f.remaining <= 1e-6 { finished.append(f) }
        }
        if !finished.isEmpty {
            flows.removeAll { $0.remaining <= 1e-6 }
            for f in finished where !f.cancelled { f.done() }
        }
        for a in arrived { after(latency, a) }
    }
}

/// Events by time (ties in the order they were added).
struct EventQueue {
    private var heap: [(t: Double, seq: Int, f: () -> Void)] = []
    private var seq = 0

    var nextTime: Double? { heap.first?.t }

    mutating func push(_ t: Double, _ f: @escaping () -> Void) {
        seq += 1
        heap.append((t, seq, f))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(i, p) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> () -> Void {
        let top = heap[0].f
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && less(l, m) { m = l }
            if r < heap.count && less(r, m) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return top
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].t != heap[b].t ? heap[a].t < heap[b].t : heap[a].seq < heap[b].seq
    }
}
