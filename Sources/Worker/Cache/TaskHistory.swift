import Foundation
import UV

/// What became of each fill, for `GET /debug/tasks` (served by the master): one JSON line per
/// finished fill, appended by whichever worker ran it to `<cache>/tasks.history.jsonl` (an
/// `O_APPEND` write of one short line, so workers never interleave), kept to about
/// `maxBytes` by moving the file aside once (the previous part is read too).
public enum TaskHistory {
    public struct Bytes: Codable, Equatable, Sendable {
        public var origin: Int = 0
        /// From each member, by `host:port`.
        public var peers: [String: Int] = [:]
    }

    public struct Record: Codable, Equatable, Sendable {
        public var digest: String
        /// `complete`, `failed`, or `stopped` (the peers could not fill it; the origin took over).
        public var state: String
        /// `origin` (this host fetched it) or `peers`.
        public var source: String
        public var size: Int64?
        public var bytes: Bytes
        public var owner: String?
        public var fallback: String?
        public var error: String?
        /// When the fill started (ISO 8601, UTC), how long it took, and its rate.
        public var started: String
        public var durationMs: Double
        public var mbPerSecond: Double?
        public var pid: Int32
    }

    static let maxBytes = 1 << 20
    static let file = "tasks.history.jsonl"

    static func path(_ root: String) -> String { (root as NSString).appendingPathComponent(file) }

    static func record(_ r: Record, root: String) {
        guard var line = try? JSONEncoder().encode(r) else { return }
        line.append(0x0a)
        let p = path(root)
        var st = stat()
        if stat(p, &st) == 0, st.st_size > maxBytes { rename(p, p + ".1") }
        let fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The last `limit` records under the cache at `root`, oldest first.
    public static func read(root: String, limit: Int = 200) -> [Record] {
        let p = path(root)
        let text = [p + ".1", p].compactMap { FileManager.default.contents(atPath: $0) }.map { String(decoding: $0, as: UTF8.self) }.joined()
        let records = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
        return Array(records.suffix(limit))
    }

    static func timestamp(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }
}
