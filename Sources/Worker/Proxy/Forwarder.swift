/// Relays one exchange to an origin over a pooled connection: request body up, response down, each
/// direction paused while the other side's socket is backed up. Retries once on a fresh connection
/// when a reused one turns out to be dead before any response byte.
final class Forwarder {
    let exchange: Exchange
    let url: UpstreamURL
    let head: HTTPRequestHead
    let framing: BodyFraming
    let pool: UpstreamPool
    let policy: TLSContexts.ClientPolicy
    private var conn: UpstreamConnection?

    init(exchange: Exchange, url: UpstreamURL, headers: HTTPHeaders, pool: UpstreamPool,
         policy: TLSContexts.ClientPolicy = .standard) {
        self.exchange = exchange
        self.url = url
        self.pool = pool
        self.policy = policy
        framing = exchange.hasRequestBody ? ((try? Framing.request(exchange.request)) ?? .none) : .none
        head = Forwarder.upstreamHead(exchange.request, url: url, headers: headers, framing: framing)
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

    private func fail(_ reason: String) {
        exchange.logFields.append(("error", .string(reason)))
        if exchange.headSent { exchange.abort(reason: reason) } else { exchange.respond(status: 502, body: reason + "\n") }
    }

    private func run(_ c: UpstreamConnection) {
        guard !exchange.isFinished else {
            pool.release(c)
            return
        }
        conn = c
        c.onHead = { [self] h, framing in
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

extension HTTPHeaders {
    mutating func insertFirst(_ name: String, _ value: String) {
        let rest = fields
        self = HTTPHeaders([(name, value)] + rest.map { ($0.name, $0.value) })
    }
}
