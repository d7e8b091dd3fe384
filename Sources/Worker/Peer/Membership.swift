import UV
import Config

/// Who the members are (the static list plus the master's view: `peers.membersFile` and every
/// address of `peers.dns`, see `MemberView`), which one is this host, and which are down for now.
/// A member that fails a request is skipped for a backoff that doubles from 1 s to a minute;
/// nothing here is a consensus: every host decides from the same list and the same hash.
public final class Membership {
    public let peerPort: Int
    private let staticMembers: [Member]
    private var viewMembers: [Member]
    /// This host: `advertiseIP`, else the member whose address is local (from the list, or from
    /// the view once it names this host).
    public private(set) var me: Member?
    private let localHosts: Set<String>
    private var down: [Member: (until: UInt64, backoffMs: UInt64)] = [:]

    public init(peers: DaemonConfig.Peers, advertiseIP: String?, peerPort: Int, localHosts: Set<String>) {
        self.peerPort = peerPort
        staticMembers = peers.members.map { Member(host: $0.host, port: $0.port) }
        viewMembers = peers.fileMembers.map { Member(host: $0.host, port: $0.port) }
        self.localHosts = localHosts
        if let ip = advertiseIP {
            me = Member(host: MembersFile.member(ip, defaultPort: peerPort)?.host ?? ip, port: peerPort)
        } else {
            me = Membership.local(staticMembers + viewMembers, localHosts: localHosts, peerPort: peerPort)
        }
        merge()
    }

    static func local(_ members: [Member], localHosts: Set<String>, peerPort: Int) -> Member? {
        members.first { $0.port == peerPort && localHosts.contains($0.host) }
    }

    /// The master's view (the members file and what `peers.dns` resolved to): members from now on,
    /// and this host among them if nothing else named it (without `advertiseIP`, a host known only
    /// by DNS finds itself there; else it would take itself for a stranger, act as every task's
    /// owner and never register).
    package func take(view: [Member]) {
        viewMembers = view
        if me == nil { me = Membership.local(view, localHosts: localHosts, peerPort: peerPort) }
        merge()
    }

    /// The static list, the view, and this host, each once (kept, not computed per request: with
    /// thousands of members every task asks for it).
    public private(set) var members: [Member] = []

    private func merge() {
        members = Member.unique(staticMembers + viewMembers + (me.map { [$0] } ?? []))
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
}
