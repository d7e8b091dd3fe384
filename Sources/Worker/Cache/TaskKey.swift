import Foundation
import UV
import TLS
import HTTP

/// Identifies a cached task. A blob URL (`/blobs/sha256:<hex>`) is keyed by its digest, so the same
/// layer from two registries or repositories is stored once; other URLs by the sha256 of the URL
/// without the filtered query parameters, plus the tag.
public struct TaskKey: Hashable, CustomStringConvertible {
    public let id: String
    /// The digest the content must hash to (digest-keyed tasks only).
    public let expectedDigest: String?

    public var description: String { id }

    /// The task of a blob, by its lower-case hex sha256 (what peers name tasks by); nil for anything else.
    public static func forDigest(_ hex: String) -> TaskKey? {
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return TaskKey(id: hex, expectedDigest: "sha256:" + hex)
    }

    /// A manifest by its digest: content-addressed like a blob, kept apart from a blob of the same
    /// digest (its head carries the manifest's media type), and never shared with the peers.
    public static func forManifest(_ hex: String) -> TaskKey { TaskKey(id: manifestPrefix + hex, expectedDigest: "sha256:" + hex) }
    static let manifestPrefix = "manifest-"
    public var isManifest: Bool { id.hasPrefix(TaskKey.manifestPrefix) }

    public static func forURL(_ url: UpstreamURL, filter: [String] = [], tag: String? = nil) -> TaskKey {
        let t = RequestTarget(url.target)
        if let hex = t.blobDigest { return TaskKey(id: hex, expectedDigest: "sha256:" + hex) }
        if let hex = t.manifestDigest { return forManifest(hex) }
        let filtered = UpstreamURL(scheme: url.scheme, host: url.host, port: url.port,
                                   target: RequestTarget(url.target).removing(Set(filter)).description).description
        return TaskKey(id: SHA256Digest.hex(Array((filtered + (tag.map { "#" + $0 } ?? "")).utf8)), expectedDigest: nil)
    }

    /// `defaultFilter` / `X-Dragonfly-Filter` syntax: names separated by `&`.
    public static func filterNames(_ s: String?) -> [String] {
        (s ?? "").split(separator: "&").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

}
