import Foundation
import UV
import TLS
import HTTP
import Metrics
import Config

/// Tags and the registry's `/v2/` answer, kept so that pulls go on while the registry is down or
/// rate-limiting (manifests by digest go through the piece cache like blobs: `TaskKey.forManifest`).
///
/// A tag (registry + repository + tag + `Accept` set → digest, media type, length) validated within
/// `revalidateAfter` is answered from the cache, to a credential the registry granted something in
/// that repository within the same time. An older one is asked again with a HEAD
/// (`Docker-Content-Digest`), and fetched with a GET only when its digest changed. One request per
/// tag goes upstream at a time, across all workers (`TagStore.lock`); the others wait for its
/// record. When the registry fails (no connection, no head within `upstreamTimeout`, a 5xx or a
/// 429) or is known down (`RegistryHealth`), a tag validated within `staleIfError` is served with
/// `Warning: 110` to a credential granted within `staleIfError`; any other credential gets 401.
package final class ManifestService {
    let cache: PieceCache
    let pool: UpstreamPool
    let settings: DaemonConfig.Manifests
    /// `proxy.confirmAuthorization`: off, a cached tag goes to anyone who asks.
    let confirm: Bool
    package let health: RegistryHealth
    package let grants: GrantStore
    let tags: TagStore
    /// With peers: a request to the member that answers for the cluster about a tag (rendezvous
    /// on registry + repository + tag), with the client's method and headers; nil when this host
    /// is that member. Its answer stands for the registry's: it applied the same rules.
    package var tagOwner: ((_ key: String, _ method: String, _ url: UpstreamURL, _ headers: HTTPHeaders) -> OriginFetch?)?
    /// The largest manifest kept (distribution refuses to store larger ones).
    static let maxManifest = 4 << 20
    static let maxErrorBody = 64 << 10
    /// How long a request waits for another's upstream answer about the same tag before asking itself.
    static let waitMs: UInt64 = 30_000
    static let waitStepMs: UInt64 = 20

    var revalidateMs: UInt64 { UInt64(settings.revalidateAfter * 1000) }
    var staleMs: UInt64 { UInt64(settings.staleIfError * 1000) }
    var deadlineMs: UInt64 { UInt64(settings.upstreamTimeout * 1000) }

    package init(cache: PieceCache, pool: UpstreamPool, proxy: DaemonConfig.Proxy) {
        self.cache = cache
        self.pool = pool
        settings = proxy.manifests
        confirm = proxy.confirmAuthorization
        health = RegistryHealth(root: cache.root, failFastMs: UInt64(proxy.manifests.failFast * 1000),
                                probeWindowMs: UInt64(proxy.manifests.upstreamTimeout * 1000) + 1000)
        grants = GrantStore(root: cache.root)
        tags = TagStore(root: cache.root)
    }

    /// A GET or HEAD of a tag or of `/v2/`; false when `url` is neither (the caller routes it).
    package func handle(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy) -> Bool {
        guard ex.method == "GET" || ex.method == "HEAD" else { return false }
        let t = RequestTarget(url.target)
        if t.path == "/v2/" || t.path == "/v2" {
            ex.note("upstream", .string(url.authority))
            ping(ex, url: url, policy: policy)
            return true
        }
        guard let ref = t.manifestReference, !ref.contains(":"), let repo = t.repository else { return false }
        ex.note("upstream", .string(url.authority))
        tag(ex, url: url, policy: policy, ref: TagRef(authority: url.authority, repository: repo, tag: ref,
                                                      accept: ex.headers.all("Accept").joined(separator: ",")), waited: false)
        return true
    }

    // MARK: Tags

    private func tag(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy, ref: TagRef, waited: Bool) {
        guard !ex.isFinished else { return }
        let auth = ex.headers["Authorization"]
        let record = tags.read(ref)
        let now = SmallFiles.wallMs()
        if let r = record, now < r.validatedMs + revalidateMs, granted(url, ref, auth, within: revalidateMs, now: now),
           let answer = cached(r, ex) {
            Metrics.count(.manifestHits)
            return serve(ex, answer, how: "cache")
        }
        if case .down(let until, let reason) = health.check(url.origin, now: now) {
            ex.note("failFast", .bool(true))
            return stale(ex, url: url, ref: ref, record: record, why: "registry down (\(reason))", upstream: nil,
                         retryAfterMs: until > now ? until - now : nil)
        }
        guard let flight = tags.lock(ref) else {
            if waited { return ask(ex, url: url, policy: policy, ref: ref, record: record, flight: nil) }
            return wait(ex, url: url, policy: policy, ref: ref)
        }
        ask(ex, url: url, policy: policy, ref: ref, record: record, flight: flight)
    }

    /// Another request (of this worker or another) is asking the registry about this tag: its
    /// answer is awaited (the lock is let go), then this request decides again.
    private func wait(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy, ref: TagRef) {
        let t = LoopTimer()
        let started = EventLoop.nowMs
        ex.onAbort = { t.close() }
        t.start(ms: ManifestService.waitStepMs, repeatMs: ManifestService.waitStepMs) { [self] in
            let free = tags.lock(ref)
            guard free != nil || EventLoop.nowMs >= started + ManifestService.waitMs else { return }
            free?.release()
            t.close()
            ex.note("waitedMs", .int(Int(EventLoop.nowMs - started)))
            tag(ex, url: url, policy: policy, ref: ref, waited: true)
        }
    }

    /// Asks the registry: a HEAD when the tag's content is here to serve if its digest holds (and
    /// for a client's HEAD), else a GET.
    private func ask(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy, ref: TagRef, record: TagRecord?,
                     flight: TagFlight?, viaOwner: Bool = true) {
        let have = record.flatMap { cached($0, ex) }
        let method = have != nil || ex.method == "HEAD" ? "HEAD" : "GET"
        // The registry is waited for `upstreamTimeout` only when the cache has an answer to give
        // instead; with none, a slow registry is waited for as any request would.
        let fallback = record.map { SmallFiles.wallMs() < $0.validatedMs + staleMs } ?? false
        let deadline = fallback && have != nil ? deadlineMs : nil
        let limit = method == "GET" ? ManifestService.maxManifest : ManifestService.maxErrorBody
        // A member's own request for its client is never passed on again.
        let owner = viaOwner && !(ex is ForwardedTag)
            ? tagOwner?("\(ref.authority)|\(ref.repository)|\(ref.tag)", method, url, ex.headers) : nil
        let done = { [self] (r: Result<SmallFetch.Answer, SmallFetch.Failure>) in
            ex.onAbort = nil
            if owner != nil {
                if case .failure(.upstream(let e)) = r {
                    ex.note("tagOwner", .string("did not answer: \(e.detail)"))
                    return ask(ex, url: url, policy: policy, ref: ref, record: record, flight: flight, viaOwner: false)
                }
                if case .success(let a) = r, a.head.status != 200 || a.head.headers["Warning"]?.hasPrefix("110") == true {
                    // Its refusal, its stale answer, or the registry's failure it relays: passed
                    // on, and nothing recorded here (no grant, no revocation, no record).
                    flight?.release()
                    ex.note("tagOwner", .string(a.head.status == 200 ? "stale" : "answered \(a.head.status)"))
                    if RegistryHealth.isOutage(status: a.head.status), let r = record, SmallFiles.wallMs() < r.validatedMs + staleMs {
                        return stale(ex, url: url, ref: ref, record: record, why: "upstream answered \(a.head.status) (via its owner)",
                                     upstream: a, retryAfterMs: RegistryHealth.retryAfterMs(a.head.headers["Retry-After"]))
                    }
                    return relay(ex, a, how: "owner")
                }
                ex.note("tagOwner", .string("answered"))
            }
            switch r {
            case .failure(.upstream(let e)):
                flight?.release()
                health.failed(url.origin, reason: e.description)
                stale(ex, url: url, ref: ref, record: record, why: e.description, upstream: nil, error: e, retryAfterMs: nil)
            case .failure(.tooLarge(let n)):
                flight?.release()
                ex.note("error", .string("manifest of \(n) bytes"))
                ex.respond(status: 502, headers: HTTPHeaders(), body: "upstream \(url.authority): manifest larger than \(ManifestService.maxManifest) bytes\n")
            case .success(let a):
                answered(ex, url: url, policy: policy, ref: ref, record: record, have: have, method: method, a, flight: flight)
            }
        }
        let f = owner.map { SmallFetch(fetch: $0, deadlineMs: deadline.map { $0 + 2000 }, limit: limit, done: done) }
            ?? SmallFetch(method: method, headers: ex.headers, url: url, pool: pool, policy: policy, deadlineMs: deadline, limit: limit,
                          done: done)
        ex.onAbort = {
            f.cancel()
            flight?.release()
        }
        f.start()
    }

    private func answered(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy, ref: TagRef, record: TagRecord?,
                          have: Answer?, method: String, _ a: SmallFetch.Answer, flight: TagFlight?) {
        let auth = ex.headers["Authorization"]
        let status = a.head.status
        if RegistryHealth.isOutage(status: status) {
            flight?.release()
            let retry = RegistryHealth.retryAfterMs(a.head.headers["Retry-After"])
            health.failed(url.origin, reason: "answered \(status)", retryAfterMs: retry)
            return stale(ex, url: url, ref: ref, record: record, why: "upstream answered \(status)", upstream: a, retryAfterMs: retry)
        }
        health.succeeded(url.origin)
        guard status == 200 else {
            flight?.release()
            if status == 401 || status == 403 {
                grants.revoke(origin: url.origin, repository: ref.repository, authorization: auth)
                if status == 401, let c = a.head.headers["WWW-Authenticate"] {
                    grants.rememberChallenge(origin: url.origin, repository: ref.repository, c)
                }
            }
            return relay(ex, a)
        }
        grants.grant(origin: url.origin, repository: ref.repository, authorization: auth)
        let now = SmallFiles.wallMs()
        let digest = a.head.headers["Docker-Content-Digest"]
        if method == "HEAD" {
            if var r = record, let have, digest == r.digest {
                r.validatedMs = now
                tags.write(ref, r)
                flight?.release()
                Metrics.count(.manifestRevalidated)
                return serve(ex, Answer(record: r, body: have.body), how: "revalidated")
            }
            if ex.method == "GET" {
                // The digest moved: the new manifest, by a GET, under the same lock.
                return ask(ex, url: url, policy: policy, ref: ref, record: nil, flight: flight)
            }
            // A client's HEAD of a tag not seen before (or changed): the head is the record.
            if let digest, digest.hasPrefix("sha256:"),
               let n = (a.head.headers["X-Dragonfly-Length"] ?? a.head.headers["Content-Length"]).flatMap(Int64.init) {
                tags.write(ref, newRecord(ref, digest: digest, head: a.head, length: n, now: now))
            }
            flight?.release()
            return relay(ex, a, how: "upstream")
        }
        // A GET: the manifest itself.
        let hex = SHA256Digest.hex(a.body)
        guard digest == nil || digest == "sha256:" + hex else {
            flight?.release()
            Log.shared.warn("manifest does not match its Docker-Content-Digest: not cached",
                            ["url": url.description, "header": digest ?? "", "actual": "sha256:" + hex])
            return relay(ex, a, how: "upstream")
        }
        store(hex, a.body, contentType: a.head.headers["Content-Type"] ?? "", origin: url.origin)
        let r = newRecord(ref, digest: "sha256:" + hex, head: a.head, length: Int64(a.body.count), now: now)
        tags.write(ref, r)
        flight?.release()
        Metrics.count(.manifestFetched)
        serve(ex, Answer(record: r, body: a.body), how: "fetched")
    }

    private func newRecord(_ ref: TagRef, digest: String, head: HTTPResponseHead, length: Int64, now: UInt64) -> TagRecord {
        TagRecord(digest: digest, contentType: head.headers["Content-Type"] ?? "application/octet-stream", length: length,
                  validatedMs: now, registry: ref.authority, repository: ref.repository, tag: ref.tag, accept: ref.accept)
    }

    /// The registry cannot answer: a tag validated within `staleIfError` goes to a credential
    /// granted within it; a credential never granted gets 401; without a record, the registry's
    /// own answer (or a 502) goes back, with `Retry-After` when it is known.
    private func stale(_ ex: TagClient, url: UpstreamURL, ref: TagRef, record: TagRecord?, why: String, upstream: SmallFetch.Answer?,
                       error: UpstreamError? = nil, retryAfterMs: UInt64?) {
        let now = SmallFiles.wallMs()
        let auth = ex.headers["Authorization"]
        if let r = record, now < r.validatedMs + staleMs, let answer = cached(r, ex) {
            guard granted(url, ref, auth, within: staleMs, now: now) else {
                ex.note("stale", .string("refused: credential never granted"))
                return unauthorized(ex, url: url, repository: ref.repository, why: why)
            }
            Metrics.count(.staleTags)
            Log.shared.warn("registry unavailable: serving a stale tag", ["registry": ref.authority, "repository": ref.repository,
                                                                          "tag": ref.tag, "ageS": Int((now - r.validatedMs) / 1000),
                                                                          "error": why])
            return serve(ex, answer, how: "stale", stale: true)
        }
        ManifestService.fail(ex, url: url, why: why, upstream: upstream, error: error, retryAfterMs: retryAfterMs)
    }

    /// No cached answer: the registry's own (a 5xx, a 429), or 502, or 503 while it is known down.
    static func fail(_ ex: TagClient, url: UpstreamURL, why: String, upstream: SmallFetch.Answer?, error: UpstreamError?,
                     retryAfterMs: UInt64?) {
        if let upstream { return relay(ex, upstream) }
        if let error { return ex.failUpstream(error) }
        var h = HTTPHeaders()
        if let ms = retryAfterMs { h.add("Retry-After", String(max(1, (ms + 999) / 1000))) }
        ex.note("error", .string(why))
        ex.respond(status: 503, headers: h, body: "upstream \(url.authority): \(why); nothing cached to answer with\n")
    }

    private func unauthorized(_ ex: TagClient, url: UpstreamURL, repository: String, why: String) {
        var h = HTTPHeaders()
        if let c = grants.challenge(origin: url.origin, repository: repository) { h.add("WWW-Authenticate", c) }
        h.add("Content-Type", "application/json")
        h.add("Docker-Distribution-API-Version", "registry/2.0")
        ex.respond(status: 401, headers: h, body: "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required; the registry is unavailable (\(ManifestService.jsonSafe(why)))\"}]}\n")
    }

    static func jsonSafe(_ s: String) -> String {
        String(s.unicodeScalars.filter { $0.value >= 0x20 && $0 != "\"" && $0 != "\\" }.map(Character.init))
    }

    private func granted(_ url: UpstreamURL, _ ref: TagRef, _ auth: String?, within: UInt64, now: UInt64) -> Bool {
        guard confirm else { return true }
        guard let age = grants.age(origin: url.origin, repository: ref.repository, authorization: auth, now: now) else { return false }
        return age < within
    }

    // MARK: Answers

    struct Answer {
        var record: TagRecord
        /// The manifest's bytes (nil for a HEAD).
        var body: [UInt8]?
    }

    /// What the cache can answer for `r`: the head for a HEAD; for a GET, the manifest's bytes too
    /// (verified when they were stored), or nil when they are not here.
    private func cached(_ r: TagRecord, _ ex: TagClient) -> Answer? {
        if ex.method == "HEAD" { return Answer(record: r, body: nil) }
        guard r.digest.hasPrefix("sha256:"), let task = cache.lookup(TaskKey.forManifest(String(r.digest.dropFirst(7)))),
              task.isComplete, task.contentLength == r.length, let body = ManifestService.read(task) else { return nil }
        return Answer(record: r, body: body)
    }

    static func read(_ task: CacheTask) -> [UInt8]? {
        guard let n = task.contentLength, n <= Int64(maxManifest) else { return nil }
        if let b = task.smallBody() { return b }
        var b = [UInt8](repeating: 0, count: Int(n))
        guard (try? b.withUnsafeMutableBytes { try task.read(offset: 0, into: $0) }) == Int(n) else { return nil }
        return b
    }

    private func serve(_ ex: TagClient, _ a: Answer, how: String, stale: Bool = false) {
        var h = HTTPResponseHead(status: 200)
        h.headers.add("Content-Type", a.record.contentType)
        h.headers.add("Docker-Content-Digest", a.record.digest)
        h.headers.add("Docker-Distribution-API-Version", "registry/2.0")
        h.headers.add("ETag", "\"\(a.record.digest)\"")
        h.headers.add("Content-Length", String(a.record.length))
        if stale { h.headers.add("Warning", "110 dfget \"Response is Stale\"") }
        ex.note("tag", .string(how))
        ex.note("digest", .string(a.record.digest))
        if how != "fetched" { ex.markCached() }
        ex.sendHead(h, bodyLength: UInt64(a.record.length))
        if let b = a.body { ex.sendBody(b) }
        ex.finish()
    }

    private func relay(_ ex: TagClient, _ a: SmallFetch.Answer, how: String? = nil) { ManifestService.relay(ex, a, how: how) }

    static func relay(_ ex: TagClient, _ a: SmallFetch.Answer, how: String? = nil) {
        var h = a.head
        HopByHop.strip(&h.headers)
        if let how { ex.note("tag", .string(how)) }
        // A member's answer for a HEAD carries the length apart (its exchange was a POST).
        if let n = h.headers["X-Dragonfly-Length"] { h.headers.replace("Content-Length", n) }
        h.headers.removeAll { $0.lowercased().hasPrefix("x-dragonfly-") }
        ex.sendHead(h, bodyLength: ex.method == "HEAD" ? h.headers["Content-Length"].flatMap(UInt64.init) ?? 0 : UInt64(a.body.count))
        ex.sendBody(a.body)
        ex.finish()
    }

    /// The manifest's bytes into the piece cache, under its digest (already checked), unless there.
    private func store(_ hex: String, _ body: [UInt8], contentType: String, origin: String) {
        guard let task = try? cache.open(TaskKey.forManifest(hex)), !task.isComplete,
              (try? task.claim(pieceSize: cache.pieceSize, origin: origin)) == true else { return }
        do {
            let n = Int64(body.count)
            try task.describe(contentLength: n, contentType: contentType, digestHeader: "sha256:" + hex, origin: origin,
                              pieceSize: PieceCache.pieceSize(base: cache.pieceSize, length: n))
            try body.withUnsafeBytes { b in
                for k in 0..<task.pieceCount {
                    let r = task.pieceRange(k)
                    try task.storePiece(k, UnsafeRawBufferPointer(rebasing: b[Int(r.lowerBound)..<Int(r.upperBound)]))
                }
            }
            if try !task.finish() { task.abandon() }
        } catch {
            Log.shared.warn("cannot keep a manifest", ["digest": "sha256:" + hex, "error": "\(error)"])
            task.abandon()
        }
    }

    // MARK: /v2/

    /// The registry's `/v2/` answer is passed on and remembered (one for anonymous clients, one
    /// for clients with a credential); while the registry is down the remembered one is given.
    private func ping(_ ex: TagClient, url: UpstreamURL, policy: TLSContexts.ClientPolicy) {
        let path = "\(tags.dir)/ping-\(SHA256Digest.hex(Array("\(url.origin)|\(ex.headers["Authorization"] == nil)".utf8)))"
        let remembered = { () -> Bool in
            guard let b = SmallFiles.read(path), let p = try? JSONDecoder().decode(Ping.self, from: Data(b)) else { return false }
            var h = HTTPHeaders()
            for (n, v) in zip(p.names, p.values) { h.add(n, v) }
            h.add("Warning", "110 dfget \"Response is Stale\"")
            ex.note("source", .string("cache"))
            ex.respond(status: p.status, headers: h, body: p.body)
            return true
        }
        if case .down(let until, let reason) = health.check(url.origin) {
            if remembered() { return }
            let now = SmallFiles.wallMs()
            return ManifestService.fail(ex, url: url, why: "registry down (\(reason))", upstream: nil, error: nil,
                                        retryAfterMs: until > now ? until - now : nil)
        }
        let f = SmallFetch(method: ex.method, headers: ex.headers, url: url, pool: pool, policy: policy,
                           deadlineMs: access(path, F_OK) == 0 ? deadlineMs : nil, limit: ManifestService.maxErrorBody) { [self] r in
            ex.onAbort = nil
            switch r {
            case .success(let a) where !RegistryHealth.isOutage(status: a.head.status):
                health.succeeded(url.origin)
                if a.head.status == 200 || a.head.status == 401 {
                    let kept = a.head.headers.filter { ["www-authenticate", "docker-distribution-api-version", "content-type"].contains($0.name.lowercased()) }
                    let p = Ping(status: a.head.status, names: kept.map(\.name), values: kept.map(\.value),
                                 body: String(decoding: a.body.prefix(1024), as: UTF8.self))
                    if let d = try? JSONEncoder().encode(p) { SmallFiles.replace(path, Array(d)) }
                }
                relay(ex, a)
            case .success(let a):
                let retry = RegistryHealth.retryAfterMs(a.head.headers["Retry-After"])
                health.failed(url.origin, reason: "answered \(a.head.status)", retryAfterMs: retry)
                if !remembered() { relay(ex, a) }
            case .failure(.upstream(let e)):
                health.failed(url.origin, reason: e.description)
                if !remembered() { ManifestService.fail(ex, url: url, why: e.description, upstream: nil, error: e, retryAfterMs: nil) }
            case .failure(.tooLarge):
                ex.respond(status: 502, headers: HTTPHeaders(), body: "upstream \(url.authority): /v2/ answer too large\n")
            }
        }
        ex.onAbort = { f.cancel() }
        f.start()
    }

    struct Ping: Codable {
        var status: Int
        var names: [String]
        var values: [String]
        var body: String
    }
}
