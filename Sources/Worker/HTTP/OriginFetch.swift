import UV
import TLS
import Metrics

/// One request to an origin: a pooled connection (TLS by the trust policy), redirects followed for
/// GET/HEAD without a body (leaving the registry's host drops `Authorization` and its trust
/// settings), one retry on a fresh connection when a reused one was dead before any response byte.
/// The final response comes out of the callbacks; who consumes it (a client, the cache) is not its business.
package final class OriginFetch {
    let method: String
    let hasBody: Bool
    let framing: BodyFraming
    let pool: UpstreamPool
    private let clientHeaders: HTTPHeaders
    package private(set) var url: UpstreamURL
    private(set) var head: HTTPRequestHead
    private var policy: TLSContexts.ClientPolicy
    private let origin: (host: String, port: Int)
    private var redirectsLeft = OriginFetch.maxRedirects
    private var conn: UpstreamConnection?
    private var cancelled = false
    static let maxRedirects = 5
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    package var onHead: ((HTTPResponseHead, BodyFraming) -> Void)?
    package var onBody: ((UnsafeRawBufferPointer) -> Void)?
    package var onEnd: (() -> Void)?
    package var onFail: ((UpstreamError) -> Void)?
    package var onRedirect: ((Int, UpstreamURL) -> Void)?
    /// The request head is on its way: the owner may stream a request body now.
    package var onConnected: ((UpstreamConnection) -> Void)?
    /// Whether the connection may go back to the pool after the response (the request body was all sent).
    package var canReuse: () -> Bool = { true }
    /// Whether the owner has already passed a response on (no retry then).
    package var responseDelivered = false
    /// Off for authorization checks: a redirect already says the registry would serve the client.
    package var followRedirects = true
    /// A response head must arrive this soon after `start`, else the fetch fails as `.silent`
    /// (revalidations and authorization checks, which the cache can answer instead). Nil: only
    /// `upstreamTimeout` holds.
    package var headDeadlineMs: UInt64?
    private var deadline: LoopTimer?

    /// `download.totalRateLimit`, shared by every worker; set at worker start. It holds for the
    /// fetches that fill the cache (`isDownload`: from the origin or the peers), as the reference
    /// daemon's does for its tasks; what streams straight through is not a download of the daemon's.
    package static var totalRate: SharedRate? {
        get { totalRateBox.value }
        set { totalRateBox.value = newValue }
    }
    private static let totalRateBox = LoopBound<SharedRate?>(nil)
    package var isDownload = false
    /// `download.perPeerRateLimit` for the member this fetch asks (peer fetches only).
    package var peerRate: SharedRate?
    /// Which counter the response bytes go to: the origin's, or the peers' (`peer_bytes_total{in}`).
    package var fromPeer = false
    private var heldByConsumer = false
    private var pacer: LoopTimer?

    package init(method: String, headers: HTTPHeaders, url: UpstreamURL, pool: UpstreamPool, policy: TLSContexts.ClientPolicy,
         framing: BodyFraming = .none) {
        self.method = method
        self.hasBody = framing != .none
        self.framing = framing
        self.pool = pool
        self.policy = policy
        self.url = url
        clientHeaders = headers
        head = OriginFetch.upstreamHead(method: method, url: url, headers: headers, framing: framing)
        origin = (url.host.lowercased(), url.port)
    }

    /// The request as the origin gets it: origin-form target, `Host` of the origin, no hop-by-hop
    /// fields, no `Expect` (the daemon answered it), no `X-Dragonfly-*`.
    static func upstreamHead(method: String, url: UpstreamURL, headers: HTTPHeaders, framing: BodyFraming) -> HTTPRequestHead {
        var h = headers
        HopByHop.strip(&h)
        h.remove("Expect")
        h.removeAll { $0.lowercased().hasPrefix("x-dragonfly-") }
        h.remove("Host")
        h.insertFirst("Host", url.authority)
        if framing == .chunked { h.add("Transfer-Encoding", "chunked") }
        return HTTPRequestHead(method: method, target: url.target, minorVersion: 1, headers: h)
    }

    package func start() {
        if let ms = headDeadlineMs {
            let t = LoopTimer()
            deadline = t
            t.start(ms: ms) { [weak self] in
                guard let self, !cancelled else { return }
                let reason = UpstreamError.silent(url.authority, seconds: max(1, ms / 1000))
                cancelled = true
                conn?.close()
                conn = nil
                fail(reason)
            }
        }
        pool.acquire(url, policy: policy) { [self] r in
            switch r {
            case .failure(let e): fail(e)
            case .success(let c): run(c)
            }
        }
    }

    package func cancel() {
        cancelled = true
        conn?.close()
        conn = nil
        clear()
    }

    package func pauseResponse() {
        heldByConsumer = true
        conn?.pauseReading()
    }

    package func resumeResponse() {
        heldByConsumer = false
        if pacer == nil { conn?.resumeReading() }
    }

    /// Counts bytes received and keeps the rate limits: reading pauses for as long as the buckets
    /// say, then goes on (a limit slows a response down, it never fails it).
    private func meter(_ n: Int) {
        Metrics.count(fromPeer ? .peerBytesIn : .originBytes, n)
        let total = isDownload ? OriginFetch.totalRate : nil
        guard total != nil || peerRate != nil else { return }  // pass-through: no limit, no clock
        let now = SharedRate.now()
        let wait = max(total?.reserve(n, nowNs: now) ?? 0, peerRate?.reserve(n, nowNs: now) ?? 0)
        guard wait > 0, pacer == nil else { return }
        conn?.pauseReading()
        let t = LoopTimer()
        pacer = t
        t.start(ms: wait) { [weak self] in
            guard let self else { return }
            pacer?.close()
            pacer = nil
            if !heldByConsumer { conn?.resumeReading() }
        }
    }

    private func fail(_ reason: UpstreamError) {
        let cb = onFail
        clear()
        cb?(reason)
    }

    private func clear() {
        deadline?.close()
        deadline = nil
        pacer?.close()
        pacer = nil
        onHead = nil
        onBody = nil
        onEnd = nil
        onFail = nil
        onRedirect = nil
        onConnected = nil
    }

    private func run(_ c: UpstreamConnection) {
        guard !cancelled else {
            pool.release(c)
            return
        }
        conn = c
        c.onHead = { [self] h, framing in
            if let next = redirectTarget(h) {
                conn = nil
                c.close()
                follow(next, status: h.status)
                return
            }
            deadline?.close()
            deadline = nil
            onHead?(h, framing)
        }
        c.onBody = { [self] b in
            meter(b.count)
            onBody?(b)
        }
        c.onEnd = { [self] in
            conn = nil
            let reuse = canReuse()
            let end = onEnd
            clear()
            end?()
            if reuse { pool.release(c) } else { c.close() }
        }
        c.onError = { [self] reason in
            conn = nil
            if RetryPolicy.shouldRetry(connectionWasReused: c.reused, responseStarted: c.responseStarted, requestHasBody: hasBody,
                                       responseDelivered: responseDelivered, cancelled: cancelled) {
                pool.connect(url, policy: policy) { [self] r in
                    switch r {
                    case .failure(let e): fail(e)
                    case .success(let fresh): run(fresh)
                    }
                }
                return
            }
            fail(reason)
        }
        c.send(head, bodyFraming: framing)
        onConnected?(c)
    }

    /// Where an upstream redirect points, when it is to be followed.
    func redirectTarget(_ h: HTTPResponseHead) -> UpstreamURL? {
        guard followRedirects, OriginFetch.redirectStatuses.contains(h.status), redirectsLeft > 0, !hasBody,
              ["GET", "HEAD"].contains(method), let loc = h.headers["Location"] else { return nil }
        return OriginFetch.resolve(loc.trimmingSpaces(), against: url)
    }

    /// A `Location` value resolved against the URL that answered with it.
    static func resolve(_ location: String, against base: UpstreamURL) -> UpstreamURL? {
        if let abs = UpstreamURL(location) { return abs }
        if location.hasPrefix("//") { return UpstreamURL(base.scheme + ":" + location) }
        var u = base
        if location.hasPrefix("/") {
            u.target = location
        } else {
            let path = RequestTarget(base.target).path
            let dir = path.hasSuffix("/") ? path : String(path[...(path.lastIndex(of: "/") ?? path.startIndex)])
            u.target = dir + location
        }
        return u
    }

    private func follow(_ next: UpstreamURL, status: Int) {
        // TLS does not end at a redirect: what came over https never continues in the clear.
        if url.scheme == "https" && next.scheme == "http" {
            fail(.forbidden(next.authority, reason: "redirect from https to http"))
            return
        }
        redirectsLeft -= 1
        var headers = clientHeaders
        if next.host.lowercased() != origin.host || next.port != origin.port {
            headers.remove("Authorization")
            policy = .standard
        }
        url = next
        head = OriginFetch.upstreamHead(method: method, url: next, headers: headers, framing: framing)
        onRedirect?(status, next)
        start()
    }
}

extension HTTPHeaders {
    mutating func insertFirst(_ name: String, _ value: String) {
        let rest = fields
        self = HTTPHeaders([(name, value)] + rest.map { ($0.name, $0.value) })
    }
}
