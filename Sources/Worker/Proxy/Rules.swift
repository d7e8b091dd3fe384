import Foundation
import UV
import HTTP
import Config

/// What happens to one request: through the cache (once it exists) or straight to the origin.
public enum RouteDecision: Equatable {
    case cache
    case direct

    public var name: String { self == .cache ? "cache" : "direct" }
}

/// The `proxies` rules, compiled. A pure function from request to decision, tested alone.
public struct ProxyRules {
    public struct Rule {
        let regex: Pattern
        public var pattern: String { regex.source }
        public let useHTTPS: Bool
        public let direct: Bool
        public let redirect: String?
    }

    public let rules: [Rule]

    public init(_ config: [DaemonConfig.Rule]) {
        rules = config.compactMap { r in
            guard let re = Pattern(r.regx) else { return nil }
            return Rule(regex: re, useHTTPS: r.useHTTPS, direct: r.direct, redirect: r.redirect)
        }
    }

    /// The first rule whose `regx` matches anywhere in the full URL.
    public func match(_ url: String) -> Rule? {
        rules.first { $0.regex.matches(url) }
    }

    public struct Outcome: Equatable {
        public var url: UpstreamURL
        public var decision: RouteDecision
        public var rule: String?
    }

    /// Applies the matching rule to a proxied request: `redirect` rewrites the URL (with `/` a full
    /// regex replacement with `$1` groups, else a new host), `useHTTPS` switches the scheme, and only
    /// GETs of non-`direct` rules go to the cache.
    public func route(method: String, url: UpstreamURL) -> Outcome {
        let full = url.description
        guard let rule = match(full) else { return Outcome(url: url, decision: .direct, rule: nil) }
        var out = url
        if let redirect = rule.redirect, !redirect.isEmpty {
            if redirect.contains("/") {
                let rewritten = rule.regex.replacing(in: full, with: redirect)
                if let u = UpstreamURL(rewritten) { out = u }
            } else if let (h, p) = UpstreamURL.splitHostPort(redirect, defaultPort: url.port) {
                out.host = h
                out.port = redirect.contains(":") ? p : url.port
            }
        }
        if rule.useHTTPS, out.scheme == "http" {
            out.scheme = "https"
            if out.port == 80 { out.port = 443 }
        }
        let decision: RouteDecision = (method == "GET" && !rule.direct) ? .cache : .direct
        return Outcome(url: out, decision: decision, rule: rule.pattern)
    }

    /// The mirror's default rule: blob GETs go to the cache (and, with `manifests`, GETs of
    /// manifests by digest), everything else (`/v2/`, tags, tokens) through.
    public static func mirrorDefault(method: String, path: String, manifests: Bool = false) -> RouteDecision {
        guard method == "GET" else { return .direct }
        let t = RequestTarget(path)
        return t.blobDigest != nil || (manifests && t.manifestDigest != nil) ? .cache : .direct
    }
}
