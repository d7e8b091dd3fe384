import UV
import TLS

/// Dials origins (async DNS, each address in turn, bounded by a timeout) and keeps idle keep-alive
/// connections per `host:port` for reuse.
package final class UpstreamPool {
    /// Checked on every address before connecting.
    package let destinations: DestinationGuard

    package init(destinations: DestinationGuard = .open) { self.destinations = destinations }
    private var idle: [String: [(conn: UpstreamConnection, timer: LoopTimer)]] = [:]

    /// Connections are shared only between requests with the same scheme, origin and trust policy.
    static func key(_ url: UpstreamURL, _ policy: TLSContexts.ClientPolicy) -> String {
        let base = "\(url.scheme)://\(url.host):\(url.port)"
        guard url.scheme == "https" else { return base }
        return base + (policy.insecure ? "#insecure" : "") + policy.certs.map { "#" + $0 }.joined()
    }

    /// A pooled connection if one is idle, else a new one.
    func acquire(_ url: UpstreamURL, policy: TLSContexts.ClientPolicy, _ cb: @escaping (Result<UpstreamConnection, UpstreamError>) -> Void) {
        let key = UpstreamPool.key(url, policy)
        while var list = idle[key], let entry = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            entry.timer.close()
            if entry.conn.isReusable {
                entry.conn.unpark()
                cb(.success(entry.conn))
                return
            }
        }
        connect(url, policy: policy, cb)
    }

    /// A new connection: TCP, then TLS for https (verified unless the policy says insecure).
    func connect(_ url: UpstreamURL, policy: TLSContexts.ClientPolicy, _ cb: @escaping (Result<UpstreamConnection, UpstreamError>) -> Void) {
        let key = UpstreamPool.key(url, policy)
        Dialer.dial(host: url.host, port: url.port, guard: destinations) { r in
            switch r {
            case .failure(let e):
                cb(.failure(e))
            case .success(let (tcp, name)):
                guard url.scheme == "https" else {
                    cb(.success(UpstreamConnection(key: key, socket: tcp, remote: name)))
                    return
                }
                TLSContexts.connect(tcp, host: url.host, policy: policy, sessionKey: key) { t in
                    switch t {
                    case .failure(let e): cb(.failure(.tls(name, e)))
                    case .success(let tls):
                        Log.shared.info("upstream TLS connected", ["upstream": name, "resumed": tls.sessionReused, "alpn": tls.alpn ?? "-"])
                        cb(.success(UpstreamConnection(key: key, socket: tls, remote: name)))
                    }
                }
            }
        }
    }

    /// Returns a connection after a complete response; closes it if it cannot be reused.
    func release(_ conn: UpstreamConnection) {
        guard conn.isReusable, (idle[conn.key]?.count ?? 0) < Limits.poolPerHost else {
            conn.close()
            return
        }
        let timer = LoopTimer()
        let key = conn.key
        let drop: () -> Void = { [weak self, weak conn] in
            guard let self, let conn else { return }
            if var list = self.idle[key], let i = list.firstIndex(where: { $0.conn === conn }) {
                list[i].timer.close()
                list.remove(at: i)
                self.idle[key] = list.isEmpty ? nil : list
            }
            conn.close()
        }
        conn.park(onClose: drop)
        timer.start(ms: Limits.poolIdleMs, drop)
        idle[key, default: []].append((conn, timer))
    }

    /// Closes every idle connection (worker drain).
    package func closeAll() {
        for (_, list) in idle { for e in list { e.timer.close(); e.conn.close() } }
        idle = [:]
    }
}


/// Connects a TCP socket to `host:port`.
public enum Dialer {
    /// Only addresses the guard allows are tried; when it allows none, nothing is connected.
    public static func dial(host: String, port: Int, guard destinations: DestinationGuard,
                            _ cb: @escaping (Result<(TCP, String), UpstreamError>) -> Void) {
        let name = HostPort.format(host, port)
        DNS.resolve(host: host, port: port) { r in
            switch r {
            case .failure(let e):
                cb(.failure(.unresolvable(name, reason: "\(e)")))
            case .success(let addrs):
                let verdicts = addrs.map { ($0, destinations.refusal($0)) }
                let allowed = verdicts.filter { $0.1 == nil }.map(\.0)
                if allowed.isEmpty, let why = verdicts.lazy.compactMap(\.1).first {
                    cb(.failure(.forbidden(name, reason: why)))
                    return
                }
                tryNext(allowed[...], name: name, lastError: "no address", refused: false, cb)
            }
        }
    }

    private static func tryNext(_ addrs: ArraySlice<SocketAddress>, name: String, lastError: String, refused: Bool,
                                _ cb: @escaping (Result<(TCP, String), UpstreamError>) -> Void) {
        guard let addr = addrs.first else {
            cb(.failure(.unreachable(name, reason: lastError, refused: refused)))
            return
        }
        let sock = TCP()
        let timer = LoopTimer()
        var done = false
        timer.start(ms: Limits.connectTimeoutMs) {
            guard !done else { return }
            done = true
            timer.close()
            sock.close()
            tryNext(addrs.dropFirst(), name: name, lastError: "connect timed out", refused: false, cb)
        }
        sock.connect(addr) { err in
            guard !done else { return }
            done = true
            timer.close()
            if let err {
                sock.close()
                tryNext(addrs.dropFirst(), name: name, lastError: err.description.lowercased(),
                        refused: err.code == UVError.connectionRefused, cb)
            } else {
                sock.setNoDelay()
                cb(.success((sock, name)))
            }
        }
    }
}
