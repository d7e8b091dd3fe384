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
    private var spreadWeights: [Int: UInt64] = [:]
    private var followers: (holders: [String], order: [SourceID]) = ([], [])
    /// Piece buffers the disk is done with, reused for the next fetches: a fresh 4 MiB allocation per
    /// piece costs its page faults each time and leaves the allocator's heap to grow.
    private var spare: [PieceBuffer] = []
    static let maxSpare = 8
    private let poll = LoopTimer()
    private weak var sink: PieceSink?
    private var stopped = false

    init(id: String, url: UpstreamURL, headers: HTTPHeaders, owners: [Member], network: PeerNetwork) {
        self.id = id
        self.url = url
        self.headers = headers
        self.owners = owners
        self.network = network
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
        call("POST", owner, PeerProtocol.originPath(id), body: body) { [self] status, _ in
            guard status == 202 || status == 200 else { return ownerFailed(owner, "owner answered \(status.map(String.init) ?? "nothing")") }
            if let me = network.membership.me {
                call("POST", owner, PeerProtocol.holdersPath(id), body: Array(me.description.utf8)) { _, _ in }
            }
            refresh()
        }
    }

    private func ownerFailed(_ m: Member, _ why: String) {
        guard !stopped else { return }
        Log.shared.warn("peer owner failed: trying the next", ["taskId": id, "peer": m.description, "error": why])
        network.membership.markDown(m, now: EventLoop.nowMs)
        owners.removeAll { $0 == m }
        infos[m] = nil
        askOwner()
    }

    func replaceSeed(_ s: SourceID) {
        guard let m = member(s.name) else { return }
        ownerFailed(m, "pieces from the owner failed")
    }

    // MARK: News

    /// The owner's whole info (state, digests, holders) and the other holders' bitmaps, then the
    /// news to the fill, then again in `pollMs`.
    private func refresh() {
        guard !stopped, let owner else { return }
        var asked = [owner]
        if let holders = infos[owner]?.holders {
            asked += holders.compactMap(member).filter { $0 != owner && $0 != network.membership.me && !avoided.contains($0) }
        }
        var pending = asked.count
        for m in asked {
            let path = m == owner ? PeerProtocol.taskPath(id) : PeerProtocol.bitmapPath(id)
            call("GET", m, path) { [self] status, body in
                guard !stopped else { return }
                if status == 200, let info = m == owner ? TaskInfo.parse(body) : TaskInfo.holding(body) {
                    infos[m] = info
                } else if m == owner {
                    return ownerFailed(m, "task info: \(status.map(String.init) ?? "no answer")")
                }
                pending -= 1
                if pending == 0 { report(owner) }
            }
        }
    }

    private func report(_ owner: Member) {
        guard !stopped, owner == self.owner, let info = infos[owner] else { return }
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
        news.followers = followerOrder(info.holders)
        sink?.news(news, seed: SourceID(owner.description))
        guard !stopped else { return }
        poll.start(ms: PeerSource.pollMs) { [weak self] in self?.refresh() }
    }

    /// The owner's followers in the task's rendezvous order: the owner's pieces are dealt to them in
    /// turn, so each takes the same share of its uplink and consecutive pieces (which reach the
    /// owner one after another) go to different followers.
    private func followerOrder(_ holders: [String]) -> [SourceID] {
        if followers.holders != holders {
            followers = (holders, Rendezvous.order(id, holders.compactMap(member)).map { SourceID($0.description) })
        }
        return followers.order
    }

    func spread(_ k: Int) -> UInt64 {
        if let w = spreadWeights[k] { return w }
        guard let m = network.membership.me ?? owner else { return UInt64(k) }
        let w = Rendezvous.weight("\(id)#\(k)", m)
        spreadWeights[k] = w
        return w
    }

    // MARK: Pieces

    func fetch(_ k: Int, from s: SourceID, count expected: Int) {
        guard let m = member(s.name) else { return sink?.fetchFailed(k, from: s, .unreachable) ?? () }
        let bytes = spare.popLast().flatMap { $0.capacity >= expected ? $0 : nil } ?? PieceBuffer(capacity: expected)
        bytes.reset()
        var over = false
        let f = network.request("GET", m, PeerProtocol.piecePath(id, k))
        var status = 0
        var retryAfter: UInt64 = 1000
        f.onHead = { h, _ in
            status = h.status
            if let s = h.headers["Retry-After"], let secs = UInt64(s) { retryAfter = min(secs, 60) * 1000 }
        }
        f.onBody = { b in
            guard status == 200 else { return }
            if bytes.append(b) < b.count { over = true }
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

    /// A small signed request and its whole (small) answer.
    private func call(_ method: String, _ m: Member, _ target: String, body: [UInt8]? = nil,
                      _ done: @escaping (_ status: Int?, _ body: [UInt8]) -> Void) {
        let f = network.request(method, m, target, body: body)
        var status: Int?
        var got = [UInt8]()
        f.onHead = { h, _ in status = h.status }
        f.onBody = { b in if got.count < 8 << 20 { got.append(contentsOf: b) } }
        f.onEnd = { done(status, got) }
        f.onFail = { _ in done(nil, []) }
        f.onConnected = { c in
            if let body, !body.isEmpty {
                body.withUnsafeBytes { c.sendBody($0) }
                c.endBody()
            }
        }
        f.start()
    }
}
