/// Which piece to fetch next, and from whom: pure, so the choice is tested alone. `TaskFill` asks it.
package enum PiecePicker {
    /// Among the pieces not present, not in flight and with a known digest, the one the fewest
    /// members hold (rarest first spreads the copies fastest); ties go to the lowest index, which
    /// keeps the local clients streaming.
    /// `spread` breaks ties between equally rare pieces (a per-host order, so hosts that start
    /// together fetch different pieces and can trade them); without it the lowest index wins.
    package static func pick(pieceCount: Int, wanted: (Int) -> Bool, holders: (Int) -> [SourceID],
                     spread: ((Int) -> UInt64)? = nil) -> (piece: Int, holders: [SourceID])? {
        var best: (piece: Int, holders: [SourceID], tie: UInt64)?
        for k in 0..<pieceCount where wanted(k) {
            let h = holders(k)
            guard !h.isEmpty else { continue }
            let tie = spread?(k) ?? UInt64(k)
            if best == nil || h.count < best!.holders.count || (h.count == best!.holders.count && tie < best!.tie) {
                best = (k, h, tie)
            }
        }
        return best.map { ($0.piece, $0.holders) }
    }

    /// Who may serve piece `k`: any follower that has it; the owner only to the one follower the
    /// piece is assigned to (by rendezvous over the followers), or to anyone once it has waited
    /// `patienceMs` at the owner alone. The owner's uplink then carries each piece about once and
    /// the followers trade the rest among themselves.
    /// In the endgame (the owner has all of it and this host lacks only its last few pieces) the
    /// owner's uplink, idle by then, serves alongside the followers: the tail does not wait behind
    /// the busiest follower.
    package static func sources(_ k: Int, holding: [SourceID], owner: SourceID, assignee: SourceID?, me: SourceID?,
                        ownerOnlySinceMs: UInt64?, nowMs: UInt64, patienceMs: UInt64, endgame: Bool = false) -> [SourceID] {
        if endgame { return holding }
        let others = holding.filter { $0 != owner }
        if !others.isEmpty { return others }
        guard holding.contains(owner) else { return [] }
        if assignee == nil || assignee == me { return [owner] }
        if let since = ownerOnlySinceMs, nowMs &- since >= patienceMs { return [owner] }
        return []
    }

    /// Piece `k`'s follower when the pieces are dealt round the followers in turn: `me` when it is
    /// dealt to this host (at `myIndex` among the followers), else the first it is dealt to. With
    /// fewer pieces than followers, once the seed has them all (`rounds`), the deal goes on round
    /// after round (follower i gets piece i mod pieces): every follower has one piece of its own
    /// from the seed, its copies lie evenly along the order, and the seed's idle uplink keeps making
    /// copies far apart. Before that its uplink sends first copies only.
    package static func dealt(_ k: Int, to followers: [SourceID], pieceCount: Int = 0, me: SourceID? = nil, myIndex: Int? = nil,
                              rounds: Bool = false) -> SourceID? {
        guard !followers.isEmpty else { return nil }
        let m = pieceCount > 0 ? min(pieceCount, followers.count) : followers.count
        if let me, let i = myIndex, i < followers.count, i % m == k % m, rounds || i < m { return me }
        return followers[k % m]
    }

    /// The endgame starts when at most this many pieces are missing (and the owner has them all).
    package static func endgame(missing: Int, pieceCount: Int, parallel: Int) -> Bool {
        missing <= max(parallel, pieceCount / 8)
    }

    /// The holder with the fewest fetches in flight from it (the first on ties).
    package static func leastBusy(_ holders: [SourceID], inFlight: [Int: SourceID]) -> SourceID? {
        holders.min { a, b in inFlight.values.filter { $0 == a }.count < inFlight.values.filter { $0 == b }.count }
    }
}
