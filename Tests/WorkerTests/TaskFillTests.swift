import XCTest
@testable import Cache

/// The fill machine alone: events in, actions out, no socket, no disk, no clock. A small swarm
/// answers its actions (sources that are good, dead, refusing or lying), so every interleaving the
/// e2e suite meets, and those it cannot stage, is a few lines.
final class TaskFillTests: XCTestCase {
    static let pieceSize = 4
    let seed = SourceID("seed:1"), next = SourceID("next:1"), me = SourceID("me:1"), other = SourceID("other:1")

    enum Behaviour { case good, dead, refusing, lying, silent, busy }

    /// The network and the disk as the fill's driver would carry its actions out.
    struct Swarm {
        var fill: TaskFill
        var now: UInt64 = 0
        let pieces: Int
        var behaviour: [SourceID: Behaviour] = [:]
        /// Who holds which pieces (the seed: all of them).
        var holds: [SourceID: Set<Int>] = [:]
        var followers: [SourceID] = []
        var seed: SourceID
        var successors: [SourceID] = []
        var seedComplete = true
        var diskFullAt: Int?
        var sealResult: FillFailure?
        /// Called before each action is answered (a fault that starts mid-fill).
        var before: ((inout Swarm, FillAction) -> Void)?
        private(set) var actions: [FillAction] = []
        private var pending: [FillAction] = []
        private(set) var stored: [Int: SourceID] = [:]

        init(pieces: Int, seed: SourceID, me: SourceID?, tuning: TaskFill.Tuning = TaskFill.Tuning()) {
            self.pieces = pieces
            self.seed = seed
            fill = TaskFill(pieceSize: TaskFillTests.pieceSize, me: me, now: 0, tuning: tuning)
            behaviour[seed] = .good
            holds[seed] = Set(0..<pieces)
        }

        static func digest(_ k: Int) -> [UInt8] { [UInt8](repeating: UInt8(k & 0xff), count: 31) + [0x5a] }

        func bits(_ set: Set<Int>) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: (pieces + 7) / 8)
            for k in set { b[k / 8] |= 1 << UInt8(k % 8) }
            return b
        }

        var news: PieceNews {
            var n = PieceNews()
            n.length = Int64(pieces * TaskFillTests.pieceSize)
            n.pieceSize = TaskFillTests.pieceSize
            n.contentType = "application/octet-stream"
            n.seedComplete = seedComplete
            n.digests = (0..<pieces).map { Swarm.digest($0) }
            n.holdings = holds.mapValues(bits)
            n.followers = followers
            return n
        }

        mutating func send(_ e: TaskFill.Event) {
            let out = fill.handle(e, now: now)
            actions += out
            // Depth first: what an answer causes is carried out before the next answer comes.
            pending.insert(contentsOf: out, at: 0)
        }

        /// Answers actions until none is left.
        mutating func run() {
            var steps = 0
            while !pending.isEmpty {
                steps += 1
                precondition(steps < 100_000, "the fill does not settle")
                let a = pending.removeFirst()
                before?(&self, a)
                switch a {
                case .fetch(let k, let s):
                    switch behaviour[s] ?? .good {
                    case .good: send(.arrived(k, from: s, digest: Swarm.digest(k)))
                    case .lying: send(.arrived(k, from: s, digest: [UInt8](repeating: 0xee, count: 32)))
                    case .dead: send(.fetchFailed(k, from: s, .unreachable))
                    case .refusing: send(.fetchFailed(k, from: s, .refused))
                    case .silent: break
                    case .busy: send(.fetchFailed(k, from: s, .busy(retryAfterMs: 1000)))
                    }
                case .store(let k, let s):
                    if diskFullAt == k { send(.storeFailed(k, from: s, .diskFull)); break }
                    XCTAssertNil(stored[k], "piece \(k) stored twice")
                    stored[k] = s
                    send(.stored(k, from: s, bytes: TaskFillTests.pieceSize))
                case .seal, .sealChecked:
                    send(.sealed(sealResult))
                case .replaceSeed:
                    if successors.isEmpty {
                        send(.failed(.noSeed))
                    } else {
                        seed = successors.removeFirst()
                        holds[seed] = Set(0..<pieces)
                        behaviour[seed] = behaviour[seed] ?? .good
                        send(.news(news, seed: seed))
                    }
                default:
                    break
                }
            }
        }

        /// Starts the fill with the seed's news and runs it to rest.
        mutating func go() {
            send(.news(news, seed: seed))
            run()
        }

        var finished: Bool { actions.last == .finish && fill.phase == .done }
        /// Seals with the blob hashed here, and without (the seed's verification).
        var seals: (hashed: Int, checked: Int) { (count { $0 == .seal }, count { $0 == .sealChecked }) }
        func count(_ match: (FillAction) -> Bool) -> Int { actions.filter(match).count }
    }

    func testFromTheSeedAlone_describedOnceSealedOnceFinished() {
        var s = Swarm(pieces: 5, seed: seed, me: me)
        s.go()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertEqual(s.actions.first, .describe(length: 20, contentType: "application/octet-stream", digestHeader: nil))
        XCTAssertEqual(s.count { $0 == .sealChecked }, 1, "the seed verified the blob: not hashed again")
        XCTAssertEqual(s.count { $0 == .seal }, 0)
        XCTAssertEqual(Set(s.stored.keys), Set(0..<5))
        XCTAssertEqual(s.fill.bytesFrom, [seed: 20])
    }

    /// The last piece lands before the seed has verified the blob: the seal waits for the seed's
    /// word, then needs no hash of its own; without that word within the patience, it hashes.
    func testTheSealWaitsForTheSeedsVerificationForItsPatience() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        s.seedComplete = false
        s.go()
        XCTAssertEqual(s.fill.phase, .filling, "every piece in, the seed not yet verified")
        XCTAssertFalse(s.actions.contains(.seal) || s.actions.contains(.sealChecked))
        s.seedComplete = true
        s.send(.news(s.news, seed: seed))
        s.run()
        XCTAssertTrue(s.finished)
        XCTAssertEqual(s.count { $0 == .sealChecked }, 1)

        var t = Swarm(pieces: 3, seed: seed, me: me)
        t.seedComplete = false
        t.go()
        t.now = 5999
        t.send(.tick)
        XCTAssertEqual(t.fill.phase, .filling)
        t.now = 6000
        t.send(.tick)
        t.run()
        XCTAssertTrue(t.finished)
        XCTAssertTrue(t.seals == (1, 0), "no word from the seed: the blob is hashed here")
    }

    /// Pieces checked against two seeds' digests, or brought by the origin: hashed here.
    func testASeedChangeOrAPieceFromTheOriginMeansTheBlobIsHashedHere() {
        var s = Swarm(pieces: 6, seed: seed, me: me)
        s.successors = [next]
        s.before = { swarm, _ in if swarm.stored.count >= 2 { swarm.behaviour[self.seed] = .dead } }
        s.go()
        XCTAssertTrue(s.finished)
        XCTAssertFalse(s.fill.seedChecked)
        XCTAssertTrue(s.seals == (1, 0), "pieces checked against two seeds")

        var t = Swarm(pieces: 4, seed: seed, me: me)
        t.before = { swarm, _ in if swarm.stored.count >= 2 { swarm.behaviour[self.seed] = .dead } }
        t.go()
        XCTAssertTrue(t.finished)
        XCTAssertTrue(t.seals == (1, 0), "two pieces came from the origin by range")
    }

    func testNothingIsFetchedBeforeTheLength() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        var n = s.news
        n.length = nil
        s.send(.news(n, seed: seed))
        XCTAssertEqual(s.actions, [])
        XCTAssertEqual(s.fill.phase, .waiting)
    }

    func testAnEmptyBlobSealsAtOnce() {
        var s = Swarm(pieces: 0, seed: seed, me: me)
        s.go()
        XCTAssertEqual(s.actions, [.describe(length: 0, contentType: "application/octet-stream", digestHeader: nil), .sealChecked, .finish])
    }

    func testTheSeedsPieceSizeIsTakenIfATaskCanHoldIt() {
        // Another version's, or a bigger blob's: the pieces are cut the seed's way.
        var s = Swarm(pieces: 3, seed: seed, me: me)
        var n = s.news
        n.pieceSize = 8
        s.send(.news(n, seed: seed))
        XCTAssertEqual(s.fill.pieceSize, 8)
        XCTAssertEqual(s.fill.pieceCount, 2, "12 bytes in pieces of 8")
        XCTAssertEqual(s.actions.first, .describe(length: 12, contentType: "application/octet-stream", digestHeader: nil))
        // One a task cannot hold: more pieces than its bitmap has, or none at all.
        for bad in [1, 0, PieceCache.maxPieceSize * 2] {
            var t = Swarm(pieces: 3, seed: seed, me: me)
            var m = t.news
            m.pieceSize = bad
            m.length = Int64(TaskMeta.maxPieces) * 2
            t.send(.news(m, seed: seed))
            XCTAssertEqual(t.actions, [.fallBack(.pieceSizeMismatch)], "piece size \(bad)")
        }
    }

    func testTheOriginsBlobIsCutInPiecesThatATaskHolds() {
        XCTAssertEqual(PieceCache.pieceSize(base: 1 << 20, length: 64 << 20), 1 << 20)
        XCTAssertEqual(PieceCache.pieceSize(base: 1 << 20, length: Int64(TaskMeta.maxPieces) << 20), 1 << 20, "32 GiB: still 1 MiB")
        XCTAssertEqual(PieceCache.pieceSize(base: 1 << 20, length: (Int64(TaskMeta.maxPieces) << 20) + 1), 2 << 20)
        XCTAssertEqual(PieceCache.pieceSize(base: 1 << 20, length: 100 << 30), 4 << 20, "100 GiB")
        XCTAssertEqual(PieceCache.pieceSize(base: 1 << 20, length: .max), PieceCache.maxPieceSize, "capped")
        var fill = TaskFill(pieceSize: 4, me: nil, now: 0, fromOrigin: true)
        _ = fill.handle(.described(length: Int64(TaskMeta.maxPieces) * 4 + 1, contentType: "x", digestHeader: nil), now: 0)
        XCTAssertEqual(fill.pieceSize, 8)
        XCTAssertLessThanOrEqual(fill.pieceCount, TaskMeta.maxPieces)
    }

    func testAtMostParallelInFlight() {
        var t = TaskFill.Tuning()
        t.parallel = 3
        var s = Swarm(pieces: 20, seed: seed, me: me, tuning: t)
        s.behaviour[seed] = .silent
        s.go()
        XCTAssertEqual(s.count { if case .fetch = $0 { return true } else { return false } }, 3)
        XCTAssertEqual(s.fill.inFlight.count, 3)
    }

    /// The seed dies after k pieces, for every k: the next one in order takes over, each piece is
    /// stored once, and the blob completes.
    func testOwnerDeathAtEveryPiece() {
        for k in 0..<6 {
            var s = Swarm(pieces: 6, seed: seed, me: me)
            s.successors = [next]
            s.before = { swarm, _ in if swarm.stored.count >= k { swarm.behaviour[self.seed] = .dead } }
            s.go()
            XCTAssertTrue(s.finished, "k=\(k): \(s.actions)")
            XCTAssertEqual(s.count { $0 == .replaceSeed(seed) }, 1, "k=\(k)")
            XCTAssertTrue(s.actions.contains(.avoid(seed, .unreachable)), "k=\(k)")
            XCTAssertEqual(s.stored.count, 6, "k=\(k)")
            XCTAssertEqual(s.fill.bytesFrom[next], (6 - s.stored.values.filter { $0 == seed }.count) * 4, "k=\(k)")
            XCTAssertNil(s.actions.first { if case .fallBack = $0 { return true } else { return false } }, "k=\(k)")
        }
    }

    /// Nobody left to take over: the pieces held are kept, the rest come from the origin by range,
    /// and the blob completes without starting over, at every piece the seed may die at.
    func testOwnerDeathWithNobodyToTakeOverTakesTheRestFromTheOriginByRange() {
        for k in 0..<6 {
            var s = Swarm(pieces: 6, seed: seed, me: me)
            s.before = { swarm, _ in if swarm.stored.count >= k { swarm.behaviour[self.seed] = .dead } }
            s.go()
            XCTAssertTrue(s.finished, "k=\(k): \(s.actions)")
            XCTAssertEqual(s.count { $0 == .rangeFromOrigin(.noSeed) }, 1, "k=\(k)")
            XCTAssertNil(s.actions.first { if case .fallBack = $0 { return true } else { return false } }, "k=\(k)")
            let fromSeed = s.stored.values.filter { $0 == seed }.count
            XCTAssertGreaterThanOrEqual(fromSeed, k, "k=\(k): the seed's pieces are kept")
            XCTAssertEqual(s.fill.bytesFrom[.origin], (6 - fromSeed) * 4, "k=\(k): only the missing pieces from the origin")
            XCTAssertEqual(s.fill.rangeFallback, .noSeed)
        }
    }

    func testNothingKnownYetWithNoSeedStartsOverFromTheOrigin() {
        var s = Swarm(pieces: 4, seed: seed, me: me)
        s.send(.failed(.noSeed))
        XCTAssertEqual(s.actions, [.fallBack(.noSeed)], "no length, nothing to keep: the whole blob")
    }

    func testTheOriginsRangesAtMostOriginParallelAtOnce() {
        var t = TaskFill.Tuning()
        t.originParallel = 2
        var s = Swarm(pieces: 8, seed: seed, me: me, tuning: t)
        s.behaviour[.origin] = .silent
        s.before = { swarm, _ in if swarm.stored.count >= 1 { swarm.behaviour[self.seed] = .dead } }
        s.go()
        XCTAssertEqual(s.fill.inFlight.values.filter { $0 == .origin }.count, 2)
        XCTAssertEqual(s.fill.phase, .filling)
    }

    /// A 429 or 503 from the origin is not the end: its pieces are asked again after the pause.
    func testABusyOriginIsAskedAgainAfterItsPause() {
        var s = Swarm(pieces: 4, seed: seed, me: me)
        s.behaviour[seed] = .dead
        s.behaviour[.origin] = .busy
        s.go()
        XCTAssertEqual(s.fill.phase, .filling)
        s.behaviour[.origin] = .good
        s.now = 500
        s.send(.tick)
        s.run()
        XCTAssertFalse(s.finished, "not before the origin's pause")
        s.now = 1000
        s.send(.tick)
        s.run()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertEqual(s.fill.bytesFrom[.origin], 16)
    }

    /// While the origin's ranges are being asked again, their retries decide, not the idle time.
    func testARetryingOriginIsNotCutByTheIdleTime() {
        var t = TaskFill.Tuning()
        t.idleMs = 1000
        var s = Swarm(pieces: 4, seed: seed, me: me, tuning: t)
        s.behaviour[seed] = .dead
        s.behaviour[.origin] = .busy
        s.go()
        XCTAssertNotNil(s.fill.rangeFallback)
        s.now = 5000
        s.send(.tick)
        s.run()
        XCTAssertEqual(s.fill.phase, .filling, "the origin is busy, not stalled: \(s.actions.suffix(3))")
        s.behaviour[.origin] = .good
        s.now = 10_000
        s.send(.tick)
        s.run()
        XCTAssertTrue(s.finished)
    }

    func testAnOriginThatRefusesTheRangesIsAskedForTheWholeBlob() {
        var s = Swarm(pieces: 4, seed: seed, me: me)
        s.behaviour[.origin] = .refusing
        s.before = { swarm, _ in if swarm.stored.count >= 2 { swarm.behaviour[self.seed] = .dead } }
        s.go()
        XCTAssertEqual(s.actions.last, .fallBack(.sourceFailed("origin refused the missing pieces")))
    }

    /// The range fallback is once: a later peer failure changes nothing, a second stall starts over.
    func testAfterTheRangeFallbackPeerNewsDoesNotStopItButAStallDoes() {
        var t = TaskFill.Tuning()
        t.idleMs = 1000
        var s = Swarm(pieces: 4, seed: seed, me: me, tuning: t)
        s.behaviour[seed] = .silent
        s.behaviour[.origin] = .silent
        s.go()
        s.now = 1001
        s.send(.tick)
        XCTAssertEqual(s.fill.rangeFallback, .noProgress(ms: 1001))
        s.send(.failed(.seedFailed("owner's download failed")))
        XCTAssertEqual(s.fill.phase, .filling, "the ranges go on")
        s.now = 2002
        s.send(.tick)
        XCTAssertEqual(s.actions.last, .fallBack(.noProgress(ms: 1001)))
    }

    /// One failed piece from the seed is retried (a lost connection); a few in a row give it up.
    func testTheSeedIsGivenSlipsBeforeItIsAvoided() {
        var t = TaskFill.Tuning()
        t.parallel = 1
        var s = Swarm(pieces: 3, seed: seed, me: me, tuning: t)
        var failures = 0
        s.before = { swarm, a in
            if case .fetch = a { failures += 1; swarm.behaviour[self.seed] = failures <= 3 ? .refusing : .good }
        }
        s.go()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertFalse(s.actions.contains { if case .avoid = $0 { return true } else { return false } })
    }

    func testALyingPeerIsAvoidedAndItsPiecesComeFromTheSeed() {
        var s = Swarm(pieces: 6, seed: seed, me: me)
        s.holds[other] = Set(0..<6)
        s.behaviour[other] = .lying
        s.followers = [me, other]
        s.go()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertTrue(s.actions.contains { if case .avoid(self.other, .badDigest) = $0 { return true } else { return false } })
        XCTAssertTrue(s.stored.values.allSatisfy { $0 == seed }, "no piece from the liar is stored")
        XCTAssertEqual(s.count { $0 == .fetch(0, from: other) || $0 == .fetch(1, from: other) } <= 2, true)
    }

    func testALyingSeedWithNobodyElseLeavesThePiecesToTheOrigin() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        s.behaviour[seed] = .lying
        s.go()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertTrue(s.actions.contains(.rangeFromOrigin(.badPiecesFromSeed)))
        XCTAssertTrue(s.stored.values.allSatisfy { $0 == .origin }, "nothing of the liar's is stored")
    }

    /// Every piece matched the seed's digests, but the blob does not match its name: the seed's
    /// digests were lies. The task is dropped (as corrupt), not retried on this claim.
    func testAWholeBlobMismatchAborts() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        s.sealResult = .digestMismatch
        s.go()
        XCTAssertEqual(s.actions.last, .abort(.digestMismatch))
        XCTAssertEqual(s.fill.phase, .stopped(.digestMismatch))
    }

    func testAFailedFlushFallsBack() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        s.sealResult = .seal("fdatasync: EIO")
        s.go()
        XCTAssertEqual(s.actions.last, .fallBack(.seal("fdatasync: EIO")))
    }

    func testDiskFullMidFillStopsCachingAndLateAnswersAreIgnored() {
        var s = Swarm(pieces: 6, seed: seed, me: me)
        s.diskFullAt = 3
        s.go()
        XCTAssertEqual(s.actions.last, .abort(.diskFull), "not the origin again into a full disk")
        let before = s.actions.count
        s.send(.stored(4, from: seed, bytes: 4))
        s.send(.arrived(5, from: seed, digest: Swarm.digest(5)))
        s.send(.news(s.news, seed: seed))
        s.send(.tick)
        XCTAssertEqual(s.actions.count, before, "a stopped fill takes no further action")
    }

    func testAStalledSourceFallsBackOnlyAfterTheIdleTime() {
        var t = TaskFill.Tuning()
        t.idleMs = 60_000
        var s = Swarm(pieces: 3, seed: seed, me: me, tuning: t)
        s.behaviour[seed] = .silent
        s.go()
        s.now = 60_000
        s.send(.tick)
        XCTAssertEqual(s.fill.phase, .filling)
        s.now = 60_001
        s.send(.tick)
        s.run()
        XCTAssertTrue(s.actions.contains(.rangeFromOrigin(.noProgress(ms: 60_001))))
        XCTAssertTrue(s.finished, "the pieces the silent seed owed come from the origin: \(s.actions)")
        XCTAssertEqual(s.fill.bytesFrom[.origin], 12)
    }

    /// A host waiting its turn in a big, slow swarm: nothing stored here, but the seed keeps
    /// gaining pieces. That is not a stall; once the swarm stops gaining, the idle time runs.
    func testTheSwarmGainingPiecesPostponesTheIdleFallback() {
        var t = TaskFill.Tuning()
        t.idleMs = 20_000
        var s = Swarm(pieces: 8, seed: seed, me: me, tuning: t)
        s.followers = [other, SourceID("f1:1"), me]
        s.seedComplete = false
        s.behaviour[seed] = .silent
        s.holds[seed] = [0]
        s.go()
        for k in 1..<6 {
            s.now += 10_000
            s.holds[seed] = Set(0...k)
            s.send(.news(s.news, seed: seed))
        }
        XCTAssertNil(s.fill.rangeFallback, "the seed gained a piece every 10 s: \(s.actions.suffix(3))")
        s.now += 20_000
        s.send(.news(s.news, seed: seed))
        XCTAssertNil(s.fill.rangeFallback, "20 s since the last gain: not more")
        s.now += 1
        s.send(.tick)
        XCTAssertTrue(s.actions.contains { if case .rangeFromOrigin(.noProgress) = $0 { return true } else { return false } }, "\(s.actions.suffix(3))")
    }

    /// No seed has given the length yet: the source's own bounds on a silent owner decide; the idle
    /// time is only a backstop there, three times as long.
    func testBeforeTheLengthTheIdleTimeIsOnlyABackstop() {
        var t = TaskFill.Tuning()
        t.idleMs = 20_000
        var f = TaskFill(pieceSize: 4, me: me, now: 0, tuning: t)
        XCTAssertEqual(f.handle(.tick, now: 20_001), [])
        XCTAssertEqual(f.handle(.tick, now: 60_000), [])
        XCTAssertEqual(f.handle(.tick, now: 60_001), [.fallBack(.noProgress(ms: 60_001))])
    }

    /// Bytes of a piece arriving, however slowly, are not a stall.
    func testBytesArrivingPostponeTheIdleFallback() {
        var t = TaskFill.Tuning()
        t.idleMs = 1000
        var s = Swarm(pieces: 3, seed: seed, me: me, tuning: t)
        s.behaviour[seed] = .silent
        s.go()
        s.now = 900
        s.send(.bytesArrived)
        s.now = 1500
        s.send(.tick)
        XCTAssertNil(s.fill.rangeFallback, "bytes 600 ms ago")
        s.now = 1901
        s.send(.tick)
        XCTAssertEqual(s.fill.rangeFallback, .noProgress(ms: 1001))
    }

    func testProgressPostponesTheIdleFallback() {
        var t = TaskFill.Tuning()
        t.parallel = 1
        t.idleMs = 1000
        var s = Swarm(pieces: 3, seed: seed, me: me, tuning: t)
        s.before = { swarm, a in if case .fetch = a { swarm.now += 900 } }
        s.go()
        XCTAssertTrue(s.finished, "900 ms a piece is progress within the idle time: \(s.actions)")
    }

    func testAReaderAttachingMidFillChangesNothing() {
        var plain = Swarm(pieces: 6, seed: seed, me: me)
        plain.go()
        var withReader = Swarm(pieces: 6, seed: seed, me: me)
        withReader.before = { swarm, a in if a == .store(2, from: self.seed) { swarm.send(.readerAttached) } }
        withReader.go()
        XCTAssertEqual(withReader.actions, plain.actions)
        XCTAssertEqual(withReader.fill.readers, 1)
        withReader.send(.readerLeft)
        withReader.send(.readerLeft)
        XCTAssertEqual(withReader.fill.readers, 0)
    }

    /// The seed's pieces are dealt round its followers: this host takes from the seed only its own
    /// share, and waits for the rest at the follower they went to.
    func testTheSeedsPiecesAreDealtRoundTheFollowers() {
        var s = Swarm(pieces: 8, seed: seed, me: me)
        s.followers = [me, other]
        s.seedComplete = false
        s.behaviour[seed] = .silent
        s.go()
        let fromSeed = s.actions.compactMap { a -> Int? in if case .fetch(let k, let f) = a, f == seed { return k } else { return nil } }
        XCTAssertEqual(Set(fromSeed), [0, 2, 4, 6], "pieces dealt to this host")
    }

    /// A piece waits at the seed for the follower it is dealt to: `patienceMs` in a big swarm,
    /// `smallSwarmPatienceMs` in one of at most `endgameFollowers`.
    func testAPieceWaitsAtTheSeedOnlyForItsPatience() {
        for (followers, patience) in [([other, me], UInt64(2000)), ([other, me] + (1...9).map { SourceID("f\($0):1") }, 6000)] {
            var t = TaskFill.Tuning()
            t.patienceMs = 6000
            t.smallSwarmPatienceMs = 2000
            var s = Swarm(pieces: 2, seed: seed, me: me, tuning: t)
            s.followers = followers
            s.seedComplete = false
            s.behaviour[seed] = .silent
            s.go()
            XCTAssertEqual(s.actions.filter { $0 == .fetch(0, from: seed) }.count, 0, "piece 0 is the other follower's")
            s.now = patience - 1
            s.send(.news(s.news, seed: seed))
            XCTAssertFalse(s.actions.contains(.fetch(0, from: seed)), "\(followers.count) followers: not before \(patience) ms")
            s.now = patience
            s.send(.news(s.news, seed: seed))
            XCTAssertTrue(s.actions.contains(.fetch(0, from: seed)), "\(followers.count) followers: after \(patience) ms anyone may take it")
        }
    }

    /// In the endgame a small swarm's seed serves the last pieces beside a follower; a big swarm's
    /// seed does not, or every host would end at the seed at once.
    func testTheEndgameAsksTheSeedOnlyInASmallSwarm() {
        func fromSeed(followers: Int) -> Int {
            var s = Swarm(pieces: 4, seed: seed, me: me)
            s.holds[other] = Set(0..<4)
            s.behaviour[other] = .silent
            s.followers = [me, other] + (0..<(followers - 2)).map { SourceID("f\($0):1") }
            s.go()
            return s.count { if case .fetch(_, let f) = $0 { return f == seed } else { return false } }
        }
        XCTAssertGreaterThan(fromSeed(followers: 2), 0, "2 followers: the seed helps with the tail")
        XCTAssertEqual(fromSeed(followers: 9), 0, "9 followers: the tail comes from the followers only")
    }

    func testAFollowerThatHasAPieceSparesTheSeed() {
        var s = Swarm(pieces: 4, seed: seed, me: me)
        s.holds[other] = [1, 3]
        s.followers = [me, other]
        s.go()
        XCTAssertTrue(s.finished)
        XCTAssertEqual(s.stored[1], other)
        XCTAssertEqual(s.stored[3], other)
    }

    /// A 503 from an uploader is "ask another source": it is not avoided, and it is asked again
    /// once its pause is over.
    func testABusySourceIsNotAvoidedAndIsAskedAgainAfterItsPause() {
        var s = Swarm(pieces: 4, seed: seed, me: me)
        s.holds[other] = Set(0..<4)
        s.followers = [me, other]
        s.behaviour[other] = .busy
        s.go()
        XCTAssertTrue(s.finished, "\(s.actions)")
        XCTAssertFalse(s.actions.contains { if case .avoid = $0 { return true } else { return false } })
        XCTAssertTrue(s.stored.values.allSatisfy { $0 == s.seed }, "the seed served while the other was busy")
        // Busy until 1000: asked again only then.
        var t = Swarm(pieces: 2, seed: seed, me: me)
        t.holds = [other: [0, 1], seed: [0, 1]]
        t.followers = [other, me]
        t.seedComplete = false
        t.behaviour[other] = .busy
        t.go()
        let asked = t.actions.filter { $0 == .fetch(0, from: other) }.count
        t.behaviour[other] = .good
        t.now = 999
        t.send(.news(t.news, seed: seed))
        t.run()
        XCTAssertEqual(t.actions.filter { $0 == .fetch(0, from: other) }.count, asked, "still paused")
        t.now = 1000
        t.send(.news(t.news, seed: seed))
        t.run()
        XCTAssertEqual(t.stored.count, 2, "\(t.actions)")
    }

    // MARK: Cut through

    /// The seed holds pieces 0 and 1 and is receiving 2 from the origin; its news has digests for
    /// what it holds only. Followers [me, other]: me is dealt 0, 2, 4.
    func receivingSeed(tuning: TaskFill.Tuning = TaskFill.Tuning()) -> Swarm {
        var s = Swarm(pieces: 6, seed: seed, me: me, tuning: tuning)
        s.followers = [me, other]
        s.seedComplete = false
        s.holds[seed] = [0, 1]
        s.behaviour[seed] = .silent
        return s
    }

    func seedNews(_ s: Swarm, digests: [Int: [UInt8]]) -> PieceNews {
        var n = s.news
        n.digests = (0..<s.pieces).map { digests[$0] }
        return n
    }

    func testThePieceTheSeedIsReceivingIsAskedOfItByTheFollowerItIsDealtTo() {
        var s = receivingSeed()
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        XCTAssertTrue(s.actions.contains(.fetch(2, from: seed)), "piece 2 is dealt here and arriving at the seed: \(s.actions)")
        XCTAssertFalse(s.actions.contains(.fetch(3, from: seed)), "piece 3 is the other follower's")
        XCTAssertFalse(s.actions.contains(.fetch(4, from: seed)), "piece 4 is past what the seed is receiving")

        var off = TaskFill.Tuning()
        off.cutThrough = 0
        var t = receivingSeed(tuning: off)
        t.send(.news(seedNews(t, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        XCTAssertFalse(t.actions.contains(.fetch(2, from: seed)), "cutThrough 0: only what the seed has")

        var big = TaskFill.Tuning()
        big.cutThroughFollowers = 1
        var u = receivingSeed(tuning: big)
        u.send(.news(seedNews(u, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        XCTAssertFalse(u.actions.contains(.fetch(2, from: seed)), "more followers than cutThroughFollowers: only what the seed has")
    }

    func testACutThroughPieceIsStoredOnlyOnceTheSeedsDigestMatchesIt() {
        var s = receivingSeed()
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        s.send(.arrived(2, from: seed, digest: Swarm.digest(2)))
        XCTAssertTrue(s.fill.awaitsDigest(2))
        XCTAssertFalse(s.actions.contains(.store(2, from: seed)), "no digest yet: held")
        XCTAssertEqual(s.fill.inFlight[2], seed, "still in flight: not asked again")
        s.holds[seed] = [0, 1, 2]
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1), 2: Swarm.digest(2)]), seed: seed))
        XCTAssertTrue(s.actions.contains(.store(2, from: seed)), "\(s.actions)")
        XCTAssertFalse(s.fill.awaitsDigest(2))
    }

    func testACutThroughPieceThatDoesNotMatchTheSeedsDigestIsDroppedAndTheSeedAvoided() {
        var s = receivingSeed()
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        s.send(.arrived(2, from: seed, digest: [UInt8](repeating: 0xee, count: 32)))
        s.holds[seed] = [0, 1, 2]
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1), 2: Swarm.digest(2)]), seed: seed))
        XCTAssertFalse(s.actions.contains(.store(2, from: seed)))
        XCTAssertTrue(s.actions.contains(.drop(2)))
        XCTAssertTrue(s.actions.contains(.avoid(seed, .badDigest(piece: 2))))
    }

    func testACutThroughPieceWhoseDigestNeverComesIsLetGoAfterThePatience() {
        var s = receivingSeed()
        s.send(.news(seedNews(s, digests: [0: Swarm.digest(0), 1: Swarm.digest(1)]), seed: seed))
        s.send(.arrived(2, from: seed, digest: Swarm.digest(2)))
        s.now = 5999
        s.send(.tick)
        XCTAssertFalse(s.actions.contains(.drop(2)))
        s.now = 6000
        s.send(.tick)
        XCTAssertTrue(s.actions.contains(.drop(2)), "\(s.actions)")
        XCTAssertFalse(s.fill.awaitsDigest(2))
        XCTAssertEqual(s.fill.inFlight[2], seed, "asked again at once: still arriving at the seed")
        XCTAssertEqual(s.count { $0 == .fetch(2, from: seed) }, 2)
    }

    func testUnknownDigestsAreNotFetched() {
        var s = Swarm(pieces: 3, seed: seed, me: me)
        var n = s.news
        n.digests = [Swarm.digest(0), nil, nil]
        s.send(.news(n, seed: seed))
        XCTAssertEqual(s.actions.filter { if case .fetch = $0 { return true } else { return false } }, [.fetch(0, from: seed)])
    }

    // MARK: The origin's stream

    /// A fill the origin streams: its head sizes the task, pieces come in order and are stored in
    /// order; the seal once the last one is stored.
    func originFill(length: Int64, maxLength: Int64 = .max) -> (TaskFill, [FillAction]) {
        var f = TaskFill(pieceSize: 4, me: nil, now: 0, fromOrigin: true, maxLength: maxLength)
        let out = f.handle(.described(length: length, contentType: "x", digestHeader: "sha256:ab"), now: 0)
        return (f, out)
    }

    func testTheOriginStreamsInOrderAndSealsAfterTheLastWrite() {
        var (f, out) = originFill(length: 10)
        XCTAssertEqual(out, [.describe(length: 10, contentType: "x", digestHeader: "sha256:ab")])
        XCTAssertEqual(f.pieceCount, 3)
        for k in 0..<3 { XCTAssertEqual(f.handle(.arrived(k, from: .origin, digest: nil), now: 0), [.store(k, from: .origin)]) }
        XCTAssertEqual(f.handle(.stored(0, from: .origin, bytes: 4), now: 0), [])
        XCTAssertEqual(f.handle(.streamEnded, now: 0), [], "every piece arrived: the end is no news")
        XCTAssertEqual(f.handle(.stored(1, from: .origin, bytes: 4), now: 0), [])
        XCTAssertEqual(f.handle(.stored(2, from: .origin, bytes: 2), now: 0), [.seal])
        XCTAssertEqual(f.handle(.sealed(nil), now: 0), [.finish])
        XCTAssertEqual(f.bytesFrom, [.origin: 10])
    }

    func testAnOriginFillNeverFallsBackToTheOrigin() {
        let failures: [(TaskFill.Event, FillFailure)] = [
            (.streamEnded, .badLength("origin body ended at piece 1 of 3")),
            (.failed(.sourceFailed("origin stalled: 0 bytes in 60 s")), .sourceFailed("origin stalled: 0 bytes in 60 s")),
            (.arrived(2, from: .origin, digest: nil), .sourceFailed("origin sent piece 2 out of order")),
            (.storeFailed(0, from: .origin, .diskFull), .diskFull),
            (.storeFailed(0, from: .origin, .store("EIO")), .store("EIO")),
        ]
        for (event, why) in failures {
            var (f, _) = originFill(length: 10)
            _ = f.handle(.arrived(0, from: .origin, digest: nil), now: 0)
            XCTAssertEqual(f.handle(event, now: 0), [.abort(why)], "\(event)")
            XCTAssertEqual(f.phase, .stopped(why))
            XCTAssertEqual(f.handle(.stored(0, from: .origin, bytes: 4), now: 0), [], "nothing after the abort")
        }
        var (f, _) = originFill(length: 4)
        _ = f.handle(.arrived(0, from: .origin, digest: nil), now: 0)
        XCTAssertEqual(f.handle(.stored(0, from: .origin, bytes: 4), now: 0), [.seal])
        XCTAssertEqual(f.handle(.sealed(.digestMismatch), now: 0), [.abort(.digestMismatch)])
        var (g, _) = originFill(length: 4)
        _ = g.handle(.arrived(0, from: .origin, digest: nil), now: 0)
        _ = g.handle(.stored(0, from: .origin, bytes: 4), now: 0)
        XCTAssertEqual(g.handle(.sealed(.seal("fdatasync: EIO")), now: 0), [.abort(.seal("fdatasync: EIO"))])
    }

    func testAnOriginLengthBeyondTheTaskAborts() {
        let (f, out) = originFill(length: 100, maxLength: 64)
        XCTAssertEqual(out, [.abort(.badLength("origin announced 100 bytes, more than a task can hold"))])
        XCTAssertEqual(f.pieceCount, 0)
    }

    func testAnEmptyBlobFromTheOriginSealsAtOnce() {
        let (_, out) = originFill(length: 0)
        XCTAssertEqual(out, [.describe(length: 0, contentType: "x", digestHeader: "sha256:ab"), .seal])
    }

    func testTheOriginsStreamHasNoIdleFallbackOfItsOwn() {
        var (f, _) = originFill(length: 10)
        XCTAssertEqual(f.handle(.tick, now: 10_000_000), [], "its source measures the stall in bytes per window")
    }
}
