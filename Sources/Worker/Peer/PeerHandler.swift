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
public final class PeerHandler {
    let token: PeerToken?
    let service: CacheService?
    let membership: Membership?
    /// `upload.rateLimit`, shared by every worker: pieces wait their turn, they are never refused.
    private let uploads: SharedRate?
    static let maxBody = 64 * 1024

    package init(token: PeerToken? = nil, service: CacheService? = nil, membership: Membership? = nil, uploads: SharedRate? = nil) {
        self.token = token
        self.service = service
        self.membership = membership
        self.uploads = uploads
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
        case .info(let id):
            guard let key = TaskKey.forDigest(id), let task = service.cache.lookup(key) else {
                return ex.respond(status: 404, body: "no such task\n")
            }
            let body = (try? JSONEncoder().encode(TaskInfo(task))) ?? Data()
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
            readBody(ex) { body in
                guard let req = try? JSONDecoder().decode(OriginRequest.self, from: Data(body)), let url = UpstreamURL(req.url),
                      let key = TaskKey.forDigest(id), TaskKey.forURL(url).id == id else {
                    return ex.respond(status: 400, body: "origin request must name a blob URL of this task\n")
                }
                var headers = HTTPHeaders()
                for pair in req.headers where pair.count == 2 { headers.add(pair[0], pair[1]) }
                ex.logFields.append(("upstream", .string(url.authority)))
                if service.startOriginDownload(key, url: url, headers: headers) {
                    ex.respond(status: 202, body: "accepted\n")
                } else {
                    ex.respond(status: 503, body: "cannot start the download\n")
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
        guard let key = TaskKey.forDigest(id), let task = service.cache.lookup(key), k < task.pieceCount, task.hasPiece(k),
              let digest = task.pieceDigest(k) else {
            return ex.respond(status: 404, body: "no such piece\n")
        }
        // The piece is read on the thread pool: 4 MiB from a file whose pages may have left memory.
        let r = task.pieceRange(k)
        var bytes: [UInt8] = []
        ThreadPool.run({
            bytes = [UInt8](unsafeUninitializedCapacity: Int(r.count)) { buf, initialized in
                initialized = (try? task.read(offset: r.lowerBound, into: UnsafeMutableRawBufferPointer(buf))) ?? 0
            }
        }, then: { [self] in
            guard !ex.isFinished else { return }
            guard bytes.count == Int(r.count) else { return ex.respond(status: 500, body: "cannot read the piece\n") }
            send(ex, bytes, digest: digest)
        })
    }

    /// A piece read for a member: out now, or when `upload.rateLimit` allows.
    private func send(_ ex: Exchange, _ bytes: [UInt8], digest: [UInt8]) {
        let n = bytes.count
        var h = HTTPHeaders()
        h.add("Content-Type", "application/octet-stream")
        h.add("X-Dragonfly-Piece-Digest", Hex.encode(digest))
        let send = {
            ex.sendHead(HTTPResponseHead(status: 200, headers: h), bodyLength: UInt64(n))
            ex.sendBody(bytes)
            ex.finish()
            Metrics.count(.peerBytesOut, n)
        }
        let wait = uploads?.reserve(n) ?? 0
        guard wait > 0 else { return send() }
        let t = LoopTimer()
        t.start(ms: wait) {
            t.close()
            if !ex.isFinished { send() }
        }
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
