import Glibc
import UV
import HTTP
import Metrics

/// A CONNECT tunnel: bytes both ways with backpressure and half-close, until both sides are done.
final class Tunnel {
    let client: TCP
    let upstream: TCP
    let exchange: Exchange
    private var up: UInt64 = 0
    private var down: UInt64 = 0
    private var clientDone = false
    private var upstreamDone = false
    private var closed = false
    private var lastActivityMs = EventLoop.nowMs
    private let idle = LoopTimer()
    /// The worker is draining: the tunnel ends at its first quiet second.
    private var draining = false

    /// The `host:port` of a CONNECT; anything else is answered 400 and nil is returned.
    static func target(_ exchange: Exchange, _ authority: String) -> (host: String, port: Int)? {
        guard authority.contains(":"), let hp = UpstreamURL.splitHostPort(authority, defaultPort: 443) else {
            exchange.respond(status: 400, body: "CONNECT target must be host:port\n")
            return nil
        }
        return hp
    }

    static let established = "HTTP/1.1 200 Connection Established\r\n\r\n"

    /// Dials `authority` for the CONNECT in `exchange`; on success the client's socket becomes a tunnel.
    static func open(_ exchange: Exchange, authority: String, guard destinations: DestinationGuard) {
        guard let (host, port) = target(exchange, authority) else { return }
        exchange.logFields.append(("upstream", .string(authority)))
        exchange.setMode(.tunnel)
        exchange.onAbort = {}
        Dialer.dial(host: host, port: port, guard: destinations) { r in
            switch r {
            case .failure(let e):
                exchange.logFields.append(("error", .string("\(e)")))
                exchange.respond(status: e.status, body: "CONNECT \(e.upstream): \(e.detail)\n")
            case .success(let (sock, _)):
                guard !exchange.isFinished else {
                    sock.close()
                    return
                }
                let (stream, rest) = exchange.detachForTunnel()
                guard let client = stream as? TCP else {
                    stream.close()
                    sock.close()
                    return
                }
                let t = Tunnel(client: client, upstream: sock, exchange: exchange)
                exchange.whenDrainedWhileDetached { [weak t] in t?.drain() }
                client.write(established)
                if !rest.isEmpty {
                    t.up += UInt64(rest.count)
                    sock.write(rest)
                }
                t.start()
            }
        }
    }

    private init(client: TCP, upstream: TCP, exchange: Exchange) {
        self.client = client
        self.upstream = upstream
        self.exchange = exchange
        Metrics.gauge(.connectionsActive, 1)
    }

    /// A tunnel is opaque: there is no request boundary to stop at, so a draining worker closes it
    /// once it has been quiet for a second (or at drainTimeout, whichever comes first).
    func drain() {
        draining = true
        checkIdle()
    }

    private func checkIdle() {
        let quiet = EventLoop.nowMs &- lastActivityMs
        if quiet >= (draining ? 1000 : Limits.tunnelIdleMs) {
            exchange.logFields.append(("closed", .string(draining ? "drain" : "idle")))
            finish()
            return
        }
        let next = draining ? 250 : max(1000, Limits.tunnelIdleMs / 4)
        idle.start(ms: next) { [weak self] in self?.checkIdle() }
    }

    /// The kernel moves the bytes when it can (splice); else they go through the loop.
    private var spliced: SpliceRelay?
    /// `DFGET_NO_SPLICE=1`: tunnels relay through the loop (for comparison).
    static let useSplice = getenv("DFGET_NO_SPLICE") == nil

    private func start() {
        checkIdle()
        if Tunnel.useSplice, let r = SpliceRelay(client, upstream) {
            spliced = r
            exchange.logFields.append(("relay", .string("splice")))
            let (up0, down0) = (up, down)
            // The relay's closures hold `self` until `finish` closes it.
            r.onProgress = { a, b in
                self.up = up0 + UInt64(a)
                self.down = down0 + UInt64(b)
                self.lastActivityMs = EventLoop.nowMs
            }
            r.onEnd = { _ in self.finish() }
            r.start()
            return
        }
        exchange.logFields.append(("relay", .string("loop")))
        // The closures below hold `self` until `finish` clears them: the tunnel lives as long as its sockets.
        relay(from: client, to: upstream, count: { self.up += $0 }, done: { self.clientDone = true })
        relay(from: upstream, to: client, count: { self.down += $0 }, done: { self.upstreamDone = true })
    }

    private func relay(from a: TCP, to b: TCP, count: @escaping (UInt64) -> Void, done: @escaping () -> Void) {
        b.onDrain = { a.resumeReading() }
        b.onWriteError = { _ in self.finish() }
        a.startReading { ev in
            switch ev {
            case .data(let bytes):
                self.lastActivityMs = EventLoop.nowMs
                count(UInt64(bytes.count))
                b.write(bytes)
                if b.isWriteBlocked { a.stopReading() }
            case .eof:
                done()
                if self.clientDone && self.upstreamDone {
                    b.shutdown { _ in self.finish() }
                } else {
                    b.shutdown()
                }
            case .error:
                self.finish()
            }
        }
    }

    private func finish() {
        guard !closed else { return }
        closed = true
        Metrics.gauge(.connectionsActive, -1)
        idle.close()
        spliced?.close()
        spliced = nil
        client.close()
        upstream.close()
        exchange.status = 200
        exchange.logFields.append(("bytesUp", .int(Int(up))))
        exchange.logAccess(bytes: down)
    }
}
