import UV
import Config

/// Who the members are (the static list plus, with `peers.dns`, every address of that name,
/// resolved again every `refresh`), which one is this host, and which are down for now. A member
/// that fails a request is skipped for a backoff that doubles from 1 s to a minute; nothing here is
/// a consensus: every host decides from the same list and the same hash.
public final class Membership {
    let peerPort: Int
    private let staticMembers: [Member]
    private var dnsMembers: [Member] = []
    /// This host: `advertiseIP`, else the member whose address is local (from the list, or from
    /// `peers.dns` once it resolves).
    public private(set) var me: Member?
    private let localHosts: Set<String>
    private var down: [Member: (until: UInt64, backoffMs: UInt64)] = [:]
    private let dnsName: String?
    private let refreshMs: UInt64
    private var refreshTimer: LoopTimer?

    public init(peers: DaemonConfig.Peers, advertiseIP: String?, peerPort: Int, localHosts: Set<String>) {
        self.peerPort = peerPort
        staticMembers = peers.members.map { Member(host: $0.host, port: $0.port) }
        dnsName = peers.dns
        refreshMs = UInt64(max(1, peers.refresh) * 1000)
        self.localHosts = localHosts
        if let ip = advertiseIP {
            me = Member(host: ip, port: peerPort)
        } else {
            me = Membership.local(staticMembers, localHosts: localHosts, peerPort: peerPort)
        }
    }

    static func local(_ members: [Member], localHosts: Set<String>, peerPort: Int) -> Member? {
        members.first { $0.port == peerPort && localHosts.contains($0.host) }
    }

    /// The addresses `peers.dns` resolved to: members from now on, and this host among them if
    /// nothing else named it (without `advertiseIP`, a host known only by DNS finds itself there;
    /// else it would take itself for a stranger, act as every task's owner and never register).
    package func take(resolved: [Member]) {
        dnsMembers = resolved
        if me == nil { me = Membership.local(resolved, localHosts: localHosts, peerPort: peerPort) }
    }

    public var members: [Member] {
        var seen = Set<Member>()
        return (staticMembers + dnsMembers + (me.map { [$0] } ?? [])).filter { seen.insert($0).inserted }
    }

    /// Members not marked down.
    public func live(now: UInt64) -> [Member] {
        members.filter { m in down[m].map { $0.until <= now } ?? true }
    }

    public func markDown(_ m: Member, now: UInt64) {
        guard m != me else { return }
        let backoff = min(max((down[m]?.backoffMs ?? 500) * 2, 1000), 60_000)
        down[m] = (now + backoff, backoff)
    }

    public func markUp(_ m: Member) { down[m] = nil }

    /// Starts resolving `peers.dns` now and every `refresh`.
    public func startRefreshing() {
        guard let name = dnsName, refreshTimer == nil else { return }
        let t = LoopTimer()
        t.unref()
        refreshTimer = t
        t.start(ms: 0, repeatMs: refreshMs) { [weak self] in
            guard let self else { return }
            DNS.resolve(host: name, port: peerPort, cache: false) { [weak self] r in
                guard let self, case .success(let addrs) = r else { return }
                take(resolved: addrs.map { Member(host: $0.host, port: self.peerPort) })
            }
        }
    }
}
