import Foundation
/// An origin-form request target (`/path?query`), split once: the one query-string parser, and the
/// one place that knows what a blob path looks like.
public struct RequestTarget: Equatable, CustomStringConvertible {
    public let path: String
    /// The raw query after `?` (nil when there is no `?`), never decoded.
    public let query: String?

    public init(_ target: String) {
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            query = String(target[target.index(after: q)...])
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

    static let blobMarker = "/blobs/sha256:"

    /// The lower-case hex digest of a `.../blobs/sha256:<64 hex>` path, if that is what it is.
    public var blobDigest: String? {
        guard let r = path.range(of: RequestTarget.blobMarker) else { return nil }
        let hex = path[r.upperBound...].lowercased()
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return hex
    }

    /// `/v2/<name>/blobs/...` or `/v2/<name>/manifests/...` → `<name>`.
    public var repository: String? {
        guard path.hasPrefix("/v2/") else { return nil }
        for marker in ["/blobs/", "/manifests/"] {
            if let r = path.range(of: marker), r.lowerBound >= path.index(path.startIndex, offsetBy: 4) {
                return String(path[path.index(path.startIndex, offsetBy: 4)..<r.lowerBound])
            }
        }
        return nil
    }
}
