/// Which piece to fetch next, and from whom: pure, so the choice is tested alone.
enum PiecePicker {
    /// Among the pieces not present, not in flight and with a known digest, the one the fewest
    /// members hold (rarest first spreads the copies fastest); ties go to the lowest index, which
    /// keeps the local clients streaming.
    static func pick(pieceCount: Int, wanted: (Int) -> Bool, holders: (Int) -> [Member]) -> (piece: Int, holders: [Member])? {
        var best: (piece: Int, holders: [Member])?
        for k in 0..<pieceCount where wanted(k) {
            let h = holders(k)
            guard !h.isEmpty else { continue }
            if best == nil || h.count < best!.holders.count { best = (k, h) }
            if h.count == 1 { break }
        }
        return best
    }

    /// The holder with the fewest fetches in flight from it (the first on ties).
    static func leastBusy(_ holders: [Member], inFlight: [Int: Member]) -> Member? {
        holders.min { a, b in inFlight.values.filter { $0 == a }.count < inFlight.values.filter { $0 == b }.count }
    }
}
