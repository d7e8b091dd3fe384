import Foundation
import UV
import TLS
import Metrics

/// Whether a registry is worth asking, shared by every worker through one small file per registry
/// (`<cache>/registries/<sha256 of its origin>`). A failure (no connection, no answer in time, a
/// 5xx or a 429) marks it down for `failFast`, doubling while it stays down (to 8x), or for as long
/// as its `Retry-After` says: meanwhile the cache answers at once. When the time is up, the next
/// request probes it (the others keep answering from the cache for the probe's window); a success
/// anywhere clears the mark.
package final class RegistryHealth {
    package enum Verdict: Equatable {
        /// Nothing known against it: ask.
        case ask
        /// It was down and its time is up: this request asks, the others wait for it.
        case probe
        /// Do not ask before `untilMs`.
        case down(untilMs: UInt64, reason: String)
    }

    struct Mark: Equatable {
        var untilMs: UInt64
        var failures: Int
        var reason: String

        var text: String { "\(untilMs) \(failures) \(reason)" }

        init(untilMs: UInt64, failures: Int, reason: String) {
            self.untilMs = untilMs
            self.failures = failures
            self.reason = reason
        }

        init?(_ bytes: [UInt8]) {
            let parts = String(decoding: bytes, as: UTF8.self).split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let u = UInt64(parts[0]), let f = Int(parts[1]) else { return nil }
            self.init(untilMs: u, failures: f, reason: parts.count > 2 ? String(parts[2]) : "")
        }
    }

    let dir: String
    let failFastMs: UInt64
    /// How long the other requests leave a probe alone: its answer is due within it.
    let probeWindowMs: UInt64
    /// Registries this worker saw marked: a success clears their file (a success on a registry
    /// never marked costs nothing).
    private var marked = Set<String>()

    package init(root: String, failFastMs: UInt64, probeWindowMs: UInt64) {
        dir = root + "/registries"
        self.failFastMs = max(1, failFastMs)
        self.probeWindowMs = probeWindowMs
        SmallFiles.makeDirectory(dir)
    }

    func path(_ origin: String) -> String { "\(dir)/\(SHA256Digest.hex(Array(origin.utf8)))" }

    func mark(_ origin: String) -> Mark? { SmallFiles.read(path(origin)).flatMap(Mark.init) }

    package func check(_ origin: String, now: UInt64 = SmallFiles.wallMs()) -> Verdict {
        guard let m = mark(origin) else { return .ask }
        marked.insert(origin)
        if now < m.untilMs { return .down(untilMs: m.untilMs, reason: m.reason) }
        SmallFiles.replace(path(origin), Array(Mark(untilMs: now + probeWindowMs, failures: m.failures, reason: "probing after: \(m.reason)").text.utf8))
        return .probe
    }

    /// The registry failed (`retryAfterMs`: what it asked for, with a 429 or 503).
    package func failed(_ origin: String, reason: String, retryAfterMs: UInt64? = nil, now: UInt64 = SmallFiles.wallMs()) {
        let prior = mark(origin)
        let failures = (prior?.failures ?? 0) + 1
        let window = max(failFastMs << UInt64(min(failures - 1, 3)), retryAfterMs ?? 0)
        let m = Mark(untilMs: now + window, failures: failures, reason: reason.replacingOccurrences(of: "\n", with: " "))
        marked.insert(origin)
        SmallFiles.replace(path(origin), Array(m.text.utf8))
        Metrics.count(.registryDown)
        Log.shared.warn("registry failed: answering from the cache", ["registry": origin, "error": reason, "forMs": Int(window),
                                                                      "failures": failures])
    }

    package func succeeded(_ origin: String) {
        guard marked.remove(origin) != nil else { return }
        if unlink(path(origin)) == 0 { Log.shared.info("registry answers again", ["registry": origin]) }
    }

    /// `Retry-After` in seconds (the HTTP-date form counts from now), as milliseconds.
    package static func retryAfterMs(_ value: String?, now: Date = Date()) -> UInt64? {
        guard let v = value?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        if let s = UInt64(v) { return min(s, 24 * 3600) * 1000 }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let d = f.date(from: v) else { return nil }
        return UInt64(max(0, min(d.timeIntervalSince(now), 24 * 3600)) * 1000)
    }

    /// Answers that mean the registry cannot serve now, as opposed to "no".
    package static func isOutage(status: Int) -> Bool { status == 429 || status >= 500 }
}
