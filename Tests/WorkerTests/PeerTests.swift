import XCTest
@testable import UV
@testable import Config
@testable import Cache
@testable import Peer
import HTTP
import TLS

/// The peer exchange's decisions, without a socket: tokens, owners, routes, piece choice, membership.
final class PeerTests: XCTestCase {
    let secret = Array("0123456789abcdef0123456789abcdef".utf8)
    let id = String(repeating: "ab", count: 32)

    func testTokensBindSecretMethodTargetAndTime() {
        let t = PeerToken(secret: secret)
        let v = t.sign(method: "GET", target: "/peer/v1/tasks/\(id)", now: 1_000_000)
        XCTAssertTrue(t.verify(v, method: "GET", target: "/peer/v1/tasks/\(id)", now: 1_000_100))
        XCTAssertFalse(t.verify(v, method: "POST", target: "/peer/v1/tasks/\(id)", now: 1_000_000), "another method")
        XCTAssertFalse(t.verify(v, method: "GET", target: "/peer/v1/tasks/\(id)/pieces/0", now: 1_000_000), "another target")
        XCTAssertFalse(t.verify(v, method: "GET", target: "/peer/v1/tasks/\(id)", now: 1_000_301), "too late")
        XCTAssertFalse(PeerToken(secret: Array("another secret, 16 bytes+".utf8)).verify(v, method: "GET", target: "/peer/v1/tasks/\(id)", now: 1_000_000))
        for bad in [nil, "", "1000000", "1000000.", "x.00", "1000000.zz", "1000000." + String(repeating: "0", count: 64)] {
            XCTAssertFalse(t.verify(bad, method: "GET", target: "/", now: 1_000_000), "\(String(describing: bad))")
        }
    }

    func testRendezvousIsStableAndFailsOverToTheNext() {
        let members = (1...8).map { Member(host: "10.0.0.\($0)", port: 65002) }
        let order = Rendezvous.order(id, members)
        XCTAssertEqual(Set(order), Set(members))
        XCTAssertEqual(Rendezvous.order(id, members.reversed()), order, "every host computes the same order")
        // Without the owner, the others keep their relative order: only its tasks move.
        XCTAssertEqual(Rendezvous.order(id, members.filter { $0 != order[0] }), Array(order.dropFirst()))
        // Owners spread over the members.
        var owned: [Member: Int] = [:]
        for i in 0..<800 { owned[Rendezvous.order(String(format: "%064x", i), members)[0], default: 0] += 1 }
        XCTAssertEqual(owned.count, 8)
        XCTAssertTrue(owned.values.allSatisfy { $0 > 50 }, "\(owned)")
    }

    /// The hosts that cannot reach an owner ask relays in orders of their own: never the owner or
    /// themselves, every other member, and not all the same member first.
    func testEachHostAsksRelaysInItsOwnOrder() {
        let members = (1...40).map { Member(host: "10.0.0.\($0)", port: 65002) }
        let order = Rendezvous.order(id, members)
        var firsts = Set<Member>()
        for me in order.dropFirst() {
            let relays = PeerNetwork.relayOrder(id, order, me: me)
            XCTAssertEqual(Set(relays), Set(members).subtracting([order[0], me]))
            firsts.insert(relays[0])
        }
        XCTAssertGreaterThan(firsts.count, 10, "the first relay asked spreads over the swarm")
    }

    /// An origin request's body (the client's credentials) goes sealed: it opens only under the same
    /// secret, for the same method, target and token time, and not once altered.
    func testSealedBodiesOpenOnlyForTheirRequest() {
        let t = PeerToken(secret: Array("a cluster secret, 16 bytes+".utf8))
        let body = Array(#"{"url":"https://reg.test/v2/a/blobs/sha256:00","headers":[["Authorization","Bearer s3cret"]]}"#.utf8)
        let target = "/peer/v1/tasks/\(id)/origin"
        let token = t.sign(method: "POST", target: target, now: 1_000_000)
        let box = t.seal(body, method: "POST", target: target, now: 1_000_000)!
        XCTAssertFalse(String(decoding: box, as: UTF8.self).contains("s3cret"), "nothing of it in clear")
        XCTAssertEqual(t.open(box, token: token, method: "POST", target: target), body)
        XCTAssertNil(t.open(box, token: t.sign(method: "POST", target: target, now: 1_000_001), method: "POST", target: target),
                     "another token time")
        XCTAssertNil(t.open(box, token: token, method: "POST", target: "/peer/v1/tasks/\(id)/holders"), "another request")
        XCTAssertNil(PeerToken(secret: Array("another secret, 16 bytes+".utf8)).open(box, token: token, method: "POST", target: target))
        var altered = box
        altered[20] ^= 1
        XCTAssertNil(t.open(altered, token: token, method: "POST", target: target))
        XCTAssertNil(t.open(Array(box.prefix(10)), token: token, method: "POST", target: target), "too short")
        XCTAssertNotEqual(t.seal(body, method: "POST", target: target, now: 1_000_000), box, "a fresh nonce each time")
        XCTAssertEqual(SealedBox.open(SealedBox.seal([], key: [UInt8](repeating: 7, count: 32), aad: [])!, key: [UInt8](repeating: 7, count: 32), aad: []), [])
    }

    func testRoutes() {
        XCTAssertEqual(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)"), .info(id, since: .all))
        XCTAssertEqual(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)?digests=3&holders=12"),
                       .info(id, since: TaskInfo.Since(digests: 3, holders: 12)))
        XCTAssertEqual(PeerProtocol.taskPath(id, since: TaskInfo.Since(digests: 3, holders: 12)), "/peer/v1/tasks/\(id)?digests=3&holders=12")
        XCTAssertEqual(PeerProtocol.taskPath(id), "/peer/v1/tasks/\(id)")
        for bad in ["?digests=3", "?digests=3&holders=1&x=2", "?digests=-1&holders=0", "?digests=&holders=0", "?digests=12345678&holders=0",
                    "?digests=1&digests=2", "?holders=1&holders=1"] {
            XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)\(bad)"), bad)
        }
        XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)/pieces/1?digests=0&holders=0"), "only the info takes a query")
        XCTAssertEqual(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)/pieces/12"), .piece(id, 12))
        XCTAssertEqual(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)/pieces"), .bitmap(id))
        XCTAssertNil(PeerProtocol.route(method: "POST", target: "/peer/v1/tasks/\(id)/pieces"))
        let held = TaskInfo.holding([0b0000_0101])
        XCTAssertTrue(held.has(0) && !held.has(1) && held.has(2) && !held.has(8))
        XCTAssertEqual(PeerProtocol.route(method: "POST", target: "/peer/v1/tasks/\(id)/origin"), .origin(id))
        XCTAssertEqual(PeerProtocol.route(method: "POST", target: "/peer/v1/tasks/\(id)/holders"), .holders(id))
        XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/../etc/passwd"))
        XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)/pieces/-1"))
        XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id)/pieces/99999999999"))
        XCTAssertNil(PeerProtocol.route(method: "DELETE", target: "/peer/v1/tasks/\(id)"))
        XCTAssertNil(PeerProtocol.route(method: "GET", target: "/peer/v1/tasks/\(id.uppercased())"))
    }

    func testTheOwnersInfoComesInPartsAndAddsUp() throws {
        let d = (0..<4).map { String(repeating: String(format: "%02x", $0 + 1), count: 32) }
        let first = TaskInfo(state: "downloading", length: 16, pieceSize: 4, contentType: "x", pieces: "03",
                             digests: [d[0], d[1], "", ""], holders: ["a:1", "b:1"])
        XCTAssertEqual(first.since, TaskInfo.Since(digests: 2, holders: 2), "the digests known from the first, every holder")
        // The next answer leaves out what the asker has.
        var next = TaskInfo(state: "complete", length: 16, pieceSize: 4, contentType: "x", pieces: "0f", digests: [d[2], d[3]], holders: ["c:1"])
        next.digestsFrom = 2
        next.holdersFrom = 2
        let wire = try JSONEncoder().encode(next)
        let merged = try XCTUnwrap(XCTUnwrap(TaskInfo.parse(Array(wire))).merged(onto: first))
        XCTAssertEqual(merged.holders, ["a:1", "b:1", "c:1"])
        XCTAssertEqual((0..<4).map { merged.digest($0) }, d.map { Hex.decode($0) })
        XCTAssertEqual(merged.since, TaskInfo.Since(digests: 4, holders: 3))
        XCTAssertEqual(merged.state, "complete")
        XCTAssertNil(next.merged(onto: nil), "a part with nothing to add up to: ask for all of it")
        XCTAssertNil(next.merged(onto: TaskInfo.holding([])), "nor onto less than it leaves out")
        next.digestsFrom = -1
        XCTAssertNil(next.merged(onto: first), "nor from before the first")
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(first), as: UTF8.self).contains("From"), "a whole answer says nothing of parts")
    }

    func testTaskInfoBitmapAndDigests() {
        let info = TaskInfo(state: "downloading", length: 10, pieceSize: 4, contentType: "x", pieces: "05",
                            digests: [String(repeating: "11", count: 32), "", "zz"], holders: [])
        XCTAssertEqual((0..<4).map(info.has), [true, false, true, false])
        XCTAssertEqual(info.digest(0), [UInt8](repeating: 0x11, count: 32))
        XCTAssertNil(info.digest(1))
        XCTAssertNil(info.digest(2))
        XCTAssertNil(info.digest(9))
    }

    func testRarestFirstThenLowestIndex() {
        let a = SourceID("a"), b = SourceID("b"), c = SourceID("c")
        let holders: [Int: [SourceID]] = [0: [a, b, c], 1: [a, b], 2: [a], 3: [a]]
        let pick = PiecePicker.pick(pieceCount: 4, wanted: { _ in true }, holders: { holders[$0] ?? [] })
        XCTAssertEqual(pick?.piece, 2)
        XCTAssertEqual(PiecePicker.pick(pieceCount: 4, wanted: { $0 < 2 }, holders: { holders[$0] ?? [] })?.piece, 1)
        XCTAssertNil(PiecePicker.pick(pieceCount: 4, wanted: { _ in true }, holders: { _ in [] }), "nobody has anything yet")
        XCTAssertEqual(PiecePicker.leastBusy([a, b], inFlight: [0: a, 1: a, 2: b]), b)
    }

    func testMembershipFindsItselfAndBacksOffFromTheDown() {
        var peers = DaemonConfig.Peers()
        peers.members = [("127.0.0.1", 7001), ("127.0.0.1", 7002), ("10.9.9.9", 7002)]
        let m = Membership(peers: peers, advertiseIP: nil, peerPort: 7002, localHosts: ["127.0.0.1"])
        XCTAssertEqual(m.me, Member(host: "127.0.0.1", port: 7002))
        let other = Member(host: "10.9.9.9", port: 7002)
        m.markDown(other, now: 1000)
        XCTAssertFalse(m.live(now: 1500).contains(other))
        XCTAssertTrue(m.live(now: 2001).contains(other), "back after its backoff")
        m.markDown(other, now: 3000)
        XCTAssertFalse(m.live(now: 4500).contains(other), "a second failure backs off longer")
        m.markDown(m.me!, now: 0)
        XCTAssertTrue(m.live(now: 1).contains(m.me!), "this host never counts itself down")
        XCTAssertEqual(Membership(peers: peers, advertiseIP: "10.1.1.1", peerPort: 7002, localHosts: []).me, Member(host: "10.1.1.1", port: 7002))
    }

    /// `peers.dns` and no `advertiseIP`: the host finds itself among the resolved addresses.
    func testAHostKnownOnlyByDNSFindsItselfThere() {
        var peers = DaemonConfig.Peers()
        peers.dns = "dfget-peers.example"
        let m = Membership(peers: peers, advertiseIP: nil, peerPort: 65002, localHosts: ["10.0.0.7", "127.0.0.1"])
        XCTAssertNil(m.me, "nothing resolved yet")
        m.take(view: [Member(host: "10.0.0.5", port: 65002), Member(host: "10.0.0.7", port: 65002)])
        XCTAssertEqual(m.me, Member(host: "10.0.0.7", port: 65002))
        XCTAssertEqual(m.members.count, 2, "itself counted once")
        m.take(view: [Member(host: "10.0.0.5", port: 65002)])
        XCTAssertEqual(m.me, Member(host: "10.0.0.7", port: 65002), "kept when a refresh misses it (not ready yet)")
        XCTAssertTrue(m.members.contains(Member(host: "10.0.0.7", port: 65002)), "and still a member")
        let named = Membership(peers: peers, advertiseIP: "10.0.0.9", peerPort: 65002, localHosts: ["10.0.0.7"])
        named.take(view: [Member(host: "10.0.0.7", port: 65002)])
        XCTAssertEqual(named.me, Member(host: "10.0.0.9", port: 65002), "advertiseIP wins")
    }

    /// The master's view replaces the members it named before; the static list stays.
    func testTheMastersViewReplacesTheDynamicMembers() {
        var peers = DaemonConfig.Peers()
        peers.members = [("10.0.0.1", 65002)]
        peers.fileMembers = [("10.0.0.2", 65002), ("::1", 65002)]
        let m = Membership(peers: peers, advertiseIP: nil, peerPort: 65002, localHosts: ["::1"])
        XCTAssertEqual(m.me, Member(host: "::1", port: 65002), "found in the file as loaded")
        XCTAssertEqual(m.members.map(\.description), ["10.0.0.1:65002", "10.0.0.2:65002", "[::1]:65002"])
        m.take(view: [Member(host: "10.0.0.3", port: 65002), Member(host: "10.0.0.1", port: 65002)])
        XCTAssertEqual(m.members.map(\.description), ["10.0.0.1:65002", "10.0.0.3:65002", "[::1]:65002"], "10.0.0.2 left")
        XCTAssertEqual(Membership(peers: peers, advertiseIP: "fd00:0::5", peerPort: 65002, localHosts: []).me?.host, "fd00::5")
    }

    func testTheOwnersUplinkServesEachPieceOnce() {
        let owner = SourceID("o"), me = SourceID("me"), other = SourceID("x")
        func sources(_ holding: [SourceID], assignee: SourceID?, since: UInt64? = nil, now: UInt64 = 0) -> [SourceID] {
            PiecePicker.sources(0, holding: holding, owner: owner, assignee: assignee, me: me, ownerOnlySinceMs: since, nowMs: now, patienceMs: 6000)
        }
        XCTAssertEqual(sources([owner], assignee: me), [owner], "assigned to me: I fetch it from the owner")
        XCTAssertEqual(sources([owner], assignee: other), [], "assigned to another follower: wait for it there")
        XCTAssertEqual(sources([owner], assignee: other, since: 0, now: 6000), [owner], "unless it waited too long")
        XCTAssertEqual(sources([owner, other], assignee: me), [other], "a follower has it: the owner is spared")
        XCTAssertEqual(sources([], assignee: me), [])
        // Endgame: the owner (done, its uplink idle) serves the last pieces beside the followers.
        XCTAssertEqual(PiecePicker.sources(0, holding: [owner, other], owner: owner, assignee: other, me: me, ownerOnlySinceMs: nil,
                                           nowMs: 0, patienceMs: 6000, endgame: true), [owner, other])
        XCTAssertTrue(PiecePicker.endgame(missing: 6, pieceCount: 51, parallel: 6))
        XCTAssertFalse(PiecePicker.endgame(missing: 7, pieceCount: 51, parallel: 6))
        XCTAssertTrue(PiecePicker.endgame(missing: 100, pieceCount: 800, parallel: 6), "an eighth of a big blob")
    }

    func testPiecesAreDealtRoundTheFollowersInTurn() {
        let f = ["a", "b", "c"].map { SourceID($0) }
        XCTAssertEqual((0..<7).map { PiecePicker.dealt($0, to: f)! }, [f[0], f[1], f[2], f[0], f[1], f[2], f[0]],
                       "consecutive pieces go to different followers, and each gets the same share")
        XCTAssertNil(PiecePicker.dealt(3, to: []))
    }

    func testWithFewerPiecesThanFollowersEveryFollowerIsDealtOne() {
        let f = (0..<47).map { SourceID("h\($0)") }
        for (i, me) in f.enumerated() {
            let mine = (0..<16).filter { PiecePicker.dealt($0, to: f, pieceCount: 16, me: me, myIndex: i, rounds: true) == me }
            XCTAssertEqual(mine, [i % 16], "follower \(i): one piece, round after round")
            let first = (0..<16).filter { PiecePicker.dealt($0, to: f, pieceCount: 16, me: me, myIndex: i) == me }
            XCTAssertEqual(first, i < 16 ? [i] : [], "until the seed has every piece, first copies only")
        }
        XCTAssertEqual(PiecePicker.dealt(3, to: f, pieceCount: 16, me: f[0], myIndex: 0), f[3], "another's piece: its first follower")
        XCTAssertEqual(PiecePicker.dealt(50, to: f, pieceCount: 100, me: f[3], myIndex: 3), f[3], "more pieces than followers: in turn")
    }
}

final class OverlayTests: XCTestCase {
    let hosts = (0..<200).map { "10.0.\($0 / 250).\($0 % 250):65002" }
    let task = String(repeating: "ab", count: 32)

    func member(_ s: String) -> Member? {
        UpstreamURL.splitHostPort(s, defaultPort: 65002).map { Member(host: $0.0, port: $0.1) }
    }

    func neighbours(_ me: String, in holders: [String], max: Int = 8, excluded: Set<String> = []) -> [String] {
        var o = Overlay(task: task, me: member(me), maxNeighbours: max)
        return o.neighbours(holders, seed: SourceID("10.9.9.9:65002"), member: member) { excluded.contains($0.name) }.map(\.name)
    }

    func testEveryHostFollowsAtMostMaxAndTheLinksGoBothWays() {
        let all = Dictionary(uniqueKeysWithValues: hosts.map { ($0, neighbours($0, in: hosts)) })
        var oneWay = 0
        for (m, n) in all {
            XCTAssertEqual(n.count, 8)
            XCTAssertFalse(n.contains(m))
            oneWay += n.filter { !all[$0]!.contains(m) }.count
        }
        // Only where two rings meet at the same holder does a link go one way.
        XCTAssertLessThan(oneWay, hosts.count * 8 / 20, "at least 95% of the links are mutual")
    }

    func testTheOverlayIsConnectedWithAShortDiameter() {
        let all = Dictionary(uniqueKeysWithValues: hosts.map { ($0, neighbours($0, in: hosts)) })
        for start in hosts.prefix(20) {
            var seen: Set<String> = [start], frontier = [start], hops = 0
            while !frontier.isEmpty && seen.count < hosts.count {
                frontier = frontier.flatMap { all[$0]! }.filter { seen.insert($0).inserted }
                hops += 1
            }
            XCTAssertEqual(seen.count, hosts.count)
            // A random 8-regular graph on 200 nodes: about log7(200) = 2.7, a few more at worst.
            XCTAssertLessThanOrEqual(hops, 5, "from \(start)")
        }
    }

    func testEveryHostComputesTheSameRings() {
        var a = Overlay(task: task, me: member(hosts[0]), maxNeighbours: 8)
        var b = Overlay(task: task, me: member(hosts[1]), maxNeighbours: 8)
        XCTAssertEqual(a.followerOrder(hosts, member: member), b.followerOrder(hosts.reversed(), member: member))
        XCTAssertEqual(a.followerOrder(hosts, member: member), Rendezvous.order(task, hosts.compactMap(member)).map { SourceID($0.description) },
                       "the first ring is the task's rendezvous order (the seed deals its pieces along it)")
    }

    func testAnExcludedNeighbourGivesItsPlaceToTheNext() {
        let before = neighbours(hosts[10], in: hosts)
        let after = neighbours(hosts[10], in: hosts, excluded: [before[0]])
        XCTAssertFalse(after.contains(before[0]))
        XCTAssertEqual(after.count, 8)
        XCTAssertEqual(Set(before).subtracting(after), [before[0]], "the others stay")
    }

    func testSmallSwarmsAndNewcomers() {
        XCTAssertEqual(Set(neighbours(hosts[0], in: Array(hosts.prefix(4)))), Set(hosts[1..<4]), "a small swarm: everyone")
        XCTAssertEqual(neighbours("10.8.8.8:65002", in: Array(hosts.prefix(20)), max: 3).count, 3, "a host not on the rings yet follows some")
        XCTAssertEqual(neighbours(hosts[0], in: [hosts[0], "10.9.9.9:65002", hosts[1]]), [hosts[1]], "never the seed")
        XCTAssertEqual(neighbours(hosts[0], in: []), [])
    }

    func testUploadSlotsAreSharedAmongTheWorkers() {
        XCTAssertEqual(UploadAdmission.perWorker(4, concurrentLimit: 32, workers: 2), 2)
        XCTAssertEqual(UploadAdmission.perWorker(4, concurrentLimit: 32, workers: 8), 1, "at least one")
        XCTAssertEqual(UploadAdmission.perWorker(4, concurrentLimit: 1, workers: 1), 1, "upload.concurrentLimit still bounds it")
        XCTAssertEqual(UploadAdmission.perWorker(4, concurrentLimit: 32, workers: nil), 4)
    }

    func testEquallyRarePiecesInAPerHostOrder() {
        let a = SourceID("a")
        let pick = PiecePicker.pick(pieceCount: 4, wanted: { _ in true }, holders: { _ in [a] }, spread: { UInt64(10 - $0) })
        XCTAssertEqual(pick?.piece, 3)
    }
}

final class UploadAdmissionTests: XCTestCase {
    func testUploadsPastTheLimitAreBusyAndASlotFreesOnEnd() {
        var a = UploadAdmission(limit: 2)
        XCTAssertEqual(a.ask(reserve: { 0 }), .start)
        XCTAssertEqual(a.ask(reserve: { 0 }), .start)
        XCTAssertEqual(a.ask(reserve: { 0 }), .busy(retryAfterMs: 100))
        a.ended()
        XCTAssertEqual(a.ask(reserve: { 0 }), .start)
        XCTAssertEqual(a.active, 2)
    }

    func testUploadsWaitingForTheRateLimitHoldTheirSlot() {
        var a = UploadAdmission(limit: 2)
        XCTAssertEqual(a.ask(reserve: { 250 }), .wait(ms: 250))
        XCTAssertEqual(a.ask(reserve: { 500 }), .wait(ms: 500))
        XCTAssertEqual(a.ask(reserve: { 0 }), .busy(retryAfterMs: 100), "waiting uploads count toward the bound")
        a.ended() // the first one was abandoned while it waited
        XCTAssertEqual(a.ask(reserve: { 0 }), .start)
    }

    func testARefusedUploadReservesNoRate() {
        var a = UploadAdmission(limit: 1)
        var reserved = 0
        _ = a.ask(reserve: { reserved += 1; return 0 })
        XCTAssertEqual(a.ask(reserve: { reserved += 1; return 0 }), .busy(retryAfterMs: 100))
        XCTAssertEqual(reserved, 1, "a refused upload must not book bytes under upload.rateLimit")
    }

    func testALimitBelowOneMeansOne() {
        var a = UploadAdmission(limit: 0)
        XCTAssertEqual(a.limit, 1)
        XCTAssertEqual(a.ask(reserve: { 0 }), .start)
    }
}

final class FallbackOrderTests: XCTestCase {
    /// A stalled swarm: the first backup seeds go to the origin early, everyone else much later.
    func testOnlyTheBackupSeedsGoToTheOriginSoon() {
        let base: UInt64 = 60_000
        XCTAssertEqual(PeerNetwork.idleMs(rank: 1, backupSeeds: 2, base: base), 20_000)
        XCTAssertEqual(PeerNetwork.idleMs(rank: 2, backupSeeds: 2, base: base), 20_000)
        XCTAssertEqual(PeerNetwork.idleMs(rank: 3, backupSeeds: 2, base: base), 120_000)
        XCTAssertEqual(PeerNetwork.idleMs(rank: 1, backupSeeds: 0, base: base), 120_000, "no backup seeds: everyone waits long")
    }
}
