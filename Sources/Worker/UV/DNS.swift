internal import CUV

/// Asynchronous name resolution on libuv's thread pool.
public enum DNS {
    /// `cache: false` asks the resolver every time (membership by DNS must see changes).
    public static func resolve(host: String, port: Int, cache useCache: Bool = true,
                               _ cb: @escaping (Result<[SocketAddress], UVError>) -> Void) {
        if let literal = try? SocketAddress(host: host, port: port) {
            cb(.success([literal]))
            return
        }
        guard useCache else { return resolveUncached(host: host, port: port, cb) }
        let cache = EventLoop.context.object(DNSCache.self) { DNSCache() }
        let key = HostPort.format(host.lowercased(), port)
        if let hit = cache.lookup(key, now: EventLoop.nowMs) {
            cb(.success(hit))
            return
        }
        resolveUncached(host: host, port: port) { r in
            if case .success(let addrs) = r { cache.store(key, addrs, now: EventLoop.nowMs) }
            cb(r)
        }
    }

    private static func resolveUncached(host: String, port: Int, _ cb: @escaping (Result<[SocketAddress], UVError>) -> Void) {
        let req = UVRequest<(Result<[SocketAddress], UVError>) -> Void>(type: UV_GETADDRINFO, state: cb)
        var hints = addrinfo()
        cuv_tcp_hints(&hints)
        let rc = uv_getaddrinfo(EventLoop.raw, req.pointer(uv_getaddrinfo_t.self), { r, status, res in
            let cb = UVRequest<(Result<[SocketAddress], UVError>) -> Void>.take(r!).state
            defer { if res != nil { uv_freeaddrinfo(res) } }
            guard status == 0, let res else {
                cb(.failure(UVError(status == 0 ? UV_EAI_NONAME.rawValue : status)))
                return
            }
            var out: [SocketAddress] = []
            var cur: UnsafePointer<addrinfo>? = UnsafePointer(res)
            while let ai = cur {
                if let sa = cuv_addrinfo_addr(ai) { out.append(SocketAddress(sa)) }
                cur = cuv_addrinfo_next(ai)
            }
            // Prefer IPv4 first: loopback test names and most registries answer there.
            out.sort { a, b in !a.host.contains(":") && b.host.contains(":") }
            cb(.success(out))
        }, host, String(port), &hints)
        if rc < 0 {
            UVRequest<(Result<[SocketAddress], UVError>) -> Void>.take(req.pointer(uv_getaddrinfo_t.self)).state(.failure(UVError(rc)))
        }
    }
}

/// Answers of the resolver, kept briefly: at most `capacity` names for `ttlMs` each (getaddrinfo
/// tells no TTL), so a burst of requests to one registry costs one lookup, and a flood of distinct
/// names cannot grow the worker.
final class DNSCache {
    static let capacity = 1024
    static let ttlMs: UInt64 = 30_000
    private var entries: [String: (addrs: [SocketAddress], until: UInt64)] = [:]

    func lookup(_ key: String, now: UInt64) -> [SocketAddress]? {
        guard let e = entries[key] else { return nil }
        if e.until > now { return e.addrs }
        entries[key] = nil
        return nil
    }

    func store(_ key: String, _ addrs: [SocketAddress], now: UInt64) {
        if entries.count >= DNSCache.capacity {
            entries = entries.filter { $0.value.until > now }
            if entries.count >= DNSCache.capacity, let victim = entries.min(by: { $0.value.until < $1.value.until })?.key {
                entries[victim] = nil
            }
        }
        entries[key] = (addrs, now + DNSCache.ttlMs)
    }

    var count: Int { entries.count }
}
