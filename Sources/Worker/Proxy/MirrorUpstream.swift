import Foundation
import HTTP

/// Which registry a mirror request goes to, in order: the `X-Dragonfly-Registry` header (when
/// `dynamic`), containerd's `?ns=` (when `dynamic`), then `registryMirror.url`.
public enum MirrorUpstream {
    public enum Choice: Equatable {
        case upstream(UpstreamURL, source: String)
        case badHeader(String)
        case disabled
    }

    public static func choose(dynamic: Bool, header: String?, target: String, configured: UpstreamURL?) -> Choice {
        if dynamic, let header {
            guard let u = UpstreamURL(header.trimmingSpaces()), u.target == "/" else { return .badHeader(header) }
            return .upstream(u, source: "header")
        }
        if dynamic, let ns = namespace(target), let u = registryURL(namespace: ns) {
            return .upstream(u, source: "ns")
        }
        if let configured { return .upstream(configured, source: "config") }
        return .disabled
    }

    /// The `ns` query parameter, percent-decoded.
    static func namespace(_ target: String) -> String? { RequestTarget(target).value(of: "ns") }

    /// containerd appends `?ns=<registry>` to mirror requests; origins must not see it.
    public static func stripNamespace(_ target: String) -> String { RequestTarget(target).removing(["ns"]).description }

    /// The registry endpoint of a containerd namespace (`docker.io` is Docker Hub's registry host).
    public static func registryURL(namespace ns: String) -> UpstreamURL? {
        if ns == "docker.io" { return UpstreamURL("https://registry-1.docker.io") }
        guard !ns.contains("/"), UpstreamURL.splitHostPort(ns, defaultPort: 443) != nil else { return nil }
        return UpstreamURL("https://\(ns)")
    }
}
