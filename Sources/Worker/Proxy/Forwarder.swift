/// Relays one exchange to an origin over a pooled connection: request body up, response down, each
/// direction paused while the other side's socket is backed up. Retries once on a fresh connection
/// when a reused one turns out to be dead before any response byte.
final class Forwarder {
    let exchange: Exchange
    private(set) var url: UpstreamURL
    private var head: HTTPRequestHead
    let framing: BodyFraming
    let pool: UpstreamPool
    private var policy: TLSContexts.ClientPolicy
    private var conn: UpstreamConnection?
    /// The registry the request was for: redirects away from it lose `Authorization` and its trust policy.
    private let origin: (host: String, port: Int)
    private var redirectsLeft = Forwarder.maxRedirects
    static let maxRedirects = 5
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    init(exchange: Exchange, url: UpstreamURL, headers: HTTPHeaders, pool: UpstreamPool,
         policy: TLSContexts.ClientPolicy = .standard) {
        self.exchange = exchange
        self.url = url
        self.pool = pool
        self.policy = policy
        framing = exchange.hasRequestBody ? ((try? Framing.request(exchange.request)) ?? .none) : .none
        head = Forwarder.upstreamHead(exchange.request, url: url, headers: headers, framing: framing)
        origin = (url.host.lowercased(), url.port)
    }

    /// The request as the origin gets it: origin-form target, `Host` of the origin, no hop-by-hop
    /// fields, no `Expect` (the daemon answered it), no `X-Dragonfly-*`.
    static func upstreamHead(_ req: HTTPRequestHead, url: UpstreamURL, headers: HTTPHeaders, framing: BodyFraming) -> HTTPRequestHead {
        var h = headers
        HopByHop.strip(&h)
        h.remove("Expect")
        h.removeAll { $0.lowercased().hasPrefix("x-dragonfly-") }
        h.remove("Host")
        h.insertFirst("Host", url.authority)
        if framing == .chunked { h.add("Transfer-Encoding", "chunked") }
        return HTTPRequestHead(method: req.method, target: url.target, minorVersion: 1, headers: h)
    }

    func start() {
        exchange.logFields.append(("upstream", .string(url.authority)))
        exchange.onAbort = { [self] in
            conn?.close()
            conn = nil
        }
        pool.acquire(url, policy: policy) { [self] r in
            switch r {
            case .failure(let e): fail("upstream \(e)")
            case .success(let c): run(c)
            }
        }
    }

    fileprivate func fail(_ reason: String) {
        exchange.logFields.append(("error", .string(reason)))
        if exchange.headSent { exchange.abort(reason: reason) } else { exchange.respond(status: 502, body: reason + "\n") }
    }

    fileprivate func run(_ c: UpstreamConnection) {
        guard !exchange.isFinished else {
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
            var out = h
            HopByHop.strip(&out.headers)
            let length: UInt64?
            switch framing {
            case .length(let n): length = n
            case .none: length = 0
            case .chunked, .untilClose: length = nil
            }
            exchange.sendHead(out, bodyLength: length)
        }
        c.onBody = { [self] b in
            exchange.sendBody(b)
            if exchange.isWriteBlocked { c.pauseReading() }
        }
        exchange.onWritable = { c.resumeReading() }
        c.onEnd = { [self] in
            conn = nil
            exchange.finish()
            if exchange.requestBodyComplete { pool.release(c) } else { c.close() }
        }
        c.onError = { [self] reason in
            conn = nil
            if c.reused && !c.responseStarted && !exchange.hasRequestBody && !exchange.headSent {
                pool.connect(url, policy: policy) { [self] r in
                    switch r {
                    case .failure(let e): fail("upstream \(e)")
                    case .success(let fresh): run(fresh)
                    }
                }
                return
            }
            fail(reason)
        }
        c.send(head, bodyFraming: framing)
        if exchange.hasRequestBody {
            c.onDrain = { [self] in exchange.resumeRequestBody() }
            exchange.onBody = { [self] b in
                c.sendBody(b)
                if c.isWriteBlocked { exchange.pauseRequestBody() }
            }
            exchange.onBodyEnd = { c.endBody() }
            exchange.resumeRequestBody()
        }
    }
}

extension Forwarder {
    /// Where an upstream redirect points, when the daemon should follow it: GET/HEAD without a body,
    /// a usable `Location`, hops left.
    func redirectTarget(_ h: HTTPResponseHead) -> UpstreamURL? {
        guard Forwarder.redirectStatuses.contains(h.status), redirectsLeft > 0, !exchange.hasRequestBody,
              ["GET", "HEAD"].contains(exchange.request.method), let loc = h.headers["Location"] else { return nil }
        return Forwarder.resolve(loc.trimmingSpaces(), against: url)
    }

    /// A `Location` value resolved against the URL that answered with it.
    static func resolve(_ location: String, against base: UpstreamURL) -> UpstreamURL? {
        if let abs = UpstreamURL(location) { return abs }
        if location.hasPrefix("//") { return UpstreamURL(base.scheme + ":" + location) }
        var u = base
        if location.hasPrefix("/") {
            u.target = location
        } else {
            let path = base.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
            let dir = path.hasSuffix("/") ? path : String(path[...(path.lastIndex(of: "/") ?? path.startIndex)])
            u.target = dir + location
        }
        return u
    }

    /// Re-issues the request to `next`. Leaving the registry's host drops `Authorization` (a
    /// registry token must not reach object storage) and its TLS trust settings.
    func follow(_ next: UpstreamURL, status: Int) {
        redirectsLeft -= 1
        var headers = exchange.request.headers
        if next.host.lowercased() != origin.host || next.port != origin.port {
            headers.remove("Authorization")
            policy = .standard
        }
        url = next
        head = Forwarder.upstreamHead(exchange.request, url: next, headers: headers, framing: framing)
        exchange.logFields.append(("redirect", .string("\(status) \(next.authority)")))
        pool.acquire(url, policy: policy) { [self] r in
            switch r {
            case .failure(let e): fail("upstream \(e)")
            case .success(let c): run(c)
            }
        }
    }
}

extension HTTPHeaders {
    mutating func insertFirst(_ name: String, _ value: String) {
        let rest = fields
        self = HTTPHeaders([(name, value)] + rest.map { ($0.name, $0.value) })
    }
}
