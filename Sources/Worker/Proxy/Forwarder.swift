import UV
import TLS
import HTTP

/// Relays one exchange to an origin: request body up, response down, each direction paused while
/// the other side's socket is backed up.
final class Forwarder {
    let exchange: Exchange
    let fetch: OriginFetch

    init(exchange: Exchange, url: UpstreamURL, headers: HTTPHeaders, pool: UpstreamPool,
         policy: TLSContexts.ClientPolicy = .standard) {
        self.exchange = exchange
        let framing = exchange.hasRequestBody ? ((try? Framing.request(exchange.request)) ?? .none) : .none
        fetch = OriginFetch(method: exchange.request.method, headers: headers, url: url, pool: pool, policy: policy, framing: framing)
    }

    func start() {
        let ex = exchange
        let fetch = self.fetch
        // A blob is content-addressed: whatever the origin sends must hash to its digest.
        let verifier = ex.request.method == "GET" ? RequestTarget(fetch.url.target).blobDigest.map { BlobVerifier(digest: $0) } : nil
        ex.logFields.append(("upstream", .string(fetch.url.authority)))
        ex.onAbort = { fetch.cancel() }
        fetch.onHead = { h, framing in
            var out = h
            HopByHop.strip(&out.headers)
            let length: UInt64?
            switch framing {
            case .length(let n): length = n
            case .none: length = 0
            case .chunked, .untilClose: length = nil
            }
            fetch.responseDelivered = true
            verifier?.arm(status: h.status, framing: framing)
            ex.sendHead(out, bodyLength: length)
        }
        ex.relayBody(from: fetch, verifier: verifier)
        fetch.canReuse = { ex.requestBodyComplete }
        fetch.onFail = { reason in ex.failUpstream(reason) }
        fetch.onRedirect = { status, next in ex.logFields.append(("redirect", .string("\(status) \(next.authority)"))) }
        fetch.onConnected = { c in
            guard ex.hasRequestBody else { return }
            c.onDrain = { ex.resumeRequestBody() }
            ex.onBody = { b in
                c.sendBody(b)
                if c.isWriteBlocked { ex.pauseRequestBody() }
            }
            ex.onBodyEnd = { c.endBody() }
            ex.resumeRequestBody()
        }
        fetch.start()
    }
}
