import Foundation
import UV
import TLS
import HTTP
import Cache
import Metrics

/// The peers as the cache sees them (`TaskSource`): a claimed blob whose rendezvous owner is another
/// member is filled from the members' pieces; one this host owns, or that nobody can help with,
/// comes from the origin.
package final class PeerNetwork: TaskSource {
    let membership: Membership
    let token: PeerToken
    let pool: UpstreamPool
    /// `download.perPeerRateLimit` in bytes per second (0: none).
    let perPeerRate: UInt64
    /// `peers.maxNeighbours`, `peers.backupSeeds`.
    let maxNeighbours: Int
    let backupSeeds: Int

    package init(membership: Membership, token: PeerToken, pool: UpstreamPool, perPeerRate: UInt64 = 0, maxNeighbours: Int = 8,
                 backupSeeds: Int = 2) {
        self.membership = membership
        self.token = token
        self.pool = pool
        self.perPeerRate = perPeerRate
        self.maxNeighbours = maxNeighbours
        self.backupSeeds = backupSeeds
    }

    /// How long a fill waits with no piece stored before it goes to the origin: the first
    /// `backupSeeds` members after the owner soon, everyone else much later (by then the backup
    /// seeds hold the blob and the swarm spreads it). So a stalled swarm costs the origin a few
    /// copies, not one per host, and its registry does not see every host connect at once.
    package static func idleMs(rank: Int, backupSeeds: Int, base: UInt64) -> UInt64 {
        rank <= backupSeeds ? max(1000, base / 3) : base * 2
    }

    @discardableResult
    package func fill(_ task: CacheTask, url: UpstreamURL, headers: HTTPHeaders, originRanges: @escaping (String) -> OriginFetch,
                      origin: @escaping () -> Void) -> Bool {
        let order = Rendezvous.order(task.key.id, membership.live(now: EventLoop.nowMs))
        // Members ranked above this host, in order: the owner first, then who takes over from it.
        let owners = Array(order.prefix { $0 != membership.me })
        guard !owners.isEmpty else {
            origin()
            return false
        }
        let source = PeerSource(id: task.key.id, url: url, headers: headers, owners: owners,
                                relays: PeerNetwork.relayOrder(task.key.id, order, me: membership.me), network: self)
        var tuning = TaskFill.Tuning()
        // This host's rank after the owner: 1 for the first member below it.
        tuning.idleMs = PeerNetwork.idleMs(rank: owners.count, backupSeeds: backupSeeds, base: Limits.upstreamIdleMs)
        // The seed's followers register one by one: the swarm's size is the members' count.
        if order.count - 1 > tuning.cutThroughFollowers { tuning.cutThrough = 0 }
        FillDriver(task: task, source: source, me: membership.me.map { SourceID($0.description) }, fromOrigin: false, tuning: tuning,
                   originRanges: originRanges, origin: origin).start()
        return true
    }

    /// The members a host asks to relay a task's owner it cannot reach: every other member except
    /// the owner, in an order of this host's own (rendezvous on task and host), so the hosts that
    /// cannot reach the owner spread over the swarm instead of all following its next member.
    package static func relayOrder(_ task: String, _ order: [Member], me: Member?) -> [Member] {
        Rendezvous.order("\(task)|relay|\(me?.description ?? "")", Array(order.dropFirst().filter { $0 != me }))
    }

    /// The request to the member that answers for the cluster about the tag `key` (rendezvous on
    /// registry + repository + tag over the live members), sealed, with the client's method and
    /// the headers that decide the answer; nil when this host is that member or does not know
    /// itself among the members.
    package func tagRequest(key: String, method: String, url: UpstreamURL, headers: HTTPHeaders) -> OriginFetch? {
        guard let me = membership.me, let owner = Rendezvous.order("tag|" + key, membership.live(now: EventLoop.nowMs)).first,
              owner != me else { return nil }
        let kept = headers.filter { ["accept", "authorization", "user-agent"].contains($0.name.lowercased()) }.map { [$0.name, $0.value] }
        guard let body = try? JSONEncoder().encode(TagRequest(method: method, url: url.description, headers: kept)) else { return nil }
        let f = request("POST", owner, PeerProtocol.tagPath, body: Array(body), sealed: true)
        f.isDownload = false
        f.peerRate = nil
        return f
    }

    /// A signed request to a member, its body sent once connected; `sealed`: the body is sealed
    /// (`PeerToken.seal`).
    func request(_ method: String, _ member: Member, _ target: String, body plain: [UInt8]? = nil, sealed: Bool = false) -> OriginFetch {
        var h = HTTPHeaders()
        let now = Int64(Date().timeIntervalSince1970)
        h.add(PeerToken.header, token.sign(method: method, target: target, now: now))
        var body = plain
        if sealed, let p = plain, let box = token.seal(p, method: method, target: target, now: now) {
            body = box
            h.add("Content-Type", PeerToken.sealedType)
        }
        if let body { h.add("Content-Length", String(body.count)) }
        let url = UpstreamURL(scheme: "http", host: member.host, port: member.port, target: target)
        let fetch = OriginFetch(method: method, headers: h, url: url, pool: pool, policy: .standard,
                                framing: body.map { $0.isEmpty ? .none : .length(UInt64($0.count)) } ?? .none)
        fetch.fromPeer = true
        fetch.isDownload = true
        if perPeerRate > 0 { fetch.peerRate = Metrics.region?.peerRate(member.description, perPeerRate) }
        if let body, !body.isEmpty {
            fetch.onConnected = { c in
                body.withUnsafeBytes { c.sendBody($0) }
                c.endBody()
            }
        }
        return fetch
    }
}
