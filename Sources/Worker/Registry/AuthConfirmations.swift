import UV
import TLS
import HTTP

/// Remembers, for a short time, that a registry answered a client's credentials for one blob with
/// success: a cached blob reaches a client through registry R only if R would give it to them.
final class AuthConfirmations {
    private var granted: [String: UInt64] = [:]
    let ttlMs: UInt64

    init(ttlMs: UInt64 = 60_000) { self.ttlMs = ttlMs }

    /// registry + repository + a digest of the credential (never the credential itself) + the blob.
    func key(url: UpstreamURL, authorization: String?) -> String {
        // Every hit needs its key; the same one comes again and again (loop thread only).
        if let m = lastKey, m.url == url, m.authorization == authorization { return m.key }
        let t = RequestTarget(url.target)
        let key = "\(url.origin)|\(AuthConfirmations.repository(t))|\(credentialDigest(authorization))|\(t.blobDigest ?? t.path)"
        lastKey = (url, authorization, key)
        return key
    }

    private var lastKey: (url: UpstreamURL, authorization: String?, key: String)?

    /// The sha256 of a credential, remembered for the few credentials a worker sees (every hit
    /// needs one; most have no credential at all).
    private var digests: [String: String] = [:]
    func credentialDigest(_ authorization: String?) -> String {
        let a = authorization ?? ""
        if let d = digests[a] { return d }
        let d = SHA256Digest.hex(Array(a.utf8))
        if digests.count >= 1024 { digests.removeAll() }
        digests[a] = d
        return d
    }


    /// `/v2/<name>/blobs/...` → `<name>`; other paths stand for themselves.
    static func repository(_ target: String) -> String { repository(RequestTarget(target)) }
    static func repository(_ t: RequestTarget) -> String { t.repository ?? t.path }

    func isGranted(_ key: String, now: UInt64) -> Bool {
        guard let until = granted[key] else { return false }
        if until > now { return true }
        granted[key] = nil
        return false
    }

    func grant(_ key: String, now: UInt64) {
        if granted.count > 10_000 { granted = granted.filter { $0.value > now } }
        granted[key] = now + ttlMs
    }
}
