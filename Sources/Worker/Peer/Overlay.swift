import Cache

/// Who a host talks to about one task, decided by hashing alone, so every host computes the same
/// overlay without a tracker, and a simulator runs the very same choice (`bench/swarm-sim`). Pure:
/// the holders come in, the choice goes out; the orders are kept while the holders stay the same.
///
/// The holders are put on `rings` rings, each in the order of its own hash of (task, ring, holder),
/// the same for every host; a host's neighbours are its successor and predecessor on each ring (then
/// the next ones, where two rings give the same holder or one is excluded). The union of a few
/// random rings is a random regular graph: connected, its diameter near log N, and symmetric, since
/// B is A's successor exactly when A is B's predecessor, so news and pieces flow both ways on
/// every link.
package struct Overlay {
    package let task: String
    package let me: Member?
    /// `peers.maxNeighbours`: the holders followed besides the seed.
    package let maxNeighbours: Int
    private var rings: (holders: [String], orders: [[SourceID]], at: [Int?]) = ([], [], [])
    private var weights: [Member: [UInt64]] = [:]
    private var spreads: [Int: UInt64] = [:]

    package init(task: String, me: Member?, maxNeighbours: Int) {
        self.task = task
        self.me = me
        self.maxNeighbours = maxNeighbours
    }

    /// Two neighbours per ring.
    var ringCount: Int { max(1, (maxNeighbours + 1) / 2) }

    /// The seed's followers in the task's rendezvous order (the first ring): the seed's pieces are
    /// dealt to them in turn, so each takes the same share of its uplink.
    package mutating func followerOrder(_ holders: [String], member: (String) -> Member?) -> [SourceID] {
        update(holders, member: member)
        return rings.orders.first ?? []
    }

    /// The holders this host follows besides the seed: at most `maxNeighbours`, so its control
    /// traffic stays the same at any cluster size. An excluded holder (avoided, or silent) gives its
    /// place to the next along the same ring.
    package mutating func neighbours(_ holders: [String], seed: SourceID, member: (String) -> Member?,
                                     excluded: (SourceID) -> Bool) -> [SourceID] {
        update(holders, member: member)
        let mine = me.map { SourceID($0.description) }
        var chosen: [SourceID] = []
        var seen: Set<SourceID> = mine.map { [$0, seed] } ?? [seed]
        guard let n = rings.orders.first?.count, n > 0 else { return [] }
        var d = 1
        while chosen.count < maxNeighbours && d <= n {
            for (r, order) in rings.orders.enumerated() {
                // Not on the ring (yet): from its start, so a newcomer hears something.
                let at = rings.at[r] ?? -1
                for i in [at + d, at - d] where chosen.count < maxNeighbours {
                    let m = order[((i % n) + n) % n]
                    if seen.insert(m).inserted && !excluded(m) { chosen.append(m) }
                }
            }
            d += 1
        }
        return chosen
    }

    private mutating func update(_ holders: [String], member: (String) -> Member?) {
        guard rings.holders != holders || rings.orders.isEmpty else { return }
        let members = holders.compactMap(member)
        let count = ringCount
        var orders: [[SourceID]] = []
        for r in 0..<count {
            let ranked = members.map { ($0, weight($0, ring: r, of: count)) }
                .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.description < $1.0.description }
            orders.append(ranked.map { SourceID($0.0.description) })
        }
        let mine = me.map { SourceID($0.description) }
        rings = (holders, orders, orders.map { o in mine.flatMap { o.firstIndex(of: $0) } })
    }

    /// Ring 0 is the task's rendezvous order itself (`Rendezvous.order`); the others hash the ring in.
    private mutating func weight(_ m: Member, ring r: Int, of count: Int) -> UInt64 {
        if let w = weights[m], w.count == count { return w[r] }
        let w = (0..<count).map { Rendezvous.weight($0 == 0 ? task : "\(task)|ring\($0)", m) }
        weights[m] = w
        return w[r]
    }

    /// This host's order among equally rare pieces (`TaskFill`'s tie-break): hosts that start together
    /// fetch different pieces and can trade them.
    package mutating func spread(_ k: Int) -> UInt64 {
        if let w = spreads[k] { return w }
        guard let me else { return UInt64(k) }
        let w = Rendezvous.weight("\(task)#\(k)", me)
        spreads[k] = w
        return w
    }
}
