import Foundation
import UV
/// An origin-form request target (`/path?query`), split once: the one query-string parser, and the
/// one place that knows what a blob path looks like.
public struct RequestTarget: Equatable, CustomStringConvertible {
    public let path: String
    /// The raw query after `?` (nil when there is no `?`), never decoded.
    public let query: String?

    public init(_ target: String) {
        // A byte search (memchr): every request is split here, several times, and a `Character`
        // search costs grapheme breaking, a generic one an index check per byte.
        var t = target
        let q: Int? = t.withUTF8 { b in
            guard let base = b.baseAddress, let p = memchr(base, Int32(UInt8(ascii: "?")), b.count) else { return nil }
            return base.distance(to: p.assumingMemoryBound(to: UInt8.self))
        }
        if let q {
            let u = t.utf8
            let i = u.index(u.startIndex, offsetBy: q)
            path = String(t[..<i])
            query = String(t[u.index(after: i)...])
        } else {
            path = target
            query = nil
        }
    }

    public var description: String { query.map { path + "?" + $0 } ?? path }

    /// The query's non-empty `name[=value]` items, in order.
    var items: [Substring] { query?.split(separator: "&") ?? [] }

    static func name(of item: Substring) -> Substring { item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0] }

    /// The percent-decoded value of the first `name=value` item; nil when absent or empty.
    public func value(of name: String) -> String? {
        for item in items where RequestTarget.name(of: item) == name {
            guard let eq = item.firstIndex(of: "=") else { continue }
            let raw = String(item[item.index(after: eq)...])
            let v = raw.removingPercentEncoding ?? raw
            return v.isEmpty ? nil : v
        }
        return nil
    }

    /// The target without the query items named in `names` (and without empty items).
    public func removing(_ names: Set<String>) -> RequestTarget {
        guard !names.isEmpty, query != nil else { return self }
        let kept = items.filter { !names.contains(String(RequestTarget.name(of: $0))) }
        return RequestTarget(kept.isEmpty ? path : path + "?" + kept.joined(separator: "&"))
    }

    static let blobMarker: StaticString = "/blobs/sha256:"

    /// The lower-case hex digest of a `.../blobs/sha256:<64 hex>` path, if that is what it is.
    public var blobDigest: String? {
        // A request asks for it several times (routing, the task key, the grant): the last answer
        // is kept (loop thread only).
        if let m = RequestTarget.lastDigest, m.path == path { return m.digest }
        let d = computeBlobDigest()
        RequestTarget.lastDigest = (path, d)
        return d
    }

    private static let lastDigestBox = LoopBound<(path: String, digest: String?)?>(nil)
    private static var lastDigest: (path: String, digest: String?)? {
        get { lastDigestBox.value }
        set { lastDigestBox.value = newValue }
    }

    private func computeBlobDigest() -> String? {
        guard let r = RequestTarget.find(RequestTarget.blobMarker, in: path) else { return nil }
        let hex = path.utf8[r.upperBound...]
        guard hex.count == 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(64)
        for c in hex {
            let l = c >= 0x41 && c <= 0x46 ? c + 0x20 : c  // A-F → a-f
            guard (l >= 0x30 && l <= 0x39) || (l >= 0x61 && l <= 0x66) else { return nil }
            out.append(l)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `/v2/<name>/blobs/...` or `/v2/<name>/manifests/...` → `<name>`.
    public var repository: String? {
        guard path.hasPrefix("/v2/") else { return nil }
        let nameStart = path.utf8.index(path.startIndex, offsetBy: 4)
        for marker: StaticString in ["/blobs/", "/manifests/"] {
            if let r = RequestTarget.find(marker, in: path), r.lowerBound >= nameStart {
                return String(path[nameStart..<r.lowerBound])
            }
        }
        return nil
    }

    static let manifestsMarker: StaticString = "/manifests/"

    /// `/v2/<name>/manifests/<reference>` → `<reference>` (a tag or a digest); nil for any other path.
    public var manifestReference: String? {
        guard path.hasPrefix("/v2/"), let r = RequestTarget.find(RequestTarget.manifestsMarker, in: path),
              path.utf8.distance(from: path.startIndex, to: r.lowerBound) > 4 else { return nil }
        let ref = String(path[r.upperBound...])
        guard !ref.isEmpty, !ref.contains("/") else { return nil }
        return ref
    }

    /// The lower-case hex of a `.../manifests/sha256:<64 hex>` path.
    public var manifestDigest: String? {
        guard let ref = manifestReference, ref.hasPrefix("sha256:") else { return nil }
        let hex = ref.dropFirst(7).lowercased()
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return hex
    }

    /// The first occurrence of the ASCII `needle` in `hay`, by bytes.
    static func find(_ needle: StaticString, in hay: String) -> Range<String.Index>? {
        var hay = hay
        let found: Range<Int>? = hay.withUTF8 { h in
            needle.withUTF8Buffer { n in
                guard n.count > 0, n.count <= h.count else { return nil }
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == n[0] {
                        var j = 1
                        while j < n.count && h[i + j] == n[j] { j += 1 }
                        if j == n.count { return i..<i + n.count }
                    }
                    i += 1
                }
                return nil
            }
        }
        guard let found else { return nil }
        let u = hay.utf8
        let lo = u.index(u.startIndex, offsetBy: found.lowerBound)
        return lo..<u.index(lo, offsetBy: found.count)
    }
}
