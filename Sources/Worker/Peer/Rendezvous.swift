import UV
import TLS

/// A member of the cluster: a host's peer port.
public struct Member: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { HostPort.format(host, port) }

    /// `members` in order, each once.
    static func unique(_ members: [Member]) -> [Member] {
        var seen = Set<Member>()
        return members.filter { seen.insert($0).inserted }
    }
}

/// Rendezvous (highest random weight) hashing: every host ranks the members for a task the same
/// way without talking to anyone, the first is the task's owner, and when a member leaves only its
/// own tasks move.
public enum Rendezvous {
    /// `members` ordered by weight for `task`, highest first.
    public static func order(_ task: String, _ members: [Member]) -> [Member] {
        members.map { ($0, weight(task, $0)) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.description < $1.0.description }.map(\.0)
    }

    package static func weight(_ task: String, _ member: Member) -> UInt64 {
        let d = SHA256Digest()
        Array("\(task)|\(member)".utf8).withUnsafeBytes { d.update($0) }
        return d.finalize().prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
