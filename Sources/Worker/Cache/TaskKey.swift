import Foundation
import UV
import HTTP

/// Identifies a cached task. A blob URL (`/blobs/sha256:<hex>`) is keyed by its digest, so the same
/// layer from two registries or repositories is stored once; other URLs by the sha256 of the URL
/// without the filtered query parameters, plus the tag.
public struct TaskKey: Hashable, CustomStringConvertible {
    public let id: String
    /// The digest the content must hash to (digest-keyed tasks only).
    public let expectedDigest: String?

    public var description: String { id }

    public static func forURL(_ url: UpstreamURL, filter: [String] = [], tag: String? = nil) -> TaskKey {
        if let hex = blobDigest(url.target) { return TaskKey(id: hex, expectedDigest: "sha256:" + hex) }
        let filtered = UpstreamURL(scheme: url.scheme, host: url.host, port: url.port,
                                   target: removeQuery(url.target, names: Set(filter))).description
        return TaskKey(id: SHA256Digest.hex(Array((filtered + (tag.map { "#" + $0 } ?? "")).utf8)), expectedDigest: nil)
    }

    /// The lower-case hex digest of a `/blobs/sha256:<64 hex>` path, if that is what it is.
    package static func blobDigest(_ target: String) -> String? {
        let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
        guard let r = path.range(of: "/blobs/sha256:") else { return nil }
        let hex = path[r.upperBound...].lowercased()
        guard hex.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return hex
    }

    /// `defaultFilter` / `X-Dragonfly-Filter` syntax: names separated by `&`.
    public static func filterNames(_ s: String?) -> [String] {
        (s ?? "").split(separator: "&").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

    static func removeQuery(_ target: String, names: Set<String>) -> String {
        guard !names.isEmpty, let q = target.firstIndex(of: "?") else { return target }
        let kept = target[target.index(after: q)...].split(separator: "&").filter { item in
            let name = item.split(separator: "=", maxSplits: 1).first.map(String.init) ?? String(item)
            return !names.contains(name)
        }
        return kept.isEmpty ? String(target[..<q]) : target[..<q] + "?" + kept.joined(separator: "&")
    }
}
