import UV
import HTTP

/// Who a tag answer goes to: a client's exchange, or a member asking on behalf of its client (the
/// member that owns the tag answers for the cluster). The tag cache sees only this.
package protocol TagClient: AnyObject {
    var method: String { get }
    /// The client's request headers (its `Accept` and `Authorization` decide the answer).
    var headers: HTTPHeaders { get }
    var isFinished: Bool { get }
    var onAbort: (() -> Void)? { get set }
    func note(_ name: String, _ value: LogValue)
    /// The answer comes from the cache (the `source` of the response bytes).
    func markCached()
    func sendHead(_ head: HTTPResponseHead, bodyLength: UInt64?)
    func sendBody(_ b: [UInt8])
    func finish()
    func respond(status: Int, headers: HTTPHeaders, body: String)
    func failUpstream(_ error: UpstreamError)
}

extension Exchange: TagClient {
    package var method: String { request.method }
    package var headers: HTTPHeaders { request.headers }
    package func note(_ name: String, _ value: LogValue) { logFields.append((name, value)) }
    package func markCached() { source = .cache }
}

/// A member's request for a tag, answered on its own exchange as the client's request would be.
package final class ForwardedTag: TagClient {
    let ex: Exchange
    package let method: String
    package let headers: HTTPHeaders

    package init(_ ex: Exchange, method: String, headers: HTTPHeaders) {
        self.ex = ex
        self.method = method
        self.headers = headers
    }

    package var isFinished: Bool { ex.isFinished }
    package var onAbort: (() -> Void)? {
        get { ex.onAbort }
        set { ex.onAbort = newValue }
    }
    package func note(_ name: String, _ value: LogValue) { ex.note(name, value) }
    package func markCached() { ex.markCached() }
    /// The member gets the head (and, for its GET, the body) as the registry's answer would be:
    /// its exchange is a POST, so the length is given whatever the method.
    package func sendHead(_ head: HTTPResponseHead, bodyLength: UInt64?) {
        var h = head
        if method == "HEAD" {
            h.headers.replace("X-Dragonfly-Length", h.headers["Content-Length"] ?? "0")
            return ex.sendHead(h, bodyLength: 0)
        }
        ex.sendHead(h, bodyLength: bodyLength)
    }
    package func sendBody(_ b: [UInt8]) { if method != "HEAD" { ex.sendBody(b) } }
    package func finish() { ex.finish() }
    package func respond(status: Int, headers: HTTPHeaders, body: String) {
        ex.respond(status: status, headers: headers, body: method == "HEAD" ? "" : body)
    }
    package func failUpstream(_ error: UpstreamError) { ex.failUpstream(error) }
}
