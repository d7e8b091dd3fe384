import Foundation

/// The small files the registry-facing caches share between workers (tag records, grants, a
/// registry's health): read whole, replaced whole by a rename, so a reader in another process
/// sees the old content or the new one, never half of either.
package enum SmallFiles {
    /// Milliseconds since the epoch: the clock every worker (and a restarted daemon) shares.
    package static func wallMs() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }

    package static func read(_ path: String, max: Int = 64 * 1024) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: max)
        let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, max) }
        guard n >= 0 else { return nil }
        return Array(out[0..<n])
    }

    /// Writes `bytes` to a temporary beside `path`, then renames it over `path`.
    @discardableResult
    package static func replace(_ path: String, _ bytes: [UInt8]) -> Bool {
        let tmp = "\(path).\(getpid()).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard n == bytes.count, rename(tmp, path) == 0 else {
            unlink(tmp)
            return false
        }
        return true
    }

    package static func makeDirectory(_ path: String) {
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// The file's modification time, ms since the epoch.
    package static func modifiedMs(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_mtim.tv_sec) * 1000 + UInt64(st.st_mtim.tv_nsec) / 1_000_000
    }

    /// Sets the modification time to now, creating the file when absent.
    package static func touch(_ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        futimens(fd, nil)
        close(fd)
    }
}
