import Foundation
import UV
import TLS

/// A tag as a client asks for it: registry (`host:port`), repository, tag, and the `Accept` set
/// (its media types, lower-cased, sorted), since a registry may answer a tag with a different
/// manifest for another set.
package struct TagRef: Equatable {
    package let authority: String
    package let repository: String
    package let tag: String
    package let accept: String

    package init(authority: String, repository: String, tag: String, accept: String?) {
        self.authority = authority.lowercased()
        self.repository = repository
        self.tag = tag
        self.accept = TagRef.normalize(accept)
    }

    /// `a, b;q=0.5 ,a` → `a,b;q=0.5`.
    package static func normalize(_ accept: String?) -> String {
        Set((accept ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty })
            .sorted().joined(separator: ",")
    }

    /// One folder per tag (every `Accept` set of it, and its lock): what a purge removes.
    package static func folder(authority: String, repository: String, tag: String) -> String {
        SHA256Digest.hex(Array("\(authority.lowercased())|\(repository)|\(tag)".utf8))
    }

    var folder: String { TagRef.folder(authority: authority, repository: repository, tag: tag) }
    var file: String { SHA256Digest.hex(Array(accept.utf8)) }
}

/// What the registry last said a tag is, for one `Accept` set.
package struct TagRecord: Codable, Equatable {
    package var digest: String
    package var contentType: String
    package var length: Int64
    /// When the registry last confirmed it (ms since the epoch).
    package var validatedMs: UInt64
    package var registry: String
    package var repository: String
    package var tag: String
    package var accept: String
}

/// The tags, on disk under `<cache>/tags/<tag folder>/<Accept set>`, shared by every worker. A
/// tag's folder also holds `.lock`: the worker whose request holds it asks the registry; the
/// others wait for the record it writes (one upstream request per tag per host).
package final class TagStore {
    let dir: String

    package init(root: String) {
        dir = root + "/tags"
        SmallFiles.makeDirectory(dir)
    }

    func folder(_ ref: TagRef) -> String { "\(dir)/\(ref.folder)" }

    package func read(_ ref: TagRef) -> TagRecord? {
        guard let b = SmallFiles.read("\(folder(ref))/\(ref.file)") else { return nil }
        return try? JSONDecoder().decode(TagRecord.self, from: Data(b))
    }

    package func write(_ ref: TagRef, _ record: TagRecord) {
        SmallFiles.makeDirectory(folder(ref))
        guard let d = try? JSONEncoder().encode(record) else { return }
        SmallFiles.replace("\(folder(ref))/\(ref.file)", Array(d))
    }

    /// The right to ask the registry about `ref` now, or nil when another request (of any worker) has it.
    package func lock(_ ref: TagRef) -> TagFlight? {
        SmallFiles.makeDirectory(folder(ref))
        let fd = open("\(folder(ref))/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        return TagFlight(fd: fd)
    }

    /// Removes every record of a tag (all `Accept` sets); the next request asks the registry.
    /// `tag` nil: every tag of the repository. Returns how many records went.
    @discardableResult
    package static func purge(root: String, authority: String, repository: String, tag: String?) -> Int {
        let dir = root + "/tags"
        let folders: [String]
        if let tag {
            folders = [TagRef.folder(authority: authority, repository: repository, tag: tag)]
        } else {
            folders = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { f in
                let files = (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/\(f)")) ?? []
                return files.contains { name in
                    guard !name.hasPrefix("."), let b = SmallFiles.read("\(dir)/\(f)/\(name)"),
                          let r = try? JSONDecoder().decode(TagRecord.self, from: Data(b)) else { return false }
                    return r.registry == authority.lowercased() && r.repository == repository
                }
            }
        }
        var removed = 0
        for f in folders {
            let path = "\(dir)/\(f)"
            let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            for name in files where !name.hasPrefix(".") && unlink("\(path)/\(name)") == 0 { removed += 1 }
        }
        return removed
    }
}

/// A held tag lock; released by `release` or when dropped.
package final class TagFlight {
    private var fd: Int32

    init(fd: Int32) { self.fd = fd }

    package func release() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { release() }
}
