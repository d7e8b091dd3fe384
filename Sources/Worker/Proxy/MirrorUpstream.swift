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
            guard let u = registryOrigin(header.trimmingSpaces()) else { return .badHeader(header) }
            return .upstream(u, source: "header")
        }
        if dynamic, let ns = namespace(target), let u = registryURL(namespace: ns, configured: configured) {
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
    /// The namespace of the configured registry itself keeps that URL's scheme: containerd names a
    /// local plain-HTTP registry `127.0.0.1:5000` just like an HTTPS one.
    public static func registryURL(namespace ns: String, configured: UpstreamURL? = nil) -> UpstreamURL? {
        if ns == "docker.io" { return UpstreamURL("https://registry-1.docker.io") }
        guard !ns.contains("/"), !ns.contains("@"), let (host, port) = UpstreamURL.splitHostPort(ns, defaultPort: 443) else { return nil }
        if let c = configured, c.host.lowercased() == host.lowercased(),
           c.port == port || (!ns.hasSuffix(":\(port)") && c.isDefaultPort) {
            return UpstreamURL(scheme: c.scheme, host: c.host, port: c.port, target: "/")
        }
        return UpstreamURL("https://\(ns)")
    }

    /// An `X-Dragonfly-Registry` value: `http://` or `https://`, then `host[:port]`, then at most
    /// `/`. No user info, path, query or fragment: the header names a registry, nothing more.
    public static func registryOrigin(_ value: String) -> UpstreamURL? {
        guard let u = UpstreamURL(value), u.target == "/" else { return nil }
        let rest = value.dropFirst(u.scheme.count + 3)
        let authority = rest.hasSuffix("/") ? rest.dropLast() : rest
        guard !authority.isEmpty, !authority.contains(where: { "/?#@\\".contains($0) }) else { return nil }
        return u
    }

    public enum Admission: Equatable {
        case pull
        case methodNotAllowed
        case notRegistryAPI
    }

    /// A `.` or `..` segment anywhere in the path (scanned by bytes, no array of segments).
    static func hasDotSegment(_ path: String) -> Bool {
        var path = path
        return path.withUTF8 { u in
            // Most paths have no dot at all (blob paths never do): one memchr says so.
            guard let base = u.baseAddress, memchr(base, Int32(UInt8(ascii: ".")), u.count) != nil else { return false }
            return hasDotSegment(u)
        }
    }

    private static func hasDotSegment(_ u: UnsafeBufferPointer<UInt8>) -> Bool {
        var dots = 0, segmentStart = true
        for c in u {
            if c == UInt8(ascii: "/") {
                if segmentStart && (dots == 1 || dots == 2) { return true }
                dots = 0
                segmentStart = true
            } else if c == UInt8(ascii: ".") && segmentStart {
                dots += 1
            } else {
                segmentStart = false
                dots = 0
            }
        }
        return segmentStart && (dots == 1 || dots == 2)
    }

    /// A pull-only mirror: `GET` and `HEAD` of the registry API (`/v2/...`), nothing else.
    public static func admit(method: String, target: String) -> Admission {
        guard method == "GET" || method == "HEAD" else { return .methodNotAllowed }
        let path = RequestTarget(target).path
        guard path == "/v2" || path.hasPrefix("/v2/") else { return .notRegistryAPI }
        // `..` segments could climb out of /v2/ at the origin.
        guard !MirrorUpstream.hasDotSegment(path) else { return .notRegistryAPI }
        return .pull
    }
}
