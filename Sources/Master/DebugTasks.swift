import Foundation
import Cache

/// `GET /debug/tasks` and `/debug/tasks/<digest>` on the health listener: the tasks being filled
/// now (from their meta files) and the last fills (`TaskHistory`: bytes by source, owner,
/// fallback, timing), as JSON. The master reads files only; no worker is asked.
enum DebugTasks {
    struct All: Encodable {
        let filling: [PieceCache.Filling]
        let recent: [TaskHistory.Record]
    }

    struct One: Encodable {
        let digest: String
        let filling: PieceCache.Filling?
        let fills: [TaskHistory.Record]
    }

    /// The body for `target` (under `/debug/tasks`), or nil for 404.
    static func answer(_ target: String, dataDir: String) -> [UInt8]? {
        let root = PieceCache.root(dataDir: dataDir)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if target == "/debug/tasks" || target == "/debug/tasks/" {
            return (try? enc.encode(All(filling: PieceCache.filling(dataDir: dataDir), recent: TaskHistory.read(root: root)))).map(Array.init)
        }
        var id = String(target.dropFirst("/debug/tasks/".count))
        if id.hasPrefix("sha256:") { id = String(id.dropFirst(7)) }
        guard id.count == 64, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        let digest = "sha256:" + id
        let filling = PieceCache.filling(dataDir: dataDir).first { $0.digest == digest }
        let fills = TaskHistory.read(root: root, limit: 10_000).filter { $0.digest == digest }
        guard filling != nil || !fills.isEmpty else { return nil }
        return (try? enc.encode(One(digest: digest, filling: filling, fills: fills))).map(Array.init)
    }
}
