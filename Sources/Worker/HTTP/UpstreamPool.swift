/// Dials origins (async DNS, each address in turn, bounded by a timeout) and keeps idle keep-alive
/// connections per `host:port` for reuse.
final class UpstreamPool {
    private var idle: [String: [(conn: UpstreamConnection, timer: LoopTimer)]] = [:]

    static func key(host: String, port: Int) -> String { "\(host):\(port)" }

    /// A pooled connection if one is idle, else a new one.
    func acquire(host: String, port: Int, _ cb: @escaping (Result<UpstreamConnection, DialError>) -> Void) {
        let key = UpstreamPool.key(host: host, port: port)
        while var list = idle[key], let entry = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            entry.timer.close()
            if entry.conn.isReusable {
                entry.conn.unpark()
                cb(.success(entry.conn))
                return
            }
        }
        Dialer.dial(host: host, port: port) { r in
            cb(r.map { UpstreamConnection(key: key, socket: $0.0, remote: $0.1) })
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
    func closeAll() {
        for (_, list) in idle { for e in list { e.timer.close(); e.conn.close() } }
        idle = [:]
    }
}

public struct DialError: Error, CustomStringConvertible {
    public let description: String
}

/// Connects a TCP socket to `host:port`.
public enum Dialer {
    public static func dial(host: String, port: Int, _ cb: @escaping (Result<(TCP, String), DialError>) -> Void) {
        let name = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        DNS.resolve(host: host, port: port) { r in
            switch r {
            case .failure(let e):
                cb(.failure(DialError(description: "\(name): cannot resolve host: \(e)")))
            case .success(let addrs):
                tryNext(addrs[...], name: name, lastError: "no address", cb)
            }
        }
    }

    private static func tryNext(_ addrs: ArraySlice<SocketAddress>, name: String, lastError: String,
                                _ cb: @escaping (Result<(TCP, String), DialError>) -> Void) {
        guard let addr = addrs.first else {
            cb(.failure(DialError(description: "\(name): \(lastError)")))
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
            tryNext(addrs.dropFirst(), name: name, lastError: "connect timed out", cb)
        }
        sock.connect(addr) { err in
            guard !done else { return }
            done = true
            timer.close()
            if let err {
                sock.close()
                tryNext(addrs.dropFirst(), name: name, lastError: err.description.lowercased(), cb)
            } else {
                sock.setNoDelay()
                cb(.success((sock, name)))
            }
        }
    }
}
