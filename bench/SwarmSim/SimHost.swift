import Cache
import Peer

/// One daemon in the swarm, for one task: its fill (the real `TaskFill`), what it serves to others
/// (bitmap, digests, holders, uploads through the real `UploadAdmission`), and `PeerSource`'s
/// protocol as messages: ask the seed to fetch, register as a holder, poll the seed's task info and
/// the neighbours' bitmaps, fetch pieces, replace a seed that refuses.
final class SimHost {
    let index: Int
    let member: Member
    let sid: SourceID
    unowned let swarm: Swarm
    /// This host's place in the task's rendezvous order (0: the seed), and the hosts above it.
    let rank: Int
    private var owners: [Int]
    let slow: Bool
    var net: Network { swarm.net }

    private(set) var alive = true
    private(set) var started: Double?
    private(set) var finished: Double?
    private(set) var failed: String?
    var ended: Bool { finished != nil || failed != nil }

    // What it serves.
    private(set) var bits: [UInt8]
    private(set) var present = 0
    private var digests: [[UInt8]?]
    private var holders: [String] = []
    private var holderSet: Set<String> = []
    /// "none", "downloading", "complete", "failed": the task's state as its info says.
    private var state = "none"
    private var knownLength: Int64?
    private var admission: UploadAdmission
    private var arrivingAdmission = UploadAdmission(limit: PieceUpload.arrivingAhead)
    private var uploads: [ObjectIdentifier: (Network.Flow, () -> Void)] = [:]
    /// Cut-through uploads sent, waiting for their piece to be whole here.
    private var whenStored: [Int: [() -> Void]] = [:]
    /// The origin's bytes received so far (a cut-through upload sends no more than them).
    private var originGot = 0.0

    // Its fill.
    private var fill: TaskFill?
    private var fromOrigin = false
    private var originFlow: Network.Flow?
    private var overlay: Overlay
    private var infos: [Int: Info] = [:]
    private var avoided: Set<Int> = []
    private var pollGeneration = 0
    /// Piece fetches of this fill (a new owner does not void them; a stopped fill does).
    private var fetchGeneration = 0
    /// The fill's fetches in flight: piece → flow (to cancel when the fill ends).
    private var fetching: [Int: Network.Flow] = [:]

    /// Who this host exchanged anything with (a connection each, in the daemon's pool).
    private(set) var contacts: Set<Int> = []
    private(set) var controlMsgs = 0
    private(set) var controlBytes = 0.0
    private(set) var fellBack = false
    /// The peers could not finish: the rest came from the origin by range.
    private(set) var rangeFallback = false
    /// Busy answers this host got (for the trace).
    var busyAnswers = 0
    var inFlight: Int { fill?.inFlight.count ?? 0 }

    /// What an idle host sees (for the trace).
    func dump() -> String {
        let missing = (0..<swarm.pieceCount).filter { !hasPiece($0) }
        let owner = owners.first ?? -1
        let held = infos.map { m, i in "\(m)\(m == owner ? "*" : ""):" + missing.filter { TaskFill.has(i.bits, $0) }.map(String.init).joined(separator: ",") }
        return "host \(index) missing \(missing) avoided \(avoided.sorted()) seed \(fill?.seed?.name ?? "-") news \(held.joined(separator: " "))"
    }

    struct Info {
        var state: String
        var length: Int64?
        var digests: [[UInt8]?]
        var holders: [String]
        var bits: [UInt8]
    }

    init(_ index: Int, _ member: Member, swarm: Swarm, rank: Int, above: [Int], slow: Bool) {
        self.index = index
        self.member = member
        sid = SourceID(member.description)
        self.swarm = swarm
        self.rank = rank
        owners = above
        self.slow = slow
        bits = Array(repeating: 0, count: (swarm.pieceCount + 7) / 8)
        digests = Array(repeating: nil, count: swarm.pieceCount)
        // Each worker's share of the slots, and as many workers (the master hands connections round).
        admission = UploadAdmission(limit: UploadAdmission.perWorker(swarm.p.uploadSlots, concurrentLimit: 32, workers: swarm.p.workers)
                                    * swarm.p.workers)
        overlay = Overlay(task: swarm.task, me: member, maxNeighbours: swarm.p.maxNeighbours)
    }

    // MARK: Messages

    /// A control message from this host to `to`, arriving after its uplink queue and the latency.
    private func message(_ bytes: Double, to: Int, _ arrive: @escaping () -> Void) {
        controlMsgs += 1
        controlBytes += bytes
        contacts.insert(to)
        if to < swarm.hosts.count { swarm.hosts[to].contacts.insert(index) }
        net.send(bytes, from: index, arrive)
    }

    /// A request and its answer: `answer` runs at `to` when the request arrives and returns the
    /// answer's size and what to do with it here; a dead host's kernel answers with a reset.
    private func call(_ to: Int, _ answer: @escaping (SimHost) -> (Double, () -> Void), refused: @escaping () -> Void) {
        message(Swarm.Wire.request, to: to) { [self] in
            let peer = swarm.hosts[to]
            guard peer.alive else { return net.after(net.latency) { [self] in if alive { refused() } } }
            let (size, then) = answer(peer)
            // A piece's answer is its flow, not a message.
            if size > 0 { peer.message(size, to: index) { [self] in if alive { then() } } }
        }
    }

    // MARK: The pull

    func pull() {
        started = net.now
        if rank == 0 { return state == "none" ? startOrigin() : () }
        // PeerNetwork.fill: a follower, waiting by its rank before it falls back.
        var tuning = TaskFill.Tuning()
        // PeerNetwork.fill: no cut-through in a swarm of more members than cutThroughFollowers + 1.
        if swarm.p.hosts - 1 > tuning.cutThroughFollowers { tuning.cutThrough = 0 }
        if let c = swarm.p.cutThrough { tuning.cutThrough = c }
        tuning.idleMs = PeerNetwork.idleMs(rank: owners.count, backupSeeds: swarm.p.backupSeeds, base: 60_000)
        state = "downloading"
        fill = TaskFill(pieceSize: swarm.pieceSize, me: sid, now: ms, tuning: tuning, spread: { [unowned self] k in overlay.spread(k) })
        tick()
        askOwner()
    }

    private var ms: UInt64 { UInt64(net.now * 1000) }

    private func tick() {
        net.after(1) { [self] in
            guard alive, !fromOrigin, fill != nil, !ended else { return }
            handle(.tick)
            tick()
        }
    }

    /// The whole blob from the origin, cut into pieces as it streams (the seed, or a fallback).
    private func startOrigin() {
        fromOrigin = true
        state = "downloading"
        fill = TaskFill(pieceSize: swarm.pieceSize, me: nil, now: ms, fromOrigin: true)
        let size = Double(swarm.p.size), pieceSize = Double(swarm.pieceSize)
        // The request, and the head a round trip later.
        net.after(2 * net.latency) { [self] in
            guard alive else { return }
            handle(.described(length: swarm.p.size, contentType: "application/octet-stream", digestHeader: nil))
            var got = 0.0, next = 0
            originGot = 0
            originFlow = net.stream(size, from: swarm.origin, to: index, progress: { [unowned self] moved in
                got += moved
                originGot = got
                swarm.originBytes += moved
                while next < swarm.pieceCount && got >= min(size, Double(next + 1) * pieceSize) - 0.5 {
                    next += 1
                    handle(.arrived(next - 1, from: .origin, digest: nil))
                }
            }, done: {})
        }
    }

    private func handle(_ e: TaskFill.Event) {
        guard alive, fill != nil else { return }
        let actions = fill!.handle(e, now: ms)
        for a in actions { run(a) }
    }

    private func run(_ a: FillAction) {
        guard alive else { return }
        switch a {
        case .describe(let length, _, _):
            knownLength = length
        case .fetch(let k, let from):
            fetch(k, from)
        case .store(let k, let from):
            // The disk is instant; the digest that matched is recorded (the origin's: the true one).
            digests[k] = swarm.digests[k]
            bits[k / 8] |= 1 << UInt8(k % 8)
            present += 1
            // Cut-through uploads whose bytes are all out once the piece is whole here.
            for go in whenStored.removeValue(forKey: k) ?? [] { go() }
            handle(.stored(k, from: from, bytes: Int(pieceLength(k))))
            if rank == 0, let n = swarm.killAfterPieces, present >= n, swarm.firstSeed === self { die() }
        case .drop:
            break
        case .avoid(let s, _):
            if let h = swarm.host(s) { avoided.insert(h.index) }
        case .replaceSeed(let s):
            if let h = swarm.host(s) { ownerFailed(h.index) }
        case .seal, .sealChecked:
            handle(.sealed(nil))
        case .finish:
            state = "complete"
            finished = net.now
            stopPeers()
        case .rangeFromOrigin:
            rangeFallback = true
        case .fallBack:
            // restartDownload: the pieces are dropped, the origin sends all of it again.
            fellBack = true
            stopPeers()
            bits = Array(repeating: 0, count: bits.count)
            digests = Array(repeating: nil, count: digests.count)
            present = 0
            startOrigin()
        case .abort(let why):
            state = "failed"
            failed = why.description
            stopPeers()
        }
    }

    private func pieceLength(_ k: Int) -> Int64 {
        min(Int64(swarm.pieceSize), swarm.p.size - Int64(k) * Int64(swarm.pieceSize))
    }

    private func stopPeers() {
        pollGeneration += 1
        fetchGeneration += 1
        for f in fetching.values { f.cancel() }
        fetching.removeAll()
    }

    // MARK: PeerSource

    private func askOwner() {
        guard alive, !ended, !fromOrigin else { return }
        guard let owner = owners.first else { return handle(.failed(.noSeed)) }
        call(owner, { peer in
            peer.startOriginDownload()
            return (Swarm.Wire.head, { [self] in
                guard owners.first == owner, !fromOrigin else { return }
                message(Swarm.Wire.request + 20, to: owner) { [self] in swarm.hosts[owner].addHolder(sid.name) }
                refresh(pollGeneration)
            })
        }, refused: { [self] in ownerFailed(owner) })
    }

    private func ownerFailed(_ h: Int) {
        owners.removeAll { $0 == h }
        infos[h] = nil
        pollGeneration += 1
        askOwner()
    }

    /// The seed's task info and each followed holder's bitmap, then the news, then again.
    private func refresh(_ generation: Int) {
        guard alive, !ended, !fromOrigin, generation == pollGeneration, let owner = owners.first else { return }
        let neighbours: [Int] = infos[owner].map { info in
            overlay.neighbours(info.holders, seed: swarm.hosts[owner].sid, member: swarm.member) {
                avoided.contains(swarm.host($0)!.index)
            }.map { swarm.host($0)!.index }
        } ?? []
        for m in infos.keys where m != owner && !neighbours.contains(m) { infos[m] = nil }
        let asked = [owner] + neighbours
        var pending = asked.count
        for m in asked {
            // The owner's digests and holders from where this host's last answer ended (`TaskInfo.Since`).
            let known = m == owner ? infos[m].map { i in (i.digests.prefix { $0 != nil }.count, i.holders.count) } ?? (0, 0) : (0, 0)
            call(m, { peer in
                let info = m == owner ? peer.info : Info(state: "downloading", length: nil, digests: [], holders: [], bits: peer.bits)
                let size = m == owner ? Swarm.Wire.taskInfo(pieces: peer.swarm.pieceCount, newDigests: max(0, peer.swarm.pieceCount - known.0),
                                                            holders: peer.holders.dropFirst(known.1))
                    : Swarm.Wire.bitmap(pieces: peer.swarm.pieceCount)
                return (size, { [self] in
                    guard generation == pollGeneration else { return }
                    infos[m] = info
                    pending -= 1
                    if pending == 0 { report(owner, generation) }
                })
            }, refused: { [self] in
                guard generation == pollGeneration else { return }
                if m == owner { return ownerFailed(m) }
                avoided.insert(m)
                pending -= 1
                if pending == 0 { report(owner, generation) }
            })
        }
    }

    private func report(_ owner: Int, _ generation: Int) {
        guard let info = infos[owner] else { return }
        if info.state == "failed" { return handle(.failed(.seedFailed("owner's download failed"))) }
        var news = PieceNews()
        news.length = info.length
        news.pieceSize = swarm.pieceSize
        news.seedComplete = info.state == "complete"
        news.digests = info.digests
        for (m, i) in infos { news.holdings[swarm.hosts[m].sid] = i.bits }
        news.followers = overlay.followerOrder(info.holders, member: swarm.member)
        handle(.news(news, seed: swarm.hosts[owner].sid))
        net.after(swarm.p.pollMs / 1000) { [self] in refresh(generation) }
    }

    private func fetch(_ k: Int, _ from: SourceID) {
        if from == .origin { return fetchRange(k) }
        guard let s = swarm.host(from) else { return handle(.fetchFailed(k, from: from, .unreachable)) }
        let bytes = Double(pieceLength(k))
        let generation = fetchGeneration
        call(s.index, { peer in
            let arriving = !peer.hasPiece(k) && peer.arriving(k)
            guard peer.hasPiece(k) || arriving else {
                // PeerHandler: a task being filled answers "not yet" (503), any other 404.
                let notYet = peer.state == "downloading"
                return (Swarm.Wire.head, { [self] in
                    handle(.fetchFailed(k, from: from, notYet ? .busy(retryAfterMs: 250) : .refused)) })
            }
            // PeerHandler: a piece cut through waits for the origin, so it takes no upload slot
            // (it has its own bound).
            switch arriving ? peer.arrivingAdmission.ask(reserve: { 0 }) : peer.admission.ask(reserve: { 0 }) {
            case .busy(let ms):
                return (Swarm.Wire.head, { [self] in
                    busyAnswers += 1; handle(.fetchFailed(k, from: from, .busy(retryAfterMs: ms))) })
            case .start, .wait:
                peer.upload(k, bytes: bytes, to: self, generation: generation, cutThrough: arriving)
                return (0, {})
            }
        }, refused: { [self] in handle(.fetchFailed(k, from: from, .unreachable)) })
    }

    /// RangeOrigin: piece k by a range request, a round trip and then the bytes on the origin's uplink.
    private func fetchRange(_ k: Int) {
        let bytes = Double(pieceLength(k)), generation = fetchGeneration
        net.after(2 * net.latency) { [self] in
            guard alive, generation == fetchGeneration else { return }
            var flow: Network.Flow!
            flow = net.stream(Swarm.Wire.head + bytes, from: swarm.origin, to: index, progress: { [unowned self] moved in
                swarm.originBytes += moved
            }) { [self] in
                fetching[k] = nil
                guard alive, generation == fetchGeneration else { return }
                handle(.arrived(k, from: .origin, digest: swarm.digests[k]))
            }
            fetching[k] = flow
        }
    }

    /// Piece k to `to` as a flow from this host's uplink; a reset reaches it if this host dies.
    /// `cutThrough`: the piece is still arriving here from the origin; its last byte goes out no
    /// sooner than it is whole here (`PieceUpload` streams it as it lands; modelled as a flow on
    /// the uplink that never gets ahead of the origin's bytes, and whose end waits for the piece).
    private func upload(_ k: Int, bytes: Double, to: SimHost, generation: Int, cutThrough: Bool = false) {
        var flow: Network.Flow!
        flow = net.stream(Swarm.Wire.head + bytes, from: index, to: to.index, progress: { [weak to] _ in to?.bytesArrived() }) { [self] in
            let key = ObjectIdentifier(flow)
            let finish = { [self] in
                uploads[key] = nil
                if cutThrough { arrivingAdmission.ended() } else { admission.ended() }
                net.after(net.latency) { [to, sid] in to.delivered(k, from: sid, generation: generation) }
            }
            if cutThrough && !hasPiece(k) { whenStored[k, default: []].append(finish) } else { finish() }
        }
        if cutThrough {
            let start = Double(k) * Double(swarm.pieceSize), head = Swarm.Wire.head
            flow.available = { [unowned self] in hasPiece(k) ? .infinity : head + max(0, originGot - start) }
        }
        // The asking fill stopped: the upload ends there, its slot is free.
        flow.onCancel = { [self] in
            uploads[ObjectIdentifier(flow)] = nil
            if cutThrough { arrivingAdmission.ended() } else { admission.ended() }
        }
        to.fetching[k] = flow
        uploads[ObjectIdentifier(flow)] = (flow, { [to, sid] in
            to.net.after(to.net.latency) { to.handle(.fetchFailed(k, from: sid, .unreachable)) }
        })
    }

    /// FillDriver.progressed: a piece's bytes arriving, told to the fill at most once a second.
    private var lastBytesMs: UInt64 = 0
    func bytesArrived() {
        guard alive, !fromOrigin, ms &- lastBytesMs >= 1000 else { return }
        lastBytesMs = ms
        handle(.bytesArrived)
    }

    private func delivered(_ k: Int, from: SourceID, generation: Int) {
        fetching[k] = nil
        guard alive, generation == fetchGeneration else { return }
        handle(.arrived(k, from: from, digest: swarm.digests[k]))
    }

    // MARK: Serving

    func hasPiece(_ k: Int) -> Bool { bits[k / 8] & (1 << UInt8(k % 8)) != 0 }

    /// `PieceUpload.availability`: the origin is streaming the task here and piece k is among the
    /// next `arrivingAhead` past the last one present.
    func arriving(_ k: Int) -> Bool {
        guard alive, fromOrigin, state == "downloading", knownLength != nil else { return false }
        let first = (0..<swarm.pieceCount).first { !hasPiece($0) } ?? swarm.pieceCount
        return k < first + PieceUpload.arrivingAhead
    }

    var info: Info {
        Info(state: state, length: knownLength, digests: digests, holders: holders, bits: bits)
    }

    /// CacheService.startOriginDownload: claims the task and fetches it unless this host already has it.
    func startOriginDownload() {
        guard alive, state == "none" || state == "failed" else { return }
        started = started ?? net.now
        startOrigin()
    }

    func addHolder(_ name: String) {
        guard alive, holderSet.insert(name).inserted else { return }
        holders.append(name)
    }

    /// The seed's process is killed: its uploads reset, it answers nothing more.
    func die() {
        alive = false
        originFlow?.cancel()
        for (f, reset) in uploads.values {
            f.onCancel = nil
            f.cancel()
            reset()
        }
        uploads.removeAll()
    }
}
