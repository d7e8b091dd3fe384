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
            ex.sendHead(out, bodyLength: length)
        }
        Forwarder.relayBody(fetch, to: ex)
        fetch.canReuse = { ex.requestBodyComplete }
        fetch.onFail = { reason in Forwarder.fail(ex, reason) }
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

    /// The response body from the origin to the client, paused while the client's socket is backed
    /// up; the exchange finishes with the body.
    static func relayBody(_ fetch: OriginFetch, to ex: Exchange) {
        fetch.onBody = { b in
            ex.sendBody(b)
            if ex.isWriteBlocked { fetch.pauseResponse() }
        }
        ex.onWritable = { fetch.resumeResponse() }
        fetch.onEnd = { ex.finish() }
    }

    /// 502 with the reason, or an abort when the client already has a head.
    static func fail(_ ex: Exchange, _ reason: String) {
        ex.logFields.append(("error", .string(reason)))
        if ex.headSent { ex.abort(reason: reason) } else { ex.respond(status: 502, body: reason + "\n") }
    }
}
