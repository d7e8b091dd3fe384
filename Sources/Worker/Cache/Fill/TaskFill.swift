/// How one claimed task gets filled from sources of pieces: which pieces are wanted, from whom,
/// which are in flight, which are verified and stored, when to seal and when to give up. Pure:
/// events in (with the time they happen at), actions out; the driver does the I/O, so every
/// interleaving is a unit test and a simulator can run it with virtual time.
///
/// Sources are names. The origin (`SourceID.origin`) streams pieces in order and is trusted through
/// the whole blob's digest; every other source is asked for one piece at a time, each checked
/// against the seed's digest. The seed is the member that fetches the blob from the origin (a
/// task's rendezvous owner); its pieces are dealt round its followers so its uplink carries each
/// about once. A fill the origin streams has nothing to fall back on: its failures abort.
///
/// When the peers cannot finish a fill whose length is known (no seed left, the seed's download
/// failed or its pieces lie, nothing stored for the idle time), the fill keeps what it holds and
/// asks the origin for the missing pieces by range (`rangeFromOrigin`), beside whatever peers still
/// answer; the whole blob's digest checks those pieces. Only if that fails too does it start over
/// from the origin (`fallBack`). When a host gets there is its driver's tuning (`idleMs`, by rank),
/// so a stalled swarm sends a few hosts to the origin, not all of them.
public struct TaskFill {
    public enum Phase: Equatable, Sendable {
        /// The length is not known yet.
        case waiting
        case filling
        /// Every piece is present: verifying and flushing.
        case sealing
        case done
        /// Fell back to the origin, or aborted, for this reason.
        case stopped(FillFailure)
    }

    public struct Tuning: Sendable {
        /// Pieces in flight at once, from all sources together.
        public var parallel = 6
        /// How long a piece waits at the seed alone for the follower it is dealt to.
        public var patienceMs: UInt64 = 6000
        /// The same in a swarm of at most `endgameFollowers`: there the seed's uplink is not that
        /// scarce, and a follower that cannot keep up (one host at 10 mbit among 200) held every
        /// piece dealt to it 6 s for all the others (p50 3.7 s became 10.9). In a big swarm a
        /// short patience costs more than it saves (simulated, 48 hosts: 7.9 s became 10.0).
        public var smallSwarmPatienceMs: UInt64 = 2000
        /// Nothing stored, no byte of a piece received and no source gained a piece for this long:
        /// fall back.
        public var idleMs: UInt64 = 60_000
        /// Pieces asked from the origin by range at once, once the peers could not finish.
        public var originParallel = 4
        /// Failed pieces from the seed tolerated in a row before it is avoided.
        public var seedSlips = 3
        /// The endgame (the seed serves a host's last few pieces beside the followers) only while
        /// the seed has at most this many followers: in a bigger swarm every host would end at the
        /// seed together and drown its uplink.
        public var endgameFollowers = 8
        /// Pieces past the last one the seed has that may be asked of it while it still receives them
        /// from the origin (cut through: they stream as they land there), by the follower each is
        /// dealt to; 0: a piece is asked only once the seed has it.
        public var cutThrough = 2
        /// Cut through only in a swarm of at most this many followers (`PeerNetwork.fill` turns it
        /// off by the members' count; the seed's followers register one by one): in the simulator it
        /// helps up to 16 (17 hosts: 64 MiB 7.6 → 7.3 s, 16 MiB 2.58 → 2.55 s) and costs beyond
        /// (32 hosts, 16 MiB: 2.80 → 3.14 s; 96 hosts, 64 MiB: 21.2 → 22.9 s).
        public var cutThroughFollowers = 16
        public init() {}
    }

    public private(set) var phase: Phase = .waiting
    /// The task's piece size until the length is known, then the blob's: from the length (the
    /// origin streams it) or the seed's.
    public private(set) var pieceSize: Int
    public let me: SourceID?
    let tuning: Tuning
    /// This host's order among equally rare pieces (constant for the task).
    let spread: (Int) -> UInt64

    public private(set) var pieceCount = 0
    private var present: [Bool] = []
    private var expected: [[UInt8]?] = []
    /// Pieces being fetched, hashed or written, and from whom.
    public private(set) var inFlight: [Int: SourceID] = [:]
    /// When each piece in flight from a peer was asked for.
    private var askedAt: [Int: UInt64] = [:]
    private var holdings: [SourceID: [UInt8]] = [:]
    private var followers: [SourceID] = []
    private var myFollowerIndex: Int?
    public private(set) var seed: SourceID?
    private var seedComplete = false
    public private(set) var avoided: Set<SourceID> = []
    /// Sources that said they are busy, and until when.
    private var busyUntil: [SourceID: UInt64] = [:]
    private var slips = 0
    private var seedOnlySince: [Int: UInt64] = [:]
    /// When the last piece was stored here, bytes of one last arrived, or the swarm last gained pieces.
    private var lastProgressMs: UInt64
    /// Pieces each source held at its last news.
    private var heldCounts: [SourceID: Int] = [:]
    public private(set) var bytesFrom: [SourceID: Int] = [:]
    public private(set) var readers = 0
    /// The origin streams the blob to this fill (from piece 0), and the next piece it will send.
    public let fromOrigin: Bool
    private var streamNext = 0
    /// The most a task can hold.
    let maxLength: Int64
    /// Why the peers could not finish and the missing pieces are asked from the origin by range
    /// (nil: the peers alone).
    public private(set) var rangeFallback: FillFailure?
    /// The time of the event being handled.
    private var clock: UInt64
    /// Every piece stored so far matched the digests of the one seed (none from the origin, no seed
    /// change with pieces in hand): once that seed has verified the blob, so has this host.
    public private(set) var seedChecked = true
    /// When the last piece was stored, if the seed had not verified the blob yet.
    private var allPresentAt: UInt64?
    /// Pieces in hand from the seed, cut through before it had them whole, waiting for its digest
    /// (still in flight): their sha256, and since when.
    private var awaiting: [Int: (digest: [UInt8], since: UInt64)] = [:]

    /// `fromOrigin`: the origin streams the whole blob (its head gives the length); else peers fill
    /// it, piece by piece, from their news.
    public init(pieceSize: Int, me: SourceID?, now: UInt64, fromOrigin: Bool = false, maxLength: Int64 = .max,
                tuning: Tuning = Tuning(), spread: @escaping (Int) -> UInt64 = { UInt64($0) }) {
        self.pieceSize = pieceSize
        self.me = me
        self.fromOrigin = fromOrigin
        self.maxLength = maxLength
        self.tuning = tuning
        self.spread = spread
        lastProgressMs = now
        clock = now
    }

    public enum Event: Equatable, Sendable {
        /// A round of news from the sources (the seed's view of the task, the holders' bitmaps).
        case news(PieceNews, seed: SourceID)
        /// The fill cannot go on: no seed can be had any more, the seed's own download failed, or
        /// the driver could not carry out an action.
        case failed(FillFailure)
        /// The origin's head: the blob's length (and what to answer clients with).
        case described(length: Int64, contentType: String, digestHeader: String?)
        /// Piece k's bytes are in hand from that source, and this is their sha256 (nil from the
        /// origin, which the whole blob's digest checks).
        case arrived(Int, from: SourceID, digest: [UInt8]?)
        /// The origin's body ended.
        case streamEnded
        /// Piece k did not come from that source.
        case fetchFailed(Int, from: SourceID, FetchFailure)
        /// Piece k is written and marked present.
        case stored(Int, from: SourceID, bytes: Int)
        /// Bytes of a piece in flight arrived: slow is not stalled.
        case bytesArrived
        case storeFailed(Int, from: SourceID, FillFailure)
        /// Time passes.
        case tick
        case readerAttached
        case readerLeft
        /// The seal ran: nil when the task is complete.
        case sealed(FillFailure?)
    }

    public var isPresent: (Int) -> Bool { { [present] k in k >= 0 && k < present.count && present[k] } }
    public var missing: Int { present.lazy.filter { !$0 }.count }
    /// Piece k is in hand, cut through, and waits for the seed's digest: its bytes are kept.
    public func awaitsDigest(_ k: Int) -> Bool { awaiting[k] != nil }

    public mutating func handle(_ event: Event, now: UInt64) -> [FillAction] {
        clock = now
        switch event {
        case .readerAttached:
            readers += 1
            return []
        case .readerLeft:
            readers = max(0, readers - 1)
            return []
        case .sealed(let failure):
            guard phase == .sealing else { return [] }
            switch failure {
            case nil:
                phase = .done
                return [.finish]
            case .digestMismatch?:
                // The task is dropped as corrupt: nothing to fall back on with this claim.
                phase = .stopped(.digestMismatch)
                return [.abort(.digestMismatch)]
            case let f?:
                phase = .filling
                return fallBack(f)
            }
        default:
            break
        }
        guard phase == .waiting || phase == .filling else { return [] }
        switch event {
        case .news(let news, let seed):
            return take(news, seed: seed, now: now)
        case .failed(let why):
            // The peers already failed once: the origin's ranges go on whatever they say now.
            if rangeFallback != nil, why.isThePeers { return [] }
            return fallBack(why)
        case .described(let length, let contentType, let digestHeader):
            guard fromOrigin, phase == .waiting else { return [] }
            guard length >= 0, length <= maxLength else {
                return fallBack(.badLength("origin announced \(length) bytes, more than a task can hold"))
            }
            pieceSize = PieceCache.pieceSize(base: pieceSize, length: length)
            var out = size(length, contentType: contentType, digestHeader: digestHeader)
            for k in 0..<pieceCount { inFlight[k] = .origin }
            out += step(now)
            return out
        case .streamEnded:
            guard fromOrigin, streamNext < pieceCount || phase == .waiting else { return [] }
            return fallBack(.badLength("origin body ended at piece \(streamNext) of \(pieceCount)"))
        case .arrived(let k, let from, let digest):
            guard inFlight[k] == from else { return [] }
            if from == .origin, fromOrigin {
                // In order, or the stream is not what it claims.
                guard k == streamNext else { return fallBack(.sourceFailed("origin sent piece \(k) out of order")) }
                streamNext += 1
                return [.store(k, from: from)]
            }
            // A range of the origin's: the whole blob's digest checks it, as it checks a stream.
            if from == .origin { return [.store(k, from: from)] }
            if let digest, k < expected.count, expected[k] == digest { return [.store(k, from: from)] }
            if let digest, k < expected.count, expected[k] == nil, from == seed {
                // Cut through: the seed's digest comes with its next news.
                awaiting[k] = (digest, now)
                return []
            }
            inFlight[k] = nil
            avoided.insert(from)
            return [.avoid(from, .badDigest(piece: k))] + step(now)
        case .fetchFailed(let k, let from, let failure):
            guard inFlight[k] == from else { return [] }
            inFlight[k] = nil
            if case .busy(let ms) = failure {
                // Busy is not broken: other sources first, this one again after its pause.
                busyUntil[from] = now + ms
                return step(now)
            }
            let unreachable = failure == .unreachable
            if from == seed {
                slips += 1
                if slips <= tuning.seedSlips { return step(now) }
            }
            avoided.insert(from)
            var out: [FillAction] = [.avoid(from, unreachable ? .unreachable : .refused(piece: k))]
            if unreachable && from == seed {
                // A seed that does not answer is replaced; its news no longer counts.
                holdings[from] = nil
                self.seed = nil
                out.append(.replaceSeed(from))
                return out
            }
            return out + step(now)
        case .stored(let k, let from, let bytes):
            guard inFlight[k] == from else { return [] }
            inFlight[k] = nil
            guard k < present.count else { return [] }
            present[k] = true
            askedAt[k] = nil
            if from == .origin { seedChecked = false }
            if from == seed { slips = 0 }
            // A busy source that delivered has a free slot again.
            busyUntil[from] = nil
            bytesFrom[from, default: 0] += bytes
            lastProgressMs = now
            return step(now)
        case .storeFailed(let k, let from, let why):
            guard inFlight[k] == from else { return [] }
            inFlight[k] = nil
            // A full disk is not the sources' fault: nothing is cached, readers finish from the origin.
            if why == .diskFull { return abort(.diskFull) }
            return fallBack(why)
        case .bytesArrived:
            lastProgressMs = now
            return []
        case .tick:
            // Sources that were busy may be asked again; the idle check.
            return phase == .filling ? dropUnconfirmed(now) + step(now) : idle(now) ?? []
        default:
            return []
        }
    }

    private mutating func take(_ news: PieceNews, seed: SourceID, now: UInt64) -> [FillAction] {
        if self.seed != seed {
            // Pieces checked against another seed's digests: this one's verification does not cover them.
            if present.contains(true) { seedChecked = false }
            self.seed = seed
            slips = 0
        }
        // The swarm moving (the seed or a holder followed gained pieces) is progress too: a host
        // that waits its turn in a big, slow swarm is not stalled (96 hosts at 50 mbit: backup
        // seeds that had stored nothing in 20 s went to the origin while the swarm was filling).
        var grew = false
        for (s, bits) in news.holdings {
            let n = bits.reduce(0) { $0 + $1.nonzeroBitCount }
            if let before = heldCounts[s], n > before { grew = true }
            heldCounts[s] = n
            holdings[s] = bits
        }
        if grew { lastProgressMs = now }
        if news.holdings[seed] == nil { return idle(now) ?? [] }
        if followers != news.followers {
            followers = news.followers
            myFollowerIndex = me.flatMap { followers.firstIndex(of: $0) }
        }
        seedComplete = news.seedComplete
        var out: [FillAction] = []
        if phase == .waiting, let length = news.length {
            guard length >= 0, length <= maxLength else { return fallBack(.badLength("owner announced \(length) bytes")) }
            // The seed's piece size, whatever it is (another version's, or a bigger blob's), if a task can hold it.
            guard let seedSize = news.pieceSize, seedSize > 0, seedSize <= PieceCache.maxPieceSize,
                  (length + Int64(seedSize) - 1) / Int64(seedSize) <= Int64(TaskMeta.maxPieces) else { return fallBack(.pieceSizeMismatch) }
            pieceSize = seedSize
            out += size(length, contentType: news.contentType, digestHeader: nil)
        }
        guard phase == .filling else { return out + (idle(now) ?? []) }
        for (k, d) in news.digests.prefix(pieceCount).enumerated() where d != nil { expected[k] = d }
        return out + confirm() + step(now)
    }

    /// Pieces cut through whose digest the news now has: stored if they match it; a seed whose
    /// bytes do not match its own digest is avoided.
    private mutating func confirm() -> [FillAction] {
        var out: [FillAction] = []
        for (k, a) in awaiting.sorted(by: { $0.key < $1.key }) {
            guard let want = expected[k], let from = inFlight[k] else { continue }
            awaiting[k] = nil
            if want == a.digest {
                out.append(.store(k, from: from))
            } else {
                inFlight[k] = nil
                avoided.insert(from)
                out += [.drop(k), .avoid(from, .badDigest(piece: k))]
            }
        }
        return out
    }

    /// A piece cut through whose digest the seed has not given within `patienceMs` (its download
    /// failed, or it went): let go, to be asked again.
    private mutating func dropUnconfirmed(_ now: UInt64) -> [FillAction] {
        var out: [FillAction] = []
        for (k, a) in awaiting.sorted(by: { $0.key < $1.key }) where now &- a.since >= tuning.patienceMs {
            awaiting[k] = nil
            inFlight[k] = nil
            out.append(.drop(k))
        }
        return out
    }

    /// The length is known: the pieces, and the task's file sized for them.
    private mutating func size(_ length: Int64, contentType: String, digestHeader: String?) -> [FillAction] {
        pieceCount = Int((length + Int64(pieceSize) - 1) / Int64(pieceSize))
        present = Array(repeating: false, count: pieceCount)
        expected = Array(repeating: nil, count: pieceCount)
        phase = .filling
        return [.describe(length: length, contentType: contentType, digestHeader: digestHeader)]
    }

    /// What follows any change: more fetches, the seal once every piece is there, or the fallback.
    private mutating func step(_ now: UInt64) -> [FillAction] {
        guard phase == .filling else { return [] }
        var out = schedule(now)
        if !present.contains(false) && inFlight.isEmpty {
            // A peer fill checked piece by piece: the seed's verification is this host's, when the
            // seed has it (asked for `patienceMs`); else the blob is hashed here.
            if !fromOrigin, seedChecked, rangeFallback == nil {
                if seedComplete {
                    phase = .sealing
                    return out + [.sealChecked]
                }
                let since = allPresentAt ?? now
                allPresentAt = since
                if now &- since < tuning.patienceMs { return out }
            }
            phase = .sealing
            return out + [.seal]
        }
        if rangeFallback == nil, let seed, inFlight.isEmpty, avoided.contains(seed) { return out + fallBack(.badPiecesFromSeed) }
        // The origin refused its ranges (or has none): the whole blob from it, as the last resort.
        if rangeFallback != nil, avoided.contains(.origin) { return out + fallBack(.sourceFailed("origin refused the missing pieces")) }
        if let f = idle(now) { out += f }
        return out
    }

    private mutating func idle(_ now: UInt64) -> [FillAction]? {
        // The origin's stream has its own stall check (bytes per window, in its source); so have
        // its ranges while they are being asked again (their retries say when to give up).
        // Before any seed gave the length, its source's own bounds (an owner silent six times, or
        // refusing) come first; this is only the backstop.
        let bound = phase == .waiting ? tuning.idleMs * 3 : tuning.idleMs
        guard !fromOrigin, now &- lastProgressMs > bound else { return nil }
        if rangeFallback != nil, inFlight.values.contains(.origin) || (busyUntil[.origin] ?? 0) > lastProgressMs { return nil }
        return fallBack(.noProgress(ms: now &- lastProgressMs))
    }

    /// Fetches up to `parallel` at once: rarest first among the sources that have a piece, the
    /// seed's uplink kept for pieces nobody else has yet (see `PiecePicker.sources`).
    private mutating func schedule(_ now: UInt64) -> [FillAction] {
        fromPeers(now) + fromOriginByRange(now)
    }

    /// After the range fallback: the missing pieces no source is bringing, lowest first, from the
    /// origin, `originParallel` at once (beside the peers' `parallel`). A piece a peer has owed for
    /// `patienceMs` is asked from the origin too (the peer's late answer is then ignored).
    private mutating func fromOriginByRange(_ now: UInt64) -> [FillAction] {
        guard rangeFallback != nil, !avoided.contains(.origin), (busyUntil[.origin] ?? 0) <= now else { return [] }
        var asking = inFlight.values.lazy.filter { $0 == .origin }.count
        var out: [FillAction] = []
        var k = 0
        while asking < tuning.originParallel && k < pieceCount {
            if !present[k], inFlight[k] == nil || (inFlight[k] != .origin && (askedAt[k] ?? now) &+ tuning.patienceMs <= now) {
                inFlight[k] = .origin
                asking += 1
                out.append(.fetch(k, from: .origin))
            }
            k += 1
        }
        return out
    }

    private mutating func fromPeers(_ now: UInt64) -> [FillAction] {
        guard let seed, holdings[seed] != nil else { return [] }
        let missing = self.missing
        let endgame = seedComplete && followers.count <= tuning.endgameFollowers
            && PiecePicker.endgame(missing: missing, pieceCount: pieceCount, parallel: tuning.parallel)
        let sources = holdings.keys.filter { !avoided.contains($0) && (busyUntil[$0] ?? 0) <= now }.sorted()
        let dealPatience = followers.count <= tuning.endgameFollowers ? tuning.smallSwarmPatienceMs : tuning.patienceMs
        var out = cutThrough(now, seed: seed)
        while inFlight.values.lazy.filter({ $0 != .origin }).count < tuning.parallel {
            let pick = PiecePicker.pick(
                pieceCount: pieceCount,
                wanted: { k in !present[k] && inFlight[k] == nil && expected[k] != nil },
                holders: { k in
                    let holding = sources.filter { TaskFill.has(holdings[$0] ?? [], k) }
                    if holding == [seed], seedOnlySince[k] == nil { seedOnlySince[k] = now }
                    return PiecePicker.sources(k, holding: holding, owner: seed, assignee: PiecePicker.dealt(k, to: followers, pieceCount: pieceCount, me: me, myIndex: myFollowerIndex, rounds: seedComplete), me: me,
                                               ownerOnlySinceMs: seedOnlySince[k], nowMs: now, patienceMs: dealPatience, endgame: endgame)
                },
                spread: spread)
            guard let pick, let from = PiecePicker.leastBusy(pick.holders, inFlight: inFlight) else { break }
            inFlight[pick.piece] = from
            askedAt[pick.piece] = now
            out.append(.fetch(pick.piece, from: from))
        }
        return out
    }

    /// The pieces the seed is receiving from the origin now (the first it lacks, and up to
    /// `cutThrough` from there) that are dealt to this host: asked of the seed at once, so they
    /// stream as they land there instead of being stored and then forwarded.
    private mutating func cutThrough(_ now: UInt64, seed: SourceID) -> [FillAction] {
        guard tuning.cutThrough > 0, followers.count <= tuning.cutThroughFollowers, !seedComplete, rangeFallback == nil,
              let me, let bits = holdings[seed],
              !avoided.contains(seed), (busyUntil[seed] ?? 0) <= now else { return [] }
        guard let first = (0..<pieceCount).first(where: { !TaskFill.has(bits, $0) }) else { return [] }
        var out: [FillAction] = []
        for k in first..<min(pieceCount, first + tuning.cutThrough)
        where !present[k] && inFlight[k] == nil && expected[k] == nil
            && PiecePicker.dealt(k, to: followers, pieceCount: pieceCount, me: me, myIndex: myFollowerIndex) == me {
            inFlight[k] = seed
            askedAt[k] = now
            out.append(.fetch(k, from: seed))
        }
        return out
    }

    /// The sources could not fill it. The peers' failures, once the length is known: the missing
    /// pieces from the origin by range, the rest kept. Otherwise (nothing to keep, a local failure,
    /// or the ranges failed too): the origin from the start, unless the origin was the source.
    private mutating func fallBack(_ why: FillFailure) -> [FillAction] {
        guard phase == .waiting || phase == .filling else { return [] }
        if fromOrigin { return abort(why) }
        if phase == .filling, rangeFallback == nil, why.isThePeers {
            rangeFallback = why
            lastProgressMs = clock
            return [.rangeFromOrigin(why)] + step(clock)
        }
        phase = .stopped(why)
        return [.fallBack(why)]
    }

    private mutating func abort(_ why: FillFailure) -> [FillAction] {
        guard phase == .waiting || phase == .filling else { return [] }
        phase = .stopped(why)
        return [.abort(why)]
    }

    package static func has(_ bits: [UInt8], _ k: Int) -> Bool {
        k >= 0 && k / 8 < bits.count && bits[k / 8] & (1 << UInt8(k % 8)) != 0
    }
}
