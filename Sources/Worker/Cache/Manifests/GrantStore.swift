import Glibc
import UV
import TLS

/// What the registry said to a credential about a repository, shared by every worker: the last
/// time it granted something there (a file's modification time, `<cache>/grants/<sha256>`, named
/// by registry + repository + the credential's sha256; the credential itself is never stored), and
/// the last challenge (`WWW-Authenticate`) it sent an unauthenticated client. During an outage a
/// credential granted within `staleIfError` is served from the cache; any other gets a 401 with
/// that challenge.
package final class GrantStore {
    let dir: String
    /// Grants this worker wrote lately (a hit does not touch the file each time).
    private var written: [String: UInt64] = [:]
    static let rewriteMs: UInt64 = 1000

    package init(root: String) {
        dir = root + "/grants"
        SmallFiles.makeDirectory(dir)
    }

    func name(origin: String, repository: String, authorization: String?) -> String {
        let credential = SHA256Digest.hex(Array((authorization ?? "").utf8))
        return SHA256Digest.hex(Array("\(origin)|\(repository)|\(credential)".utf8))
    }

    package func grant(origin: String, repository: String, authorization: String?, now: UInt64 = SmallFiles.wallMs()) {
        let n = name(origin: origin, repository: repository, authorization: authorization)
        if let w = written[n], now < w + GrantStore.rewriteMs { return }
        if written.count > 10_000 { written.removeAll() }
        written[n] = now
        SmallFiles.touch("\(dir)/\(n)")
    }

    /// How long ago the registry last granted this credential something in this repository; nil: never.
    package func age(origin: String, repository: String, authorization: String?, now: UInt64 = SmallFiles.wallMs()) -> UInt64? {
        let n = name(origin: origin, repository: repository, authorization: authorization)
        guard let t = SmallFiles.modifiedMs("\(dir)/\(n)") else { return nil }
        return now > t ? now - t : 0
    }

    /// The registry refused this credential here: no stale content for it from now on.
    package func revoke(origin: String, repository: String, authorization: String?) {
        let n = name(origin: origin, repository: repository, authorization: authorization)
        written[n] = nil
        unlink("\(dir)/\(n)")
    }

    func challengePath(origin: String, repository: String) -> String {
        "\(dir)/challenge-\(SHA256Digest.hex(Array("\(origin)|\(repository)".utf8)))"
    }

    package func rememberChallenge(origin: String, repository: String, _ value: String) {
        let p = challengePath(origin: origin, repository: repository)
        if SmallFiles.read(p).map({ String(decoding: $0, as: UTF8.self) }) == value { return }
        SmallFiles.replace(p, Array(value.utf8))
    }

    package func challenge(origin: String, repository: String) -> String? {
        SmallFiles.read(challengePath(origin: origin, repository: repository)).map { String(decoding: $0, as: UTF8.self) }
    }
}
