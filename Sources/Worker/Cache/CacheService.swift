import Foundation
import UV
import TLS
import HTTP
import Metrics
import Config

/// The worker's entry to the piece cache for requests the rules send there: one origin download per
/// task across all workers, every client served from the pieces as they land.
/// Where a claimed task's bytes can come from besides the origin: the peers.
package protocol TaskSource: AnyObject {
    /// Fills `task` (claimed by this worker); true when the peers took it. `origin` starts the
    /// download from the origin instead, when this host owns the task or no peer can help;
    /// `originRanges` makes a GET of a range of it, for pieces the peers could not bring.
    @discardableResult
    func fill(_ task: CacheTask, url: UpstreamURL, headers: HTTPHeaders, originRanges: @escaping (String) -> OriginFetch,
              origin: @escaping () -> Void) -> Bool
}

package final class CacheService {
    /// Tasks this worker has logged its `register peer task result` line for.
    private var registered = Set<String>()
    static let maxRegistered = 100_000
    package let cache: PieceCache
    /// The peers, when the daemon has members; nil: every task comes from the origin.
    package var peers: TaskSource?
    let pool: UpstreamPool
    let config: DaemonConfig.Proxy
    /// Who may have a stored blob (the registry layer); nil: anyone who asks.
    package var access: AccessPolicy?
    /// Tags, `/v2/` and the registries' health (`proxy.manifests`); nil when it is off.
    package var manifests: ManifestService?
    let peerID: String

    package init(cache: PieceCache, pool: UpstreamPool, config: DaemonConfig.Proxy, peerID: String) {
        self.cache = cache
        self.pool = pool
        self.config = config
        self.peerID = peerID
    }

    func key(_ ex: Exchange, _ url: UpstreamURL) -> TaskKey {
        let filter = TaskKey.filterNames(ex.request.headers["X-Dragonfly-Filter"] ?? config.defaultFilter)
        return TaskKey.forURL(url, filter: filter, tag: ex.request.headers["X-Dragonfly-Tag"] ?? config.defaultTag)
    }

    /// A GET through the cache. `passThrough` serves the request uncached when the cache cannot.
    package func get(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, passThrough: @escaping () -> Void) {
        let range = ByteRange.parse(ex.request.headers["Range"])
        if range == .multiple {
            ex.respond(status: 416, body: "several ranges are not served\n")
            return
        }
        let k = key(ex, url)
        let task: CacheTask
        do { task = try cache.open(k) } catch {
            Log.shared.error("cache unavailable: passing through", ["taskId": k.id, "error": "\(error)"])
            passThrough()
            return
        }
        ex.logFields.append(("taskId", .string(k.id)))
        ex.logFields.append(("upstream", .string(url.authority)))
        // The seed's line, once per task per worker (the access line tells every request).
        if registered.insert(k.id).inserted {
            if registered.count > CacheService.maxRegistered { registered = [k.id] }
            Log.shared.info("register peer task result:true[200] for taskId:\(k.id),peerIp:\(ex.peer),securityDomain:,idc:,scheduler:local",
                            ["taskId": k.id, "peerId": peerID, "url": url.description])
        }
        let origin = url.origin
        // A registry known down is not waited for: a miss that only it could fill fails at once.
        if !task.isComplete, peers == nil, let health = manifests?.health, case .down(let until, let reason) = health.check(origin) {
            let now = SmallFiles.wallMs()
            ex.logFields.append(("failFast", .bool(true)))
            return ManifestService.fail(ex, url: url, why: "registry down (\(reason))", upstream: nil, error: nil,
                                        retryAfterMs: until > now ? until - now : nil)
        }
        let claimed: Bool
        do { claimed = task.isComplete ? false : try task.claim(pieceSize: cache.pieceSize, origin: origin) } catch {
            Log.shared.error("cannot start caching: passing through", ["taskId": k.id, "error": "\(error)"])
            passThrough()
            return
        }
        Metrics.count(task.isComplete ? .cacheHits : .cacheMisses)
        if task.isComplete {
            ex.source = .cache
            confirm(ex, url: url, policy: policy, task: task) { [self] in
                serve(ex, task, range, source: "cache", url: url, policy: policy, passThrough: passThrough)
            }
        } else if claimed {
            // This request's own credentials fetch the blob: the origin's answer is the check.
            let fromPeers = download(task, url: url, headers: ex.request.headers, policy: policy)
            if fromPeers { ex.source = .peer }
            serve(ex, task, range, source: fromPeers ? "peers" : "origin", url: url, policy: policy, passThrough: passThrough)
        } else if !task.origin.isEmpty && task.origin != origin {
            // Another registry's download in progress: no bytes to prove possession with yet, so
            // this client gets its own registry's answer (verified on the way). An origin not yet
            // recorded (the claimer is between its lock and its first write) is joined, with a HEAD.
            ex.logFields.append(("source", .string("origin")))
            passThrough()
        } else {
            confirm(ex, url: url, policy: policy, task: task) { [self] in
                serve(ex, task, range, source: "joined", url: url, policy: policy, passThrough: passThrough)
            }
        }
    }

    /// A HEAD answered from the metadata of a complete task; false when the cache has nothing to say.
    package func head(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy) -> Bool {
        guard let task = cache.lookup(key(ex, url)), task.isComplete, let length = task.contentLength else { return false }
        confirm(ex, url: url, policy: policy, task: task) { [self] in
            var h = task.responseHead(peerID: peerID)
            h.headers.add("Content-Length", String(length))
            ex.logFields.append(("source", .string("cache")))
            Metrics.count(.cacheHits)
            ex.source = .cache
            ex.sendHead(h, bodyLength: UInt64(length))
            ex.finish()
        }
        return true
    }

    private func serve(_ ex: Exchange, _ task: CacheTask, _ range: ByteRange, source: String, url: UpstreamURL,
                       policy: TLSContexts.ClientPolicy, passThrough: @escaping () -> Void) {
        guard !ex.isFinished else { return }
        ex.logFields.append(("source", .string(source)))
        let reader = CacheReader(exchange: ex, task: task, range: range, source: source, peerID: peerID)
        reader.onFallback = passThrough
        reader.onTakeover = { [self] in download(task, url: url, headers: ex.request.headers, policy: policy) }
        reader.onContinue = { [self] from, to in
            continueFromOrigin(ex, url: url, policy: policy, task: task, whole: range == .whole, from: from, to: to)
        }
        reader.start()
    }

    /// The rest of a response whose task stopped being cached: bytes `[from, to)` by a range request.
    /// A whole blob is still verified: the part already sent is hashed from the task's file (still
    /// open though unlinked) on the thread pool, the rest as it arrives, and the last byte waits
    /// for the digest.
    private func continueFromOrigin(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, task: CacheTask,
                                    whole: Bool, from: Int64, to: Int64) {
        guard whole, let expected = task.key.expectedDigest else {
            return fetchRest(ex, url: url, policy: policy, from: from, to: to, verifier: nil)
        }
        // The part already sent is hashed from the file, as far as it is there: a reader in the
        // downloading worker may have sent bytes from the download's buffer that never reached
        // the disk (caching stopped). Those come again from the origin, hashed but not re-sent.
        let start = min(from, Int64(task.readableBytes(from: 0, max: Int(from))))
        var prefix: Result<SHA256Digest, Error> = .failure(SystemError(op: "hash", path: nil, errno: EINVAL))
        var gone = false
        ex.onAbort = { gone = true }
        ThreadPool.run({ prefix = Result { try task.hashPrefix(start) } }, then: { [self] in
            guard !gone else { return }
            switch prefix {
            case .failure(let error):
                ex.abort(reason: "cannot re-read the part already sent: \(error)")
            case .success(let h):
                let verifier = BlobVerifier(digest: String(expected.dropFirst("sha256:".count)), hashedSoFar: h, skip: Int(from - start))
                fetchRest(ex, url: url, policy: policy, from: start, to: to, verifier: verifier)
            }
        })
    }

    /// Bytes `[from, to)` of the blob from the origin by a range request, to finish a response whose
    /// head is sent. A refused or broken connection, or a 429/5xx, is asked again from where the
    /// bytes stopped, with backoff (`ContinuationRetry`); past it, or on any other answer, the client
    /// gets a reset, never a clean short body.
    private func fetchRest(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, from start: Int64, to: Int64,
                           verifier: BlobVerifier?, retry: ContinuationRetry = ContinuationRetry()) {
        guard !ex.isFinished else { return }
        var retry = retry
        var h = ex.request.headers
        h.replace("Range", "bytes=\(start)-\(to - 1)")
        let fetch = OriginFetch(method: "GET", headers: h, url: url, pool: pool, policy: policy)
        var received: Int64 = 0
        let again = { [self] (why: String, retryAfterMs: UInt64?) in
            guard let wait = retry.next(retryAfterMs: retryAfterMs) else {
                return ex.abort(reason: "\(why) (after \(retry.attempts) retries)")
            }
            Log.shared.warn("origin failed the rest of a response: asking again", ["url": url.description, "error": why,
                                                                                   "from": start + received, "waitMs": wait])
            let t = LoopTimer()
            ex.onAbort = { t.close() }
            t.start(ms: wait) { [self] in
                t.close()
                fetchRest(ex, url: url, policy: policy, from: start + received, to: to, verifier: verifier, retry: retry)
            }
        }
        ex.onAbort = { fetch.cancel() }
        fetch.onHead = { head, framing in
            guard head.status == 206, framing == .length(UInt64(to - start)) else {
                fetch.cancel()
                let why = "origin answered \(head.status) to the range that would finish the response"
                if ContinuationRetry.retryable(status: head.status) {
                    return again(why, head.headers["Retry-After"].flatMap(UInt64.init).map { $0 * 1000 })
                }
                ex.abort(reason: why)
                return
            }
            verifier?.arm(status: head.status, framing: framing)
        }
        ex.relayBody(from: fetch, verifier: verifier, received: { received += Int64($0) })
        fetch.onFail = { error in again(error.description, nil) }
        fetch.start()
    }

    /// Starts filling a claimed task; true when the peers took it.
    @discardableResult
    private func download(_ task: CacheTask, url: UpstreamURL, headers: HTTPHeaders, policy: TLSContexts.ClientPolicy) -> Bool {
        let fromOrigin = { [self] in downloadFromOrigin(task, url: url, headers: headers, policy: policy) }
        // Blobs are shared with the peers (their digest makes every copy checkable); other URLs stay local.
        if let peers, task.key.expectedDigest != nil, !task.key.isManifest {
            let ranges = { [self] (range: String) in originDownload(url: url, headers: headers, policy: policy, range: range) }
            return peers.fill(task, url: url, headers: headers, originRanges: ranges, origin: fromOrigin)
        }
        fromOrigin()
        return false
    }

    /// The whole blob from the origin into the claimed task (no range, no conditions), recording
    /// piece digests when there are peers to check them.
    private func downloadFromOrigin(_ task: CacheTask, url: UpstreamURL, headers: HTTPHeaders, policy: TLSContexts.ClientPolicy) {
        let fetch = originDownload(url: url, headers: headers, policy: policy, range: nil)
        let resume = { [self] (range: String) in originDownload(url: url, headers: headers, policy: policy, range: range) }
        FillDriver.fromOrigin(task, fetch: fetch, recordPieceDigests: peers != nil, resume: resume).start()
    }

    /// A GET of the blob for the cache with the client's headers, without its conditions, for the
    /// whole blob or (`range`) one piece of it.
    private func originDownload(url: UpstreamURL, headers: HTTPHeaders, policy: TLSContexts.ClientPolicy, range: String?) -> OriginFetch {
        var h = headers
        h.remove("Range")
        h.remove("If-None-Match")
        h.remove("If-Modified-Since")
        if let range { h.add("Range", range) }
        let fetch = OriginFetch(method: "GET", headers: h, url: url, pool: pool, policy: policy)
        fetch.isDownload = true
        return fetch
    }

    /// A peer asks this host, the task's owner, to get a blob from the origin with the requesting
    /// client's credentials. False when the task cannot be started here.
    package func startOriginDownload(_ key: TaskKey, url: UpstreamURL, headers: HTTPHeaders) -> Bool {
        guard let task = try? cache.open(key) else { return false }
        if task.isComplete { return true }
        guard (try? task.claim(pieceSize: cache.pieceSize, origin: url.origin)) == true else {
            return task.state == .downloading  // another worker of this host has it
        }
        downloadFromOrigin(task, url: url, headers: headers, policy: upstreamPolicy(url))
        return true
    }

    /// The trust settings for a registry a member names: the mirror's own for its registry's
    /// host, the standard verification elsewhere.
    package func upstreamPolicy(_ url: UpstreamURL) -> TLSContexts.ClientPolicy {
        url.host == config.registryMirror.url.flatMap(UpstreamURL.init)?.host
            ? TLSContexts.ClientPolicy(insecure: config.registryMirror.insecure, certs: config.registryMirror.certs) : .standard
    }

    /// Whether this client may have the blob the task holds from the registry it asked: the access
    /// policy's answer (the registry's rules), or yes when there is none (`confirmAuthorization: false`).
    private func confirm(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, task: CacheTask,
                         then: @escaping () -> Void) {
        guard let access else { return then() }
        access.confirm(ex, url: url, policy: policy, blob: StoredBlob(task), then: then)
    }

    /// Evicts by `storage.taskExpireTime`, `diskGCThreshold` and `diskGCThresholdPercent`, on the
    /// thread pool (one round at a time).
    package func collectGarbage(_ storage: DaemonConfig.Storage) {
        guard !collecting else { return }
        collecting = true
        let cache = cache
        cache.collectGarbage(expireAfter: storage.taskExpireTime, maxBytes: { CacheService.byteLimit(storage, cache) }) { [self] removed in
            collecting = false
            if !removed.isEmpty { Log.shared.info("cache gc", ["evicted": removed.count, "tasks": removed.joined(separator: ",")]) }
        }
    }

    private var collecting = false

    /// The most the cache may hold now: `diskGCThreshold`, and less when the disk is fuller than
    /// `diskGCThresholdPercent` (lists the cache: runs on the thread pool).
    private static func byteLimit(_ storage: DaemonConfig.Storage, _ cache: PieceCache) -> Int64? {
        var limit = storage.diskGCThreshold.map { Int64(clamping: $0) }
        var fs = statvfs()
        if statvfs(cache.root, &fs) == 0, fs.f_blocks > 0 {
            let total = Int64(fs.f_blocks) * Int64(fs.f_frsize)
            let used = total - Int64(fs.f_bavail) * Int64(fs.f_frsize)
            let allowed = Int64(Double(total) * storage.diskGCThresholdPercent / 100)
            if used > allowed {
                let mine = cache.entries().reduce(Int64(0)) { $0 + $1.bytes }
                let target = max(0, mine - (used - allowed))
                limit = min(limit ?? target, target)
            }
        }
        return limit
    }
}
