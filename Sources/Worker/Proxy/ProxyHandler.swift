// Module Proxy: routing on the proxy port (forward proxy, CONNECT tunnels, hijack, registry mirror)
// and the pure routing decisions behind it.
// May import: UV, TLS, HTTP, Config, Cache, Metrics.

import Foundation
import UV
import TLS
import HTTP
import Metrics
import Config
import Cache

/// Routes each request on the proxy port: CONNECT → tunnel, absolute URI → forward proxy,
/// origin-form → registry mirror. The rule decision is logged per request, ready for the cache.
public final class ProxyHandler {
    let config: DaemonConfig.Proxy
    let router: Router
    let whiteList: WhiteList
    package let pool: UpstreamPool
    /// Nil when the daemon runs without a cache (it could not be opened).
    package var cache: CacheService?
    let mirrorURL: UpstreamURL?

    public init(config: DaemonConfig.Proxy, destinations: DestinationGuard) {
        self.config = config
        router = Router(config)
        whiteList = WhiteList(config.whiteList)
        pool = UpstreamPool(destinations: destinations)
        mirrorURL = config.registryMirror.url.flatMap(UpstreamURL.init)
    }

    public func handle(_ ex: Exchange) {
        let target = ex.request.target
        // basicAuth guards every request form, the mirror's included.
        guard authorized(ex) else { return }
        if ex.request.method == "CONNECT" {
            guard let (host, port) = Tunnel.target(ex, target), allowed(ex, host: host, port: port) else { return }
            if HijackAuthority.shared != nil, let rule = router.hijackRule(for: target) {
                // A leaf is minted only for names the rule that accepted this CONNECT also accepts.
                Hijack.open(ex, authority: target, mintsFor: { rule.pattern.matches("\($0):\(port)") }) { [weak self] inner, host, port in
                    self?.hijacked(inner, host: host, port: port, policy: rule.policy)
                }
            } else {
                Tunnel.open(ex, authority: target, guard: pool.destinations)
            }
        } else if target.hasPrefix("/") {
            mirror(ex)
        } else if let url = UpstreamURL(target) {
            guard allowed(ex, host: url.host, port: url.port) else { return }
            forwardProxy(ex, url: url)
        } else {
            ex.respond(status: 400, body: "unsupported request target\n")
        }
    }

    /// `proxy.whiteList`: a target it does not list gets 403, before any connection.
    private func allowed(_ ex: Exchange, host: String, port: Int) -> Bool {
        if whiteList.allows(host: host, port: port) { return true }
        ex.logFields.append(("error", .string("not in whiteList")))
        ex.respond(status: 403, body: "\(HostPort.format(host, port)) is not in proxy.whiteList\n")
        return false
    }

    /// `proxy.basicAuth`: every request needs matching `Proxy-Authorization`, else 407.
    private func authorized(_ ex: Exchange) -> Bool {
        guard let (user, pass) = config.basicAuth else { return true }
        let expected = "Basic " + Data("\(user):\(pass)".utf8).base64EncodedString()
        if ex.request.headers["Proxy-Authorization"] == expected { return true }
        var h = HTTPHeaders()
        h.add("Proxy-Authenticate", "Basic realm=\"dfget\"")
        ex.respond(status: 407, headers: h, body: "proxy authentication required\n")
        return false
    }

    private func forwardProxy(_ ex: Exchange, url: UpstreamURL, mode: RequestMode = .proxy, policy: TLSContexts.ClientPolicy = .standard) {
        let outcome = router.forward(method: ex.request.method, url: url)
        ex.setMode(mode)
        log(ex, outcome.decision, rule: outcome.rule)
        dispatch(ex, url: outcome.url, decision: outcome.decision, policy: policy,
                 tags: router.tagCacheApplies(mirror: false, url: outcome.url))
    }

    /// Through the cache (blob GETs the rules send there, and HEADs of cached blobs), tags and
    /// `/v2/` through the tag cache (`tags`), else straight through.
    private func dispatch(_ ex: Exchange, url: UpstreamURL, decision: RouteDecision, policy: TLSContexts.ClientPolicy, tags: Bool) {
        let passThrough = { [pool] in Forwarder(exchange: ex, url: url, headers: ex.request.headers, pool: pool, policy: policy).start() }
        if tags, let manifests = cache?.manifests, manifests.handle(ex, url: url, policy: policy) {
            return
        } else if let cache, ex.request.method == "GET", decision == .cache {
            cache.get(ex, url: url, policy: policy, passThrough: passThrough)
        } else if let cache, ex.request.method == "HEAD", RequestTarget(url.target).blobDigest != nil
                    || (router.manifests && RequestTarget(url.target).manifestDigest != nil),
                  cache.head(ex, url: url, policy: policy) {
            return
        } else {
            passThrough()
        }
    }

    /// A request inside a hijacked TLS connection: `https://host/...` through the same rules.
    private func hijacked(_ ex: Exchange, host: String, port: Int, policy: TLSContexts.ClientPolicy) {
        let target = ex.request.target
        if target.hasPrefix("/") {
            forwardProxy(ex, url: UpstreamURL(scheme: "https", host: host, port: port, target: target), mode: .hijack, policy: policy)
        } else if let url = UpstreamURL(target), ex.request.method != "CONNECT" {
            forwardProxy(ex, url: url, mode: .hijack, policy: policy)
        } else {
            ex.respond(status: 400, body: "unsupported request target inside a hijacked connection\n")
        }
    }

    private func mirror(_ ex: Exchange) {
        ex.setMode(.mirror)
        let base: UpstreamURL
        switch MirrorUpstream.choose(dynamic: config.registryMirror.dynamic, header: ex.request.headers["X-Dragonfly-Registry"],
                                     target: ex.request.target, configured: mirrorURL) {
        case .upstream(let u, let source):
            base = u
            ex.logFields.append(("upstreamFrom", .string(source)))
        case .badHeader(let value):
            ex.respond(status: 400, body: "malformed X-Dragonfly-Registry header: \(value)\n")
            return
        case .disabled:
            ex.respond(status: 404, body: "registry mirror feature is disabled\n")
            return
        }
        // A pull-only registry mirror: nothing else is ever sent upstream.
        switch MirrorUpstream.admit(method: ex.request.method, target: ex.request.target) {
        case .pull: break
        case .methodNotAllowed:
            var h = HTTPHeaders()
            h.add("Allow", "GET, HEAD")
            ex.respond(status: 405, headers: h, body: "the registry mirror is pull-only: GET and HEAD\n")
            return
        case .notRegistryAPI:
            ex.respond(status: 404, body: "the registry mirror serves /v2/ only\n")
            return
        }
        if base != mirrorURL, !allowed(ex, host: base.host, port: base.port) { return }
        let route = router.mirror(method: ex.request.method, target: ex.request.target, base: base)
        log(ex, route.outcome.decision, rule: route.outcome.rule)
        let sameRegistry = route.outcome.url.host == base.host && route.outcome.url.port == base.port
        dispatch(ex, url: route.outcome.url, decision: route.outcome.decision, policy: route.policy,
                 tags: sameRegistry && router.tagCacheApplies(mirror: true, url: route.outcome.url))
    }

    private func log(_ ex: Exchange, _ decision: RouteDecision, rule: String?) {
        ex.logFields.append(("decision", .string(decision.name)))
        if let rule { ex.logFields.append(("rule", .string(rule))) }
    }

    public func drain() { pool.closeAll() }
}
