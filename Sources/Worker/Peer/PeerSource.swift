import Foundation
import UV
import TLS
import HTTP
import Cache

/// The members as a source of one blob's pieces (`PieceSource`): asks the task's owner to fetch it
/// from the origin (with the client's credentials), registers as a holder, follows the owner's
/// task info and the other holders' bitmaps, and fetches the pieces the fill asks for. Which piece,
/// from whom, and when to give up is the fill's (`TaskFill`); this is the protocol and the owners'
/// order.
final class PeerSource: PieceSource {
    let id: String
    let url: UpstreamURL
    let headers: HTTPHeaders
    /// The owner first, then who takes over from it (the task's rendezvous order above this host).
    private var owners: [Member]
    let network: PeerNetwork
    static let pollMs: UInt64 = 100
    private var infos: [Member: TaskInfo] = [:]
    private var avoided: Set<Member> = []
    /// Whom this host follows, and the seed's order of followers (hashing alone).
    private var overlay: Overlay
    /// Piece buffers the disk is done with, reused for the next fetches: a fresh 4 MiB allocation per
    /// piece costs its page faults each time and leaves the allocator's heap to grow.
    private var spare: [PieceBuffer] = []
    static let maxSpare = 8
    /// Control requests to the owner that got no answer in a row; at `maxOwnerTimeouts` it is gone.
    private var ownerTimeouts = 0
    /// Six in a row (30 s) that follow nothing heard from it: a seed whose downlink its origin
    /// download fills drops connection attempts for as long as that lasts (96 hosts at 50 mbit:
    /// with three, a third of them gave the live owner up and followed another).
    static let maxOwnerTimeouts = 6
    /// Bitmap requests a neighbour may leave unanswered in a row before it is replaced.
    static let maxNeighbourTimeouts = 3
    /// When each member last answered anything (a piece, a 503, task info): a member heard from
    /// lately is alive, and its unanswered requests are congestion, not a reason to leave it.
    private var lastHeard: [Member: UInt64] = [:]
    /// Piece requests to a member that failed without an answer in a row.
    private var pieceFailures: [Member: Int] = [:]
    /// Bitmap requests a neighbour left unanswered in a row; at `maxNeighbourTimeouts` it is replaced.
    private var silentNeighbours: [Member: Int] = [:]
    private let poll = LoopTimer()
    private weak var sink: PieceSink?
    private var stopped = false

    /// Members that may relay the owner's pieces while it cannot be reached, in the order they are
    /// asked (`PeerNetwork.relayOrder`: neither the owner nor this host).
    private var relays: [Member]
    /// Relays asked for the task so far, and whether answers are due.
    private var relaysAsked = 0
    private var probing = false
    /// How many relays are asked at once, each time the owner stays silent.
    static let relaysPerProbe = 3

    init(id: String, url: UpstreamURL, headers: HTTPHeaders, owners: [Member], relays: [Member] = [], network: PeerNetwork) {
        self.id = id
        self.url = url
        self.headers = headers
        self.owners = owners
        self.relays = relays
        self.network = network
        overlay = Overlay(task: id, me: network.membership.me, maxNeighbours: network.maxNeighbours)
    }

    var owner: Member? { owners.first }

    func start(_ sink: PieceSink) {
        self.sink = sink
        askOwner()
    }

    func stop() {
        stopped = true
        poll.close()
    }

    // MARK: The owner

    /// The owner starts (or already has) the origin download; then this host follows it.
    private func askOwner() {
        guard !stopped else { return }
        guard let owner else { return sink?.failed(.noSeed) ?? () }
        let forwarded: [[String]] = headers.fields.filter { ["authorization", "accept", "user-agent"].contains($0.name.lowercased()) }
            .map { [$0.name, $0.value] }
        let body = (try? JSONEncoder().encode(OriginRequest(url: url.description, headers: forwarded))).map(Array.init) ?? []
        // Sealed: the client's credentials never cross the peer port in clear.
        call("POST", owner, PeerProtocol.originPath(id), body: body, sealed: true) { [self] answer in
            // A relay taken meanwhile is followed instead.
            guard !stopped, owner == self.owner else { return }
            if case .timedOut = answer, ownerSilent(owner) {
                if lastHeard[owner] == nil { findRelay(for: owner) }
                return askOwner()
            }
            guard let (status, _) = answer.ok, status == 202 || status == 200 else {
                return ownerFailed(owner, "owner answered \(answer.text)", down: answer.isGone)
            }
            ownerTimeouts = 0
            if let me = network.membership.me {
                call("POST", owner, PeerProtocol.holdersPath(id), body: Array(me.description.utf8)) { _ in }
            }
            refresh()
        }
    }

    /// The owner did not answer in time: true while that may be slowness (the same owner is asked
    /// again); false once it happened `maxOwnerTimeouts` times in a row.
    private func heardLately(_ m: Member) -> Bool {
        lastHeard[m].map { EventLoop.nowMs &- $0 < 2 * PeerSource.controlTimeoutMs } ?? false
    }

    private func ownerSilent(_ m: Member) -> Bool {
        if heardLately(m) {
            Log.shared.info("peer owner slow but answering: asking it again", ["taskId": id, "peer": m.description])
            return true
        }
        ownerTimeouts += 1
        if ownerTimeouts < PeerSource.maxOwnerTimeouts {
            Log.shared.info("peer owner slow: asking it again", ["taskId": id, "peer": m.description, "timeouts": ownerTimeouts])
            return true
        }
        return false
    }

    /// `down`: the member is gone (it refused, or never answered several times in a row), for every
    /// task of this host for a while; else it failed this task only, and keeps its place elsewhere.
    private func ownerFailed(_ m: Member, _ why: String, down: Bool = true) {
        guard !stopped else { return }
        Log.shared.warn("peer owner failed: trying the next", ["taskId": id, "peer": m.description, "error": why])
        ownerTimeouts = 0
        if down { network.membership.markDown(m, now: EventLoop.nowMs) }
        owners.removeAll { $0 == m }
        infos[m] = nil
        askOwner()
    }

    /// The owner has not answered this host at all yet: a seed whose links are full drops new
    /// connections (96 hosts at 50 mbit: a fifth of them could not reach a live owner for 25 s,
    /// and a backup seed among them went to the origin). Members that already follow it are
    /// asked for the task; the first that knows its length (it heard the owner) is followed
    /// instead, as the seed, with the owner kept next in order. A dead owner has no such
    /// followers, so this does not delay taking the next owner.
    private func findRelay(for silent: Member) {
        guard !probing, relaysAsked < relays.count else { return }
        let batch = relays[relaysAsked..<min(relays.count, relaysAsked + PeerSource.relaysPerProbe)].filter { !avoided.contains($0) }
        relaysAsked += PeerSource.relaysPerProbe
        guard !batch.isEmpty else { return }
        probing = true
        var pending = batch.count
        for m in batch {
            call("GET", m, PeerProtocol.taskPath(id)) { [self] answer in
                pending -= 1
                if pending == 0 { probing = false }
                guard !stopped, owner == silent, lastHeard[silent] == nil else { return }
                // It knows the length: it has heard the owner (or has it all).
                guard let (status, body) = answer.ok, status == 200, let info = TaskInfo.parse(body), info.length != nil,
                      info.state == "complete" || info.state == "downloading" else { return }
                Log.shared.warn("peer owner unreachable: following a member that has the task", ["taskId": id, "peer": silent.description, "relay": m.description])
                owners.removeAll { $0 == m }
                owners.insert(m, at: 0)
                ownerTimeouts = 0
                infos[silent] = nil
                askOwner()
            }
        }
    }

    func replaceSeed(_ s: SourceID) {
        guard let m = member(s.name) else { return }
        ownerFailed(m, "pieces from the owner failed")
    }

    // MARK: News

    /// The owner's info (state, bitmap, and the digests and holders this host does not have yet)
    /// and the other holders' bitmaps, then the news to the fill, then again in `pollMs`.
    private func refresh() {
        guard !stopped, let owner else { return }
        let asked = [owner] + neighbours(owner)
        var pending = asked.count
        for m in asked {
            // The owner's digests and holders only from where the last answer ended.
            let path = m == owner ? PeerProtocol.taskPath(id, since: infos[m]?.since ?? .all) : PeerProtocol.bitmapPath(id)
            call("GET", m, path) { [self] answer in
                guard !stopped, owner == self.owner else { return }
                if let (status, body) = answer.ok, status == 200, m == owner, let part = TaskInfo.parse(body) {
                    // An answer that does not fit on the last one (the owner started the task over):
                    // the next request asks for all of it.
                    infos[m] = part.merged(onto: infos[m])
                    ownerTimeouts = 0
                } else if let (status, body) = answer.ok, status == 200, m != owner {
                    infos[m] = TaskInfo.holding(body)
                    silentNeighbours[m] = nil
                } else if m == owner {
                    if case .timedOut = answer, ownerSilent(m) {
                        // Slow is not dead: the last news stands, the owner is asked again.
                    } else {
                        return ownerFailed(m, "task info: \(answer.text)", down: answer.isGone)
                    }
                } else {
                    silentNeighbours[m, default: 0] += 1
                }
                pending -= 1
                if pending == 0 { report(owner) }
            }
        }
    }

    /// The holders this host follows besides the owner: its neighbours on the task's rings of
    /// holders (`Overlay`); one that stopped answering, or that the fill avoids, gives its place to
    /// the next.
    private func neighbours(_ owner: Member) -> [Member] {
        guard let holders = infos[owner]?.holders else { return [] }
        let chosen = overlay.neighbours(holders, seed: SourceID(owner.description), member: member) {
            guard let m = member($0.name) else { return true }
            return avoided.contains(m) || (silentNeighbours[m] ?? 0) >= PeerSource.maxNeighbourTimeouts
        }.compactMap { member($0.name) }
        // Those no longer followed: their news no longer counts.
        for m in infos.keys where m != owner && !chosen.contains(m) { infos[m] = nil }
        return chosen
    }

    private func report(_ owner: Member) {
        guard !stopped, owner == self.owner else { return }
        guard let info = infos[owner] else {
            // No news this round (a slow owner, or an answer to ask again in full): the next round.
            return poll.start(ms: PeerSource.pollMs) { [weak self] in self?.refresh() }
        }
        switch info.state {
        case "failed", "corrupt", "uncached":
            sink?.failed(.seedFailed("owner's download \(info.state)"))
            return
        default: break
        }
        var news = PieceNews()
        news.length = info.length
        news.pieceSize = info.pieceSize
        news.contentType = info.contentType
        news.seedComplete = info.state == "complete"
        news.digests = info.pieceDigestList
        for (m, i) in infos { news.holdings[SourceID(m.description)] = i.bitmap }
        news.followers = overlay.followerOrder(info.holders, member: member)
        sink?.news(news, seed: SourceID(owner.description))
        guard !stopped else { return }
        poll.start(ms: PeerSource.pollMs) { [weak self] in self?.refresh() }
    }

    func spread(_ k: Int) -> UInt64 { overlay.spread(k) }

    // MARK: Pieces

    func fetch(_ k: Int, from s: SourceID, count expected: Int) {
        guard let m = member(s.name) else { return sink?.fetchFailed(k, from: s, .unreachable) ?? () }
        let bytes = spare.popLast().flatMap { $0.capacity >= expected ? $0 : nil } ?? PieceBuffer(capacity: expected)
        bytes.reset()
        var over = false
        let f = network.request("GET", m, PeerProtocol.piecePath(id, k))
        var status = 0
        var retryAfter: UInt64 = 1000
        f.onHead = { [self] h, _ in
            status = h.status
            lastHeard[m] = EventLoop.nowMs
            pieceFailures[m] = nil
            if let s = h.headers[PeerProtocol.retryAfterMsHeader], let ms = UInt64(s) {
                retryAfter = min(ms, 60_000)
            } else if let s = h.headers["Retry-After"], let secs = UInt64(s) {
                retryAfter = min(secs, 60) * 1000
            }
        }
        f.onBody = { [weak self] b in
            guard status == 200 else { return }
            if bytes.append(b) < b.count { over = true }
            self?.sink?.progressed()
        }
        f.onEnd = { [self] in
            guard !stopped else { return }
            if status == 503 { return sink?.fetchFailed(k, from: s, .busy(retryAfterMs: retryAfter)) ?? () }
            guard status == 200, !over, bytes.count == expected else {
                if m == owner { Log.shared.warn("piece from the owner failed", ["taskId": id, "peer": m.description, "piece": k, "status": status]) }
                return sink?.fetchFailed(k, from: s, .refused) ?? ()
            }
            sink?.delivered(k, from: s, bytes)
        }
        f.onFail = { [self] error in
            guard !stopped else { return }
            if m == owner { Log.shared.warn("piece from the owner failed", ["taskId": id, "peer": m.description, "piece": k, "error": "\(error)"]) }
            // Refused: nobody there. A timeout or a reset is a congested link as often as a dead
            // host: asked again after a pause, and only `maxNeighbourTimeouts` in a row with
            // nothing heard from it meanwhile make it unreachable.
            pieceFailures[m, default: 0] += heardLately(m) ? 0 : 1
            if !error.isRefusal, (pieceFailures[m] ?? 0) < PeerSource.maxNeighbourTimeouts {
                return sink?.fetchFailed(k, from: s, .busy(retryAfterMs: 1000)) ?? ()
            }
            sink?.fetchFailed(k, from: s, .unreachable)
        }
        f.start()
    }

    func stored(_ k: Int, from s: SourceID, buffer: PieceBuffer) {
        if let m = member(s.name) { network.membership.markUp(m) }
        if spare.count < PeerSource.maxSpare { spare.append(buffer) }
    }

    // Asked, not pushed: nothing to pause, no partial piece to show, the task's registry kept.
    func pause() {}
    func resume() {}
    func partial(at offset: Int64, max: Int) -> UnsafeRawBufferPointer? { nil }
    var registry: String { "" }
    var logFields: [(String, LogValue)] { [] }

    func avoid(_ s: SourceID, unreachable: Bool) {
        guard let m = member(s.name) else { return }
        avoided.insert(m)
        if unreachable { network.membership.markDown(m, now: EventLoop.nowMs) }
    }

    // MARK: Helpers

    private func member(_ s: String) -> Member? {
        UpstreamURL.splitHostPort(s, defaultPort: network.membership.peerPort).map { Member(host: $0.0, port: $0.1) }
    }

    /// What became of a small request: an answer, a refusal (nobody listens there: the member is
    /// gone), or no answer within `controlTimeoutMs` (slow, or a link that lost it: not dead).
    enum Answer {
        case status(Int, [UInt8])
        case refused
        case timedOut

        var ok: (Int, [UInt8])? { if case .status(let s, let b) = self { return (s, b) } else { return nil } }
        /// No member there (an answer, even a refusal of the request, says it is alive).
        var isGone: Bool { if case .status = self { return false } else { return true } }
        var text: String {
            switch self {
            case .status(let s, _): return String(s)
            case .refused: return "connection refused"
            case .timedOut: return "no answer in \(PeerSource.controlTimeoutMs) ms"
            }
        }
    }
    static let controlTimeoutMs: UInt64 = 5000

    /// A small signed request and its whole (small) answer, within `controlTimeoutMs`.
    private func call(_ method: String, _ m: Member, _ target: String, body: [UInt8]? = nil, sealed: Bool = false,
                      _ done: @escaping (Answer) -> Void) {
        let f = network.request(method, m, target, body: body, sealed: sealed)
        var status: Int?
        var got = [UInt8]()
        var answered = false
        let deadline = LoopTimer()
        let finish = { (a: Answer) in
            guard !answered else { return }
            answered = true
            deadline.close()
            done(a)
        }
        deadline.start(ms: PeerSource.controlTimeoutMs) {
            f.cancel()
            finish(.timedOut)
        }
        f.onHead = { [self] h, _ in
            status = h.status
            lastHeard[m] = EventLoop.nowMs
        }
        f.onBody = { b in if got.count < 8 << 20 { got.append(contentsOf: b) } }
        f.onEnd = { finish(status.map { .status($0, got) } ?? .timedOut) }
        f.onFail = { error in finish(error.isRefusal ? .refused : .timedOut) }
        f.start()
    }
}
