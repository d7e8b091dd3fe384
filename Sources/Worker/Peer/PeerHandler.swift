// Module Peer: the peer-exchange port and the peer side of the piece cache: membership, the
// rendezvous owner of each task, signed requests, and fetching pieces from other members.
// May import: UV, TLS, HTTP, Config, Cache, Metrics.

import Foundation
import UV
import TLS
import HTTP
import Cache
import Metrics

/// The peer-exchange port. With a secret (members configured) every request must carry a valid
/// token, whatever its path, or it gets 401 before any routing; alone, it answers health checks only.
/// Pieces go out from the cache file with sendfile (`PieceUpload`), at most `upload.concurrentLimit`
/// at once per worker; past that a member gets 503 with `Retry-After` and asks another source.
public final class PeerHandler {
    let token: PeerToken?
    let service: CacheService?
    let membership: Membership?
    /// `upload.rateLimit`, shared by every worker: pieces wait their turn, they are never refused.
    private let uploads: SharedRate?
    /// Piece uploads in progress or waiting for the rate limit, in this worker, and their bound.
    private var admission: UploadAdmission
    /// Pieces cut through as they arrive (`PieceUpload`), in this worker.
    private var arriving = UploadAdmission(limit: PieceUpload.arrivingAhead)
    static let maxBody = 64 * 1024

    package init(token: PeerToken? = nil, service: CacheService? = nil, membership: Membership? = nil, uploads: SharedRate? = nil,
                 maxUploads: Int = 32) {
        self.token = token
        self.service = service
        self.membership = membership
        self.uploads = uploads
        admission = UploadAdmission(limit: maxUploads)
    }

    public func handle(_ ex: Exchange) {
        let method = ex.request.method, target = ex.request.target
        ex.setMode(.peer)
        if let token {
            let now = Int64(Date().timeIntervalSince1970)
            guard token.verify(ex.request.headers[PeerToken.header], method: method, target: target, now: now) else {
                ex.respond(status: 401, body: "peer token missing or invalid\n")
                return
            }
        }
        if (method == "GET" || method == "HEAD") && target == "/healthy" {
            return ex.respond(status: 200, body: "OK\n")
        }
        guard token != nil, let service, let route = PeerProtocol.route(method: method, target: target) else {
            return ex.respond(status: 404, body: "not found\n")
        }
        switch route {
        case .info(let id, let since):
            guard let key = TaskKey.forDigest(id), let task = service.cache.lookup(key) else {
                return ex.respond(status: 404, body: "no such task\n")
            }
            let body = (try? JSONEncoder().encode(TaskInfo(task, since: since))) ?? Data()
            // Pieces stored before any member asked have no digest yet: the next poll has them.
            if !task.peersWant { task.expectPeers() }
            task.recordMissingDigests()
            var h = HTTPHeaders()
            h.add("Content-Type", "application/json")
            ex.sendHead(HTTPResponseHead(status: 200, headers: h), bodyLength: UInt64(body.count))
            ex.sendBody(Array(body))
            ex.finish()
        case .bitmap(let id):
            guard let key = TaskKey.forDigest(id), let task = service.cache.lookup(key) else {
                return ex.respond(status: 404, body: "no such task\n")
            }
            let bits = task.bitmap
            var h = HTTPHeaders()
            h.add("Content-Type", "application/octet-stream")
            ex.sendHead(HTTPResponseHead(status: 200, headers: h), bodyLength: UInt64(bits.count))
            ex.sendBody(bits)
            ex.finish()
        case .piece(let id, let k):
            servePiece(ex, id, k, service)
        case .origin(let id):
            readBody(ex) { [token] raw in
                // Sealed by members of this version; a plain body from an older member is still read.
                let sealed = ex.request.headers["Content-Type"] == PeerToken.sealedType
                guard let body = sealed ? token?.open(raw, token: ex.request.headers[PeerToken.header], method: method, target: target) : raw else {
                    return ex.respond(status: 400, body: "sealed body does not open with this cluster's secret\n")
                }
                guard let req = try? JSONDecoder().decode(OriginRequest.self, from: Data(body)), let url = UpstreamURL(req.url),
                      let key = TaskKey.forDigest(id), TaskKey.forURL(url).id == id else {
                    return ex.respond(status: 400, body: "origin request must name a blob URL of this task\n")
                }
                var headers = HTTPHeaders()
                for pair in req.headers where pair.count == 2 { headers.add(pair[0], pair[1]) }
                ex.logFields.append(("upstream", .string(url.authority)))
                (try? service.cache.open(key))?.expectPeers()
                if service.startOriginDownload(key, url: url, headers: headers) {
                    ex.respond(status: 202, body: "accepted\n")
                } else {
                    ex.respond(status: 503, body: "cannot start the download\n")
                }
            }
        case .tag:
            readBody(ex) { [token] raw in
                guard ex.request.headers["Content-Type"] == PeerToken.sealedType,
                      let body = token?.open(raw, token: ex.request.headers[PeerToken.header], method: method, target: target) else {
                    return ex.respond(status: 400, body: "a tag request is sealed with this cluster's secret\n")
                }
                guard let req = try? JSONDecoder().decode(TagRequest.self, from: Data(body)), let url = UpstreamURL(req.url),
                      req.method == "GET" || req.method == "HEAD", let manifests = service.manifests else {
                    return ex.respond(status: 400, body: "tag request must name a registry URL, GET or HEAD\n")
                }
                var headers = HTTPHeaders()
                for pair in req.headers where pair.count == 2 { headers.add(pair[0], pair[1]) }
                ex.logFields.append(("upstream", .string(url.authority)))
                ex.logFields.append(("forwardedTag", .string(req.method + " " + url.target)))
                let client = ForwardedTag(ex, method: req.method, headers: headers)
                // A tag or /v2/ only: anything else is no business of this port.
                guard RequestTarget(url.target).manifestReference != nil,
                      manifests.handle(client, url: url, policy: service.upstreamPolicy(url)) else {
                    return ex.respond(status: 400, body: "not a tag request\n")
                }
            }
        case .holders(let id):
            readBody(ex) { body in
                let member = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let key = TaskKey.forDigest(id), UpstreamURL.splitHostPort(member, defaultPort: 0) != nil,
                      let task = try? service.cache.open(key) else {
                    return ex.respond(status: 400, body: "holders take one host:port\n")
                }
                task.addHolder(member)
                ex.respond(status: 204)
            }
        }
    }

    private func servePiece(_ ex: Exchange, _ id: String, _ k: Int, _ service: CacheService) {
        guard let key = TaskKey.forDigest(id), let task = service.cache.lookup(key) else {
            return ex.respond(status: 404, body: "no such piece\n")
        }
        guard let upload = PieceUpload(exchange: ex, task: task, piece: k) else {
            guard PieceUpload.availability(task, k) == .notYet else { return ex.respond(status: 404, body: "no such piece\n") }
            // Being filled, not this piece yet: not a refusal, the member asks again soon.
            return busy(ex, ms: PeerHandler.notYetMs, "piece not here yet: ask again\n")
        }
        // Admission: a bounded number of uploads per worker, waiting ones included; past it the
        // member is told to ask another source. `upload.rateLimit` is reserved only for those let in.
        // A piece cut through waits on the origin, not on the uplink: it has a bound of its own
        // and takes none of the upload slots.
        let cut = upload.cutThrough
        let ended = { [self] in cut ? arriving.ended() : admission.ended() }
        let reserve = { [uploads] in uploads?.reserve(upload.count) ?? 0 }
        switch cut ? arriving.ask(reserve: reserve) : admission.ask(reserve: reserve) {
        case .busy(let ms):
            Metrics.count(.peerUploadsRefused)
            busy(ex, ms: ms, "too many uploads: ask another member\n")
        case .start:
            upload.start(onEnd: ended)
        case .wait(let ms):
            // The piece waits its turn; nothing of it is held meanwhile.
            let t = LoopTimer()
            ex.onAbort = {
                t.close()
                ended()
            }
            t.start(ms: ms) {
                t.close()
                if !ex.isFinished { upload.start(onEnd: ended) }
            }
        }
    }

    /// A piece that is not here yet is asked again after this.
    static let notYetMs: UInt64 = 250

    /// 503: ask another member, or this one again after `ms`.
    private func busy(_ ex: Exchange, ms: UInt64, _ body: String) {
        var h = HTTPHeaders()
        // Whole seconds for HTTP; members read the milliseconds.
        h.add("Retry-After", String(max(1, (ms + 999) / 1000)))
        h.add(PeerProtocol.retryAfterMsHeader, String(ms))
        ex.respond(status: 503, headers: h, body: body)
    }

    /// A small request body, whole.
    private func readBody(_ ex: Exchange, _ then: @escaping ([UInt8]) -> Void) {
        var body: [UInt8] = []
        guard ex.hasRequestBody else { return then(body) }
        ex.onBody = { b in
            body.append(contentsOf: b.prefix(PeerHandler.maxBody - body.count))
        }
        ex.onBodyEnd = { then(body) }
    }
}
