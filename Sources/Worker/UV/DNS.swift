internal import CUV

/// Asynchronous name resolution on libuv's thread pool.
public enum DNS {
    public static func resolve(host: String, port: Int, _ cb: @escaping (Result<[SocketAddress], UVError>) -> Void) {
        if let literal = try? SocketAddress(host: host, port: port) {
            cb(.success([literal]))
            return
        }
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
