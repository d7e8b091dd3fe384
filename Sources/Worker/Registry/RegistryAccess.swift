// Module Registry: what a registry allows, asked of the registry itself with the client's
// credentials; the cache calls it through `AccessPolicy`. May import: UV, TLS, HTTP, Cache.

import Glibc
import UV
import Metrics
import TLS
import HTTP
import Cache

/// A cached blob reaches a client through registry R only if R would give it to them, asked with
/// the client's `Authorization` (remembered `ttl` per registry, repository, credential and blob).
/// The registry the bytes came from answers a HEAD; any other registry must prove it holds the
/// blob (a few bytes at a random offset, compared with the cached ones), so knowing a digest gets
/// a registry nothing. A refusal goes back to the client as the registry said it.
///
/// With `outage` (`proxy.manifests`): the registry's answer is waited for `deadlineMs` at most, and
/// when it cannot answer (down, refusing, silent, 5xx, 429) the last grant this credential had in
/// this repository stands in for it, within `staleMs`; a credential never granted gets 401.
package final class RegistryAccess: AccessPolicy {
    let pool: UpstreamPool
    let confirmations = AuthConfirmations()
    package struct Outage {
        let health: RegistryHealth
        let grants: GrantStore
        let staleMs: UInt64
        let deadlineMs: UInt64

        package init(health: RegistryHealth, grants: GrantStore, staleMs: UInt64, deadlineMs: UInt64) {
            self.health = health
            self.grants = grants
            self.staleMs = staleMs
            self.deadlineMs = deadlineMs
        }
    }
    package var outage: Outage?

    package init(pool: UpstreamPool) { self.pool = pool }

    package func confirm(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, blob: StoredBlob,
                         then: @escaping () -> Void) {
        let auth = ex.request.headers["Authorization"]
        let k = confirmations.key(url: url, authorization: auth)
        if confirmations.isGranted(k, now: EventLoop.nowMs) { return then() }
        let repository = AuthConfirmations.repository(url.target)
        let grant = { [self] in
            confirmations.grant(k, now: EventLoop.nowMs)
            outage?.grants.grant(origin: url.origin, repository: repository, authorization: auth)
            outage?.health.succeeded(url.origin)
            then()
        }
        let unavailable = { [self] (why: String) in
            stale(ex, url: url, repository: repository, blob: blob, why: why, then: then)
        }
        if let o = outage, case .down(_, let reason) = o.health.check(url.origin) {
            ex.logFields.append(("failFast", .bool(true)))
            return unavailable("registry down (\(reason))")
        }
        if blob.origin == url.origin {
            askHead(ex, url: url, policy: policy, repository: repository, then: grant, unavailable: unavailable)
        } else if let length = blob.completeLength, length > 0 {
            proveHolds(ex, url: url, policy: policy, blob: blob, probe: PossessionProbe(length: length), then: grant,
                       unavailable: unavailable)
        } else {
            askHead(ex, url: url, policy: policy, repository: repository, then: grant, unavailable: unavailable)
        }
    }

    /// The registry could not say: the credential's last grant in the repository, within `staleMs`.
    private func stale(_ ex: Exchange, url: UpstreamURL, repository: String, blob: StoredBlob, why: String,
                       then: @escaping () -> Void) {
        guard let o = outage else { return ex.respond(status: 502, body: "upstream \(url.authority): \(why)\n") }
        let auth = ex.request.headers["Authorization"]
        guard let age = o.grants.age(origin: url.origin, repository: repository, authorization: auth), age < o.staleMs else {
            ex.logFields.append(("authorization", .string("registry unavailable, credential never granted")))
            var h = HTTPHeaders()
            if let c = o.grants.challenge(origin: url.origin, repository: repository) { h.add("WWW-Authenticate", c) }
            h.add("Content-Type", "application/json")
            return ex.respond(status: 401, headers: h, body: "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required; the registry is unavailable\"}]}\n")
        }
        Metrics.count(.staleBlobs)
        ex.logFields.append(("authorization", .string("stale grant, \(age / 1000) s old: \(why)")))
        Log.shared.warn("registry unavailable: serving a cached blob on an earlier grant",
                        ["registry": url.origin, "repository": repository, "taskId": blob.id, "error": why])
        then()
    }

    private func askHead(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, repository: String,
                         then: @escaping () -> Void, unavailable: @escaping (String) -> Void) {
        let fetch = OriginFetch(method: "HEAD", headers: ex.request.headers, url: url, pool: pool, policy: policy)
        fetch.followRedirects = false
        fetch.headDeadlineMs = deadline(url, repository: repository, ex)
        ex.onAbort = { fetch.cancel() }
        fetch.onHead = { [self] h, _ in
            if h.status / 100 == 2 || h.status / 100 == 3 {
                fetch.onEnd = then
            } else if let o = outage, RegistryHealth.isOutage(status: h.status) {
                fetch.cancel()
                o.health.failed(url.origin, reason: "answered \(h.status)", retryAfterMs: RegistryHealth.retryAfterMs(h.headers["Retry-After"]))
                unavailable("upstream answered \(h.status)")
            } else {
                refused(ex, url: url, repository: repository, h)
                RegistryAccess.refuse(ex, fetch, h)
            }
        }
        fetch.onFail = { [self] reason in
            guard let o = outage else { return ex.failUpstream(reason) }
            o.health.failed(url.origin, reason: reason.description)
            unavailable(reason.description)
        }
        fetch.start()
    }

    /// `upstreamTimeout` when an earlier grant could stand in for the registry's answer; else the
    /// registry is waited for as any request would.
    private func deadline(_ url: UpstreamURL, repository: String, _ ex: Exchange) -> UInt64? {
        guard let o = outage, let age = o.grants.age(origin: url.origin, repository: repository, authorization: ex.request.headers["Authorization"]),
              age < o.staleMs else { return nil }
        return o.deadlineMs
    }

    /// A 401 or 403: this credential has no grant to fall back on from now on; a 401's challenge is
    /// what an unknown client is told during an outage.
    private func refused(_ ex: Exchange, url: UpstreamURL, repository: String, _ h: HTTPResponseHead) {
        guard let o = outage, h.status == 401 || h.status == 403 else { return }
        o.grants.revoke(origin: url.origin, repository: repository, authorization: ex.request.headers["Authorization"])
        if h.status == 401, let c = h.headers["WWW-Authenticate"] { o.grants.rememberChallenge(origin: url.origin, repository: repository, c) }
    }

    /// The registry's own refusal (401 with its challenge, 403, 404) goes back to the client.
    private static func refuse(_ ex: Exchange, _ fetch: OriginFetch, _ h: HTTPResponseHead) {
        var out = HTTPResponseHead(status: h.status, reason: h.reason)
        let kept: Set<String> = ["www-authenticate", "content-type", "docker-distribution-api-version"]
        for f in h.headers where kept.contains(f.name.lowercased()) { out.headers.add(f.name, f.value) }
        ex.logFields.append(("authorization", .string("refused by origin: \(h.status)")))
        fetch.onBody = nil
        fetch.onEnd = {
            ex.sendHead(out, bodyLength: 0)
            ex.finish()
        }
    }

    /// GET of the probe's range with the client's credentials (redirects to storage followed); the
    /// bytes must equal the cached ones.
    private func proveHolds(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, blob: StoredBlob,
                            probe: PossessionProbe, then: @escaping () -> Void, unavailable: @escaping (String) -> Void) {
        var expected = [UInt8](repeating: 0, count: probe.count)
        do {
            let n = try expected.withUnsafeMutableBytes { try blob.read(offset: probe.offset, into: $0) }
            guard n == probe.count else { throw SystemError(op: "short read", path: nil, errno: EIO) }
        } catch {
            ex.failUpstream(.forbidden(url.authority, reason: "cannot read the cached bytes to compare: \(error)"))
            return
        }
        var h = ex.request.headers
        h.replace("Range", probe.rangeHeader)
        h.remove("If-None-Match")
        h.remove("If-Modified-Since")
        let fetch = OriginFetch(method: "GET", headers: h, url: url, pool: pool, policy: policy)
        fetch.headDeadlineMs = deadline(url, repository: AuthConfirmations.repository(url.target), ex)
        ex.onAbort = { fetch.cancel() }
        var collector: PossessionProbe.Collector?
        var decided = false
        let decide = { (got: [UInt8]?) in
            guard !decided else { return }
            decided = true
            if got == expected {
                ex.logFields.append(("authorization", .string("possession proven")))
                then()
            } else {
                Log.shared.warn("registry did not prove it holds the blob", ["upstream": url.authority, "taskId": blob.id])
                ex.logFields.append(("authorization", .string("possession not proven")))
                ex.respond(status: 403, body: "\(url.authority) did not prove it holds \(blob.digest ?? blob.id)\n")
            }
        }
        fetch.onHead = { [self] h, _ in
            guard let c = probe.collector(status: h.status) else {
                if h.status / 100 == 2 { return decide(nil) }
                if let o = outage, RegistryHealth.isOutage(status: h.status) {
                    decided = true
                    fetch.cancel()
                    o.health.failed(url.origin, reason: "answered \(h.status)", retryAfterMs: RegistryHealth.retryAfterMs(h.headers["Retry-After"]))
                    return unavailable("upstream answered \(h.status)")
                }
                return RegistryAccess.refuse(ex, fetch, h)
            }
            collector = c
        }
        fetch.onBody = { b in
            guard let c = collector, !decided else { return }
            if let got = c.take(b) {
                fetch.cancel()
                decide(got)
            }
        }
        fetch.onEnd = { if !decided { decide(nil) } }
        fetch.onFail = { [self] reason in
            if !decided {
                decided = true
                guard let o = outage else { return ex.failUpstream(reason) }
                o.health.failed(url.origin, reason: reason.description)
                unavailable(reason.description)
            }
        }
        fetch.start()
    }
}
