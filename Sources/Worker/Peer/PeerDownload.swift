import Foundation
import UV
import TLS
import HTTP
import Cache
import Metrics

/// Fills one claimed blob from the members: asks the task's owner to fetch it from the origin
/// (with the client's credentials), registers as a holder, then fetches pieces from every member
/// that has them, a few at a time, rarest first, checking each against the owner's digests. The
/// local clients read the pieces as they land, like a download from the origin. When no owner can
/// be reached, or the peers fail, the blob comes from the origin after all.
final class PeerDownload {
    let task: CacheTask
    let url: UpstreamURL
    let headers: HTTPHeaders
    var owners: [Member]
    let network: PeerNetwork
    let origin: () -> Void

    static let parallel = 6
    static let pollMs: UInt64 = 100
    /// Downloads in progress in this worker, which keep them alive.
    nonisolated(unsafe) static var active: [String: PeerDownload] = [:]  // loop thread only

    private var infos: [Member: TaskInfo] = [:]
    private var inFlight: [Int: Member] = [:]
    private var assignments: (followers: [Member], order: [Member]) = ([], [])
    private var spreadWeights: [Int: UInt64] = [:]
    /// When each piece was first seen at the owner and nowhere else.
    private var ownerOnlySince: [Int: UInt64] = [:]
    /// How long a piece waits at the owner for the follower it is assigned to.
    static let patienceMs: UInt64 = 6000
    /// `DFGET_TRACE_PIECES=1`: a log line per piece fetched from a peer (for the benchmark's timeline).
    static let trace = ProcessInfo.processInfo.environment["DFGET_TRACE_PIECES"] == "1"
    private var avoid: Set<Member> = []
    private var ownerSlips = 0
    static let ownerSlipsAllowed = 3
    private var bytesFrom: [String: Int] = [:]
    private let poll = LoopTimer()
    private var polls = 0
    private var described = false
    private var finished = false
    private var sealing = false
    private var lastProgressMs = EventLoop.nowMs
    private let stopwatch = Stopwatch()

    init(task: CacheTask, url: UpstreamURL, headers: HTTPHeaders, owners: [Member], network: PeerNetwork, origin: @escaping () -> Void) {
        self.task = task
        self.url = url
        self.headers = headers
        self.owners = owners
        self.network = network
        self.origin = origin
    }

    var owner: Member? { owners.first }

    func start() {
        PeerDownload.active[task.key.id] = self
        Metrics.gauge(.tasksActive, 1)
        askOwner()
    }

    // MARK: The owner

    /// The owner starts (or already has) the origin download; then this host follows it.
    private func askOwner() {
        guard !finished else { return }
        guard let owner else { return fallBack("no owner reachable") }
        let forwarded: [[String]] = headers.fields.filter { ["authorization", "accept", "user-agent"].contains($0.name.lowercased()) }
            .map { [$0.name, $0.value] }
        let body = (try? JSONEncoder().encode(OriginRequest(url: url.description, headers: forwarded))).map(Array.init) ?? []
        call("POST", owner, PeerProtocol.originPath(task.key.id), body: body) { [self] status, _ in
            guard status == 202 || status == 200 else { return ownerFailed(owner, "owner answered \(status.map(String.init) ?? "nothing")") }
            if let me = network.membership.me {
                call("POST", owner, PeerProtocol.holdersPath(task.key.id), body: Array(me.description.utf8)) { _, _ in }
            }
            refresh()
        }
    }

    private func ownerFailed(_ m: Member, _ why: String) {
        guard !finished else { return }
        Log.shared.warn("peer owner failed: trying the next", ["taskId": task.key.id, "peer": m.description, "error": why])
        network.membership.markDown(m, now: EventLoop.nowMs)
        owners.removeAll { $0 == m }
        infos[m] = nil
        askOwner()
    }

    // MARK: Following the task

    private func refresh() {
        guard !finished, let owner else { return }
        polls += 1
        var asked = [owner]
        // Other holders' bitmaps now and then: they are where the pieces multiply.
        if let holders = infos[owner]?.holders {
            asked += holders.compactMap(member).filter { $0 != owner && $0 != network.membership.me && !avoid.contains($0) }
        }
        var pending = asked.count
        for m in asked {
            // The owner's whole info (state, digests, holders); the other holders' bitmaps alone.
            let path = m == owner ? PeerProtocol.taskPath(task.key.id) : PeerProtocol.bitmapPath(task.key.id)
            call("GET", m, path) { [self] status, body in
                if status == 200, let info = m == owner ? TaskInfo.parse(body) : TaskInfo.holding(body) {
                    infos[m] = info
                } else if m == owner {
                    return ownerFailed(m, "task info: \(status.map(String.init) ?? "no answer")")
                }
                pending -= 1
                if pending == 0 { step() }
            }
        }
    }

    private func step() {
        guard !finished, let owner, let info = infos[owner] else { return }
        switch info.state {
        case "failed", "corrupt", "uncached":
            return fallBack("owner's download \(info.state)")
        default: break
        }
        if !described, let length = info.length {
            guard info.pieceSize == task.pieceSize else { return fallBack("owner uses another piece size") }
            do {
                try task.describe(contentLength: length, contentType: info.contentType, digestHeader: task.key.expectedDigest ?? "", origin: task.origin)
                described = true
                if length == 0 { return complete() }
            } catch {
                return fallBack("\(error)")
            }
        }
        if described { schedule() }
        if described && (0..<task.pieceCount).allSatisfy(task.hasPiece) { return complete() }
        // The owner sent a bad piece and nobody else can serve what is missing: the origin.
        if described && inFlight.isEmpty && avoid.contains(owner) { return fallBack("the owner's pieces do not match their digests") }
        if EventLoop.nowMs &- lastProgressMs > Limits.upstreamIdleMs { return fallBack("no progress from the peers") }
        poll.start(ms: PeerDownload.pollMs) { [weak self] in self?.refresh() }
    }

    /// Starts piece fetches up to `parallel`: rarest first among the members that have them, the
    /// owner's uplink kept for pieces nobody else has yet (see `PiecePicker.sources`).
    private func schedule() {
        guard let owner, let ownerInfo = infos[owner] else { return }
        let me = network.membership.me
        let followers = ownerInfo.holders.compactMap(member)
        let now = EventLoop.nowMs
        let missing = (0..<task.pieceCount).filter { !task.hasPiece($0) }.count
        let endgame = ownerInfo.state == "complete"
            && PiecePicker.endgame(missing: missing, pieceCount: task.pieceCount, parallel: PeerDownload.parallel)
        while inFlight.count < PeerDownload.parallel {
            let pick = PiecePicker.pick(
                pieceCount: task.pieceCount,
                wanted: { !self.task.hasPiece($0) && self.inFlight[$0] == nil && ownerInfo.digest($0) != nil },
                holders: { k in
                    let holding = self.infos.filter { !self.avoid.contains($0.key) && $0.value.has(k) }.map(\.key)
                    if holding == [owner], self.ownerOnlySince[k] == nil { self.ownerOnlySince[k] = now }
                    return PiecePicker.sources(k, holding: holding, owner: owner, assignee: self.assignee(k, followers), me: me,
                                               ownerOnlySinceMs: self.ownerOnlySince[k], nowMs: now, patienceMs: PeerDownload.patienceMs,
                                               endgame: endgame)
                },
                spread: { k in self.spread(k, me ?? owner) })
            guard let pick, let digest = ownerInfo.digest(pick.piece),
                  let from = PiecePicker.leastBusy(pick.holders, inFlight: inFlight) else { return }
            fetch(pick.piece, from: from, digest: digest)
        }
    }

    /// The follower piece `k` is assigned to: the followers in the task's rendezvous order, dealt
    /// the pieces in turn, so every follower takes the same share of the owner's uplink and
    /// consecutive pieces (which reach the owner one after another) go to different followers.
    private func assignee(_ k: Int, _ followers: [Member]) -> Member? {
        guard !followers.isEmpty else { return nil }
        if assignments.followers != followers {
            assignments = (followers, Rendezvous.order(task.key.id, followers))
        }
        return PiecePicker.dealt(k, to: assignments.order)
    }

    /// This host's order among equally rare pieces (constant for the download).
    private func spread(_ k: Int, _ member: Member) -> UInt64 {
        if let w = spreadWeights[k] { return w }
        let w = Rendezvous.weight("\(task.key.id)#\(k)", member)
        spreadWeights[k] = w
        return w
    }

    /// A piece fetched from `m` was checked and written (on the pool): present from now on, or `m` avoided.
    private func stored(_ k: Int, from m: Member, digest: [UInt8], matches: Bool, written: Result<Void, Error>, bytes: Int) {
        guard matches else {
            Log.shared.warn("peer sent a piece that does not match its digest: avoided", ["taskId": task.key.id, "peer": m.description, "piece": k])
            avoid.insert(m)
            return step()
        }
        do {
            try written.get()
            try task.markStored(k, digest: digest)
            // Pieces land out of order: the blob's hash follows them on the thread pool.
            task.catchUpHash()
        } catch {
            return fallBack("\(error)")
        }
        if m == owner { ownerSlips = 0 }
        bytesFrom[m.description, default: 0] += bytes
        if PeerDownload.trace {
            Log.shared.info("piece stored", ["taskId": task.key.id, "piece": k, "from": m.description, "ms": stopwatch.elapsedMs.rounded()])
        }
        lastProgressMs = EventLoop.nowMs
        network.membership.markUp(m)
        step()
    }

    private func fetch(_ k: Int, from m: Member, digest: [UInt8]) {
        inFlight[k] = m
        let expected = Int(task.pieceRange(k).count)
        var bytes = [UInt8]()
        bytes.reserveCapacity(expected)
        let f = network.request("GET", m, PeerProtocol.piecePath(task.key.id, k))
        var status = 0
        f.onHead = { h, _ in status = h.status }
        f.onBody = { b in if bytes.count + b.count <= expected { bytes.append(contentsOf: b) } else { status = -1 } }
        f.onEnd = { [self] in
            guard !finished else {
                inFlight[k] = nil
                return
            }
            guard status == 200, bytes.count == expected else {
                inFlight[k] = nil
                if m == owner, ownerSlip("piece \(k): status \(status), \(bytes.count) bytes") { return step() }
                avoid.insert(m)
                return step()
            }
            // The piece's digest and its write run on the thread pool, not the loop; the piece
            // stays in flight (nobody fetches it again) until they are done.
            let offset: Int64
            do { offset = try task.pieceOffset(k, count: expected) } catch {
                inFlight[k] = nil
                return fallBack("\(error)")
            }
            let piece = bytes
            var matches = false
            var written: Result<Void, Error> = .success(())
            ThreadPool.run({ [task] in
                let h = SHA256Digest()
                piece.withUnsafeBytes { h.update($0) }
                matches = h.finalize() == digest
                if matches { written = Result { try piece.withUnsafeBytes { try task.writeBytes($0, at: offset) } } }
            }, then: { [self] in
                inFlight[k] = nil
                guard !finished else { return }
                stored(k, from: m, digest: digest, matches: matches, written: written, bytes: expected)
            })
        }
        f.onFail = { [self] error in
            inFlight[k] = nil
            guard !finished else { return }
            if m == owner, ownerSlip("piece \(k): \(error)") { return step() }
            network.membership.markDown(m, now: EventLoop.nowMs)
            avoid.insert(m)
            if m == owner { return ownerFailed(m, "\(error)") }
            step()
        }
        f.start()
    }

    /// A piece from the owner failed. The owner is given up (the next member would fetch the blob
    /// from the origin a second time) only after a few failures in a row, or when its task info
    /// cannot be had; one lost connection is retried. True while it is retried.
    private func ownerSlip(_ why: String) -> Bool {
        ownerSlips += 1
        guard ownerSlips <= PeerDownload.ownerSlipsAllowed else { return false }
        Log.shared.warn("piece from the owner failed: retrying", ["taskId": task.key.id, "peer": owner?.description ?? "-", "error": why])
        return true
    }

    private func complete() {
        guard !finished, !sealing else { return }
        sealing = true
        poll.stop()
        task.catchUpHash { [self] in
            task.verifyFlushAndSeal { [self] error in
                sealing = false
                guard !finished else { return }
                if let error { return fallBack(error) }
                end(nil)
            }
        }
    }

    /// The peers could not finish it: the origin, from the start, on the same claim.
    private func fallBack(_ why: String) {
        guard !finished, !sealing else { return }
        Log.shared.warn("peers could not fill the task: from the origin", ["taskId": task.key.id, "error": why])
        do { try task.restartDownload() } catch {
            task.abandon()
            return end(why)
        }
        end(why)
        origin()
    }

    private func end(_ error: String?) {
        finished = true
        poll.close()
        var f: [(String, LogValue)] = [("taskId", .string(task.key.id)), ("source", .string("peers")),
                                       ("bytes", .int(bytesFrom.values.reduce(0, +))), ("originBytes", .int(0)),
                                       ("costMs", .double(stopwatch.elapsedMs.rounded())), ("owner", .string(owner?.description ?? "-"))]
        f.append(("fromPeers", .string(bytesFrom.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))))
        if let error { f.append(("error", .string(error))) }
        Log.shared.write(error == nil ? "info" : "warn", error == nil ? "task downloaded" : "task from peers stopped", f)
        PeerDownload.active[task.key.id] = nil
        Metrics.gauge(.tasksActive, -1)
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
