import UV
import TLS
import HTTP
import Config

/// Every routing decision of the proxy port in one pure value, built from the config: which
/// CONNECTs are hijacked and with which upstream trust, what the `proxies` rules do to a proxied
/// request, and how a mirror request is routed (`direct`, `useProxies`, or blobs to the cache)
/// and verified.
public struct Router {
    public let proxies: ProxyRules
    let hijackHosts: [(pattern: Pattern, policy: TLSContexts.ClientPolicy)]
    let mirrorMode: MirrorMode
    let mirrorPolicy: TLSContexts.ClientPolicy
    /// `proxy.manifests.enable`: manifests by digest go to the cache like blobs, tags to the tag cache.
    public let manifests: Bool

    public enum MirrorMode: Equatable {
        /// `registryMirror.direct`: nothing is cached.
        case direct
        /// `registryMirror.useProxies`: the `proxies` rules decide.
        case useProxies
        /// The default: blob GETs go to the cache, everything else straight through.
        case blobsToCache
    }

    public init(_ config: DaemonConfig.Proxy) {
        proxies = ProxyRules(config.proxies)
        hijackHosts = (config.hijackHTTPS?.hosts ?? []).compactMap { h in
            Pattern(h.regx).map { ($0, TLSContexts.ClientPolicy(insecure: h.insecure, certs: h.certs)) }
        }
        let m = config.registryMirror
        mirrorMode = m.direct ? .direct : m.useProxies ? .useProxies : .blobsToCache
        mirrorPolicy = TLSContexts.ClientPolicy(insecure: m.insecure, certs: m.certs)
        manifests = config.manifests.enable
    }

    /// The upstream trust policy of the first `hijackHTTPS.hosts` rule matching `host:port`; nil
    /// means the CONNECT is tunnelled untouched.
    public func hijackPolicy(for authority: String) -> TLSContexts.ClientPolicy? {
        hijackRule(for: authority)?.policy
    }

    /// The first `hijackHTTPS.hosts` rule matching `host:port`: its pattern also decides which
    /// names (SNI) a leaf may be minted for inside that CONNECT.
    public func hijackRule(for authority: String) -> (pattern: Pattern, policy: TLSContexts.ClientPolicy)? {
        hijackHosts.first { $0.pattern.matches(authority) }
    }

    /// A proxied request (absolute URI, or inside a hijacked connection) through the `proxies` rules.
    /// A manifest by digest no rule names goes to the cache too (with `manifests`).
    public func forward(method: String, url: UpstreamURL) -> ProxyRules.Outcome {
        let o = proxies.route(method: method, url: url)
        if manifests, o.rule == nil, method == "GET", RequestTarget(url.target).manifestDigest != nil {
            return .init(url: url, decision: .cache, rule: "manifests/sha256:")
        }
        return o
    }

    /// Whether a request may go to the tag cache: a registry's tag, by a mirror that is not
    /// `direct`, or through the proxy unless a `direct` rule names it. `/v2/` only on the mirror.
    public func tagCacheApplies(mirror: Bool, url: UpstreamURL) -> Bool {
        guard manifests else { return false }
        if mirror { return mirrorMode != .direct }
        guard RequestTarget(url.target).manifestReference != nil else { return false }
        return !(proxies.match(url.description)?.direct ?? false)
    }

    public struct MirrorRoute: Equatable {
        public var outcome: ProxyRules.Outcome
        /// The registry's own trust settings while the request stays on it; a rule that sends it
        /// elsewhere gets the standard verification.
        public var policy: TLSContexts.ClientPolicy
    }

    /// A mirror request for origin-form `target` to the registry `base`: `ns` dropped, the base's
    /// path prefix kept.
    public func mirror(method: String, target: String, base: UpstreamURL) -> MirrorRoute {
        var url = base
        let prefix = base.target.hasSuffix("/") ? String(base.target.dropLast()) : base.target
        url.target = prefix + MirrorUpstream.stripNamespace(target)
        let outcome: ProxyRules.Outcome
        switch mirrorMode {
        case .direct:
            outcome = .init(url: url, decision: .direct, rule: nil)
        case .useProxies:
            outcome = proxies.route(method: method, url: url)
        case .blobsToCache:
            let d = ProxyRules.mirrorDefault(method: method, path: url.target, manifests: manifests)
            let rule = RequestTarget(url.target).manifestDigest != nil ? "manifests/sha256:" : "blobs/sha256:"
            outcome = .init(url: url, decision: d, rule: d == .cache ? rule : nil)
        }
        let sameRegistry = outcome.url.host == base.host && outcome.url.port == base.port
        return MirrorRoute(outcome: outcome, policy: sameRegistry ? mirrorPolicy : .standard)
    }
}
