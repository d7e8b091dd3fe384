import Foundation
import Worker

/// Writing one registry's hosts.toml under containerd's config path, for `gen-containerd-hosts`
/// and `init`: unchanged when it already says the same; a file dfget did not write is kept,
/// replaced, or backed up and replaced, as the command says.
enum HostsFiles {
    enum Foreign { case keep, replace, backUp }

    enum Outcome {
        case unchanged
        /// `--dry-run`: what would change (`replacing`: a file is there).
        case wouldWrite(diff: String, replacing: Bool)
        /// A file dfget did not write, left as it is.
        case kept
        case written(backup: String?)
    }

    static func put(_ e: ContainerdHosts.Entry, configPath: String, host: String, port: Int, foreign: Foreign,
                    dryRun: Bool = false) throws -> (file: String, outcome: Outcome) {
        let dir = (configPath as NSString).appendingPathComponent(e.directory)
        let file = (dir as NSString).appendingPathComponent("hosts.toml")
        let text = ContainerdHosts.render(e, daemonHost: host, daemonPort: port)
        let existing = try? String(contentsOfFile: file, encoding: .utf8)
        if existing == text { return (file, .unchanged) }
        let isForeign = existing.map { !$0.hasPrefix(ContainerdHosts.marker) } ?? false
        if isForeign && foreign == .keep { return (file, .kept) }
        if dryRun { return (file, .wouldWrite(diff: ContainerdHosts.diff(existing ?? "", text), replacing: existing != nil)) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var backup: String?
        if isForeign, foreign == .backUp, let existing {
            backup = file + ".dfget-backup"
            try existing.write(toFile: backup!, atomically: true, encoding: .utf8)
        }
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return (file, .written(backup: backup))
    }
}
