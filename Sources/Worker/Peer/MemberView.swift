import Foundation
import UV
import Config
import Cache

/// The master's view of the members beyond `peers.members`: `peers.membersFile`, read again
/// whenever it changes (checked every second: a stat, which also sees a Kubernetes ConfigMap's
/// symlink swap that inotify on the file would miss), and every address of `peers.dns`, resolved
/// every `refresh` (glibc's resolver asks again over TCP when an answer is too big for UDP).
///
/// One host resolves once, not once per worker, and all its workers see the same members: the view
/// goes to `<dataDir>/peers/members`, replaced by a rename, and each worker reads it when it starts
/// and whenever the master says it changed. A members file that turns bad, or a failed lookup,
/// keeps the members known before (logged, `dfget_peer_membership_errors_total`): a typo or a DNS
/// blip does not empty the cluster.
public final class MemberView {
    public static func path(dataDir: String) -> String { dataDir + "/peers/members" }

    private let peers: DaemonConfig.Peers
    private let peerPort: Int
    private let path: String
    private let onChange: () -> Void
    private var fileMembers: [Member]
    private var dnsMembers: [Member] = []
    private var fileStamp: FileStamp?
    private var timers: [LoopTimer] = []
    private var written: [Member]?
    private var stopped = false
    /// Failed reads of the members file and failed lookups of `peers.dns`.
    public private(set) var errors: UInt64 = 0
    static let filePollMs: UInt64 = 1000

    public init(peers: DaemonConfig.Peers, dataDir: String, peerPort: Int, onChange: @escaping () -> Void) {
        self.peers = peers
        self.peerPort = peerPort
        path = MemberView.path(dataDir: dataDir)
        self.onChange = onChange
        fileMembers = peers.fileMembers.map { Member(host: $0.host, port: $0.port) }
        fileStamp = peers.membersFile.flatMap(FileStamp.init(path:))
    }

    /// Every member this host knows of: the static list, the file, then DNS.
    public var members: [Member] {
        Member.unique(peers.members.map { Member(host: $0.host, port: $0.port) } + dynamic)
    }

    /// What the workers read: the file's members and then the resolved ones.
    var dynamic: [Member] {
        Member.unique(fileMembers + dnsMembers)
    }

    /// Writes the view now (before any worker starts, so none reads what an earlier run left) and
    /// starts watching the file and resolving the name.
    public func start() {
        SmallFiles.makeDirectory((path as NSString).deletingLastPathComponent)
        publish(force: true)
        if let file = peers.membersFile {
            let t = LoopTimer()
            t.unref()
            t.start(ms: MemberView.filePollMs, repeatMs: MemberView.filePollMs) { [weak self] in self?.checkFile(file) }
            timers.append(t)
        }
        if let name = peers.dns {
            let t = LoopTimer()
            t.unref()
            let ms = UInt64(max(1, peers.refresh) * 1000)
            t.start(ms: 0, repeatMs: ms) { [weak self] in self?.resolve(name) }
            timers.append(t)
        }
    }

    public func stop() {
        stopped = true
        for t in timers { t.close() }
        timers = []
    }

    private func checkFile(_ file: String) {
        let stamp = FileStamp(path: file)
        guard stamp != fileStamp else { return }
        fileStamp = stamp
        guard stamp != nil, let bytes = SmallFiles.read(file, max: MemberView.maxBytes) else {
            fail("members file unreadable: keeping the members known before", ["file": file])
            return
        }
        do {
            fileMembers = try MembersFile.parse(String(decoding: bytes, as: UTF8.self), path: file, defaultPort: peerPort)
                .map { Member(host: $0.host, port: $0.port) }
            Log.shared.info("members file read", ["file": file, "members": fileMembers.count])
            publish()
        } catch {
            fail("members file refused: keeping the members known before", ["error": "\(error)"])
        }
    }

    private func resolve(_ name: String) {
        DNS.resolve(host: name, port: peerPort, cache: false) { [weak self] r in
            guard let self, !stopped else { return }
            switch r {
            case .success(let addrs):
                // Sorted: a server that rotates its records (round robin) changes nothing.
                dnsMembers = Member.unique(addrs.map { Member(host: $0.host, port: self.peerPort) })
                    .sorted { ($0.host, $0.port) < ($1.host, $1.port) }
                publish()
            case .failure(let e):
                fail("peers.dns did not resolve: keeping the members known before", ["name": name, "error": "\(e)"])
            }
        }
    }

    private func fail(_ message: String, _ fields: Log.Fields) {
        errors += 1
        Log.shared.warn(message, fields)
    }

    /// Writes the view when it changed, then tells the workers.
    private func publish(force: Bool = false) {
        let view = dynamic
        guard force || view != written else { return }
        let text = MembersFile.render(view.map { ($0.host, $0.port) }, header: "the dfget master's view of the members; do not edit")
        guard SmallFiles.replace(path, Array(text.utf8)) else {
            fail("cannot write the members view", ["path": path])
            return
        }
        if !force {
            Log.shared.info("peer members changed", ["members": members.count, "fromFile": fileMembers.count, "fromDNS": dnsMembers.count])
        }
        written = view
        onChange()
    }

    static let maxBytes = 8 << 20

    /// What a worker reads: the members the master last wrote, nil when there is no view.
    public static func read(dataDir: String, peerPort: Int) -> [Member]? {
        let p = path(dataDir: dataDir)
        guard let bytes = SmallFiles.read(p, max: maxBytes),
              let list = try? MembersFile.parse(String(decoding: bytes, as: UTF8.self), path: p, defaultPort: peerPort) else { return nil }
        return list.map { Member(host: $0.host, port: $0.port) }
    }
}

/// What tells a file changed without reading it: its inode, size and modification time.
struct FileStamp: Equatable {
    let dev: UInt64, ino: UInt64, size: Int64, sec: Int, nsec: Int

    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        dev = UInt64(st.st_dev)
        ino = UInt64(st.st_ino)
        size = Int64(st.st_size)
        sec = st.st_mtim.tv_sec
        nsec = st.st_mtim.tv_nsec
    }
}
