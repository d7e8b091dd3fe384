import Foundation

/// Routes each request on the proxy port: CONNECT → tunnel, absolute URI → forward proxy,
/// origin-form → registry mirror. The rule decision is logged per request, ready for the cache.
public final class ProxyHandler {
    let config: DaemonConfig.Proxy
    let rules: ProxyRules
    let pool = UpstreamPool()
    let mirrorURL: UpstreamURL?

    public init(config: DaemonConfig.Proxy) {
        self.config = config
        rules = ProxyRules(config.proxies)
        mirrorURL = config.registryMirror.url.flatMap(UpstreamURL.init)
    }

    public func handle(_ ex: Exchange) {
        let target = ex.request.target
        if ex.request.method == "CONNECT" {
            guard authorized(ex) else { return }
            Tunnel.open(ex, authority: target)
        } else if target.hasPrefix("/") {
            mirror(ex)
        } else if let url = UpstreamURL(target) {
            guard authorized(ex) else { return }
            forwardProxy(ex, url: url)
        } else {
            ex.respond(status: 400, body: "unsupported request target\n")
        }
    }

    /// `proxy.basicAuth`: proxy requests need matching `Proxy-Authorization`, else 407.
    private func authorized(_ ex: Exchange) -> Bool {
        guard let (user, pass) = config.basicAuth else { return true }
        let expected = "Basic " + Data("\(user):\(pass)".utf8).base64EncodedString()
        if ex.request.headers["Proxy-Authorization"] == expected { return true }
        var h = HTTPHeaders()
        h.add("Proxy-Authenticate", "Basic realm=\"dfget\"")
        ex.respond(status: 407, headers: h, body: "proxy authentication required\n")
        return false
    }

    private func forwardProxy(_ ex: Exchange, url: UpstreamURL) {
        let outcome = rules.route(method: ex.request.method, url: url)
        ex.logFields.append(("mode", .string("proxy")))
        log(ex, outcome.decision, rule: outcome.rule)
        Forwarder(exchange: ex, url: outcome.url, headers: ex.request.headers, pool: pool).start()
    }

    private func mirror(_ ex: Exchange) {
        ex.logFields.append(("mode", .string("mirror")))
        let base: UpstreamURL
        if config.registryMirror.dynamic, let header = ex.request.headers["X-Dragonfly-Registry"] {
            guard let u = UpstreamURL(header.trimmingSpaces()), u.target == "/" else {
                ex.respond(status: 400, body: "malformed X-Dragonfly-Registry header: \(header)\n")
                return
            }
            base = u
        } else if let m = mirrorURL {
            base = m
        } else {
            ex.respond(status: 404, body: "registry mirror feature is disabled\n")
            return
        }
        var url = base
        let prefix = base.target.hasSuffix("/") ? String(base.target.dropLast()) : base.target
        url.target = prefix + MirrorTarget.stripNamespace(ex.request.target)
        let decision: RouteDecision
        var rule: String?
        if config.registryMirror.direct {
            decision = .direct
        } else if config.registryMirror.useProxies {
            let outcome = rules.route(method: ex.request.method, url: url)
            url = outcome.url
            decision = outcome.decision
            rule = outcome.rule
        } else {
            decision = ProxyRules.mirrorDefault(method: ex.request.method, path: url.target)
            rule = decision == .cache ? "blobs/sha256:" : nil
        }
        log(ex, decision, rule: rule)
        Forwarder(exchange: ex, url: url, headers: ex.request.headers, pool: pool).start()
    }

    private func log(_ ex: Exchange, _ decision: RouteDecision, rule: String?) {
        ex.logFields.append(("decision", .string(decision.name)))
        if let rule { ex.logFields.append(("rule", .string(rule))) }
    }

    public func drain() { pool.closeAll() }
}

/// containerd appends `?ns=<registry>` to mirror requests; origins must not see it.
public enum MirrorTarget {
    public static func stripNamespace(_ target: String) -> String {
        guard let q = target.firstIndex(of: "?") else { return target }
        let path = target[..<q]
        let kept = target[target.index(after: q)...].split(separator: "&", omittingEmptySubsequences: true)
            .filter { !($0 == "ns" || $0.hasPrefix("ns=")) }
        return kept.isEmpty ? String(path) : path + "?" + kept.joined(separator: "&")
    }
}
