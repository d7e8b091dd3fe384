// Module Registry: what a registry allows, asked of the registry itself with the client's
// credentials; the cache calls it through `AccessPolicy`. May import: UV, TLS, HTTP, Cache.

import Glibc
import UV
import TLS
import HTTP
import Cache

/// A cached blob reaches a client through registry R only if R would give it to them, asked with
/// the client's `Authorization` (remembered `ttl` per registry, repository, credential and blob).
/// The registry the bytes came from answers a HEAD; any other registry must prove it holds the
/// blob (a few bytes at a random offset, compared with the cached ones), so knowing a digest gets
/// a registry nothing. A refusal goes back to the client as the registry said it.
package final class RegistryAccess: AccessPolicy {
    let pool: UpstreamPool
    let confirmations = AuthConfirmations()

    package init(pool: UpstreamPool) { self.pool = pool }

    package func confirm(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, blob: StoredBlob,
                         then: @escaping () -> Void) {
        let k = confirmations.key(url: url, authorization: ex.request.headers["Authorization"])
        if confirmations.isGranted(k, now: EventLoop.nowMs) { return then() }
        let grant = { [self] in
            confirmations.grant(k, now: EventLoop.nowMs)
            then()
        }
        if blob.origin == url.origin {
            askHead(ex, url: url, policy: policy, then: grant)
        } else if let length = blob.completeLength, length > 0 {
            proveHolds(ex, url: url, policy: policy, blob: blob, probe: PossessionProbe(length: length), then: grant)
        } else {
            askHead(ex, url: url, policy: policy, then: grant)
        }
    }

    private func askHead(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, then: @escaping () -> Void) {
        let fetch = OriginFetch(method: "HEAD", headers: ex.request.headers, url: url, pool: pool, policy: policy)
        fetch.followRedirects = false
        ex.onAbort = { fetch.cancel() }
        fetch.onHead = { h, _ in
            if h.status / 100 == 2 || h.status / 100 == 3 {
                fetch.onEnd = then
            } else {
                RegistryAccess.refuse(ex, fetch, h)
            }
        }
        fetch.onFail = { reason in ex.failUpstream(reason) }
        fetch.start()
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
                            probe: PossessionProbe, then: @escaping () -> Void) {
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
        fetch.onHead = { h, _ in
            guard let c = probe.collector(status: h.status) else {
                if h.status / 100 == 2 { return decide(nil) }
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
        fetch.onFail = { reason in
            if !decided {
                decided = true
                ex.failUpstream(reason)
            }
        }
        fetch.start()
    }
}
