internal import CUV
import Foundation

/// An IPv4/IPv6 socket address.
public struct SocketAddress: CustomStringConvertible {
    var storage = sockaddr_storage()

    public init(host: String, port: Int) throws {
        var s = sockaddr_storage()
        let rc4 = withUnsafeMutablePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, Int32(port), $0) }
        }
        if rc4 != 0 {
            try check(withUnsafeMutablePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) }
            })
        }
        storage = s
    }

    init(_ sa: UnsafePointer<sockaddr>) {
        let len = sa.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: len)) }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) -> R) -> R {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }

    /// Whether `s` is an IPv4 or IPv6 literal rather than a name.
    public static func isIPLiteral(_ s: String) -> Bool { (try? SocketAddress(host: s, port: 0)) != nil }

    public var host: String { hostPort.0 }
    public var port: Int { hostPort.1 }

    private var hostPort: (String, Int) {
        var buf = [CChar](repeating: 0, count: 64)
        let port = withSockaddr { cuv_sockaddr_host_port($0, &buf, buf.count) }
        return (String(nulTerminated: buf), Int(port))
    }

    public var description: String {
        let (h, p) = hostPort
        return HostPort.format(h, p)
    }
}

public final class TCP: UVStream {
    private var onConnection: (() -> Void)?

    public init() {
        super.init(type: UV_TCP)
        uv_tcp_init(EventLoop.raw, raw.assumingMemoryBound(to: uv_tcp_t.self))
    }

    var tcp: UnsafeMutablePointer<uv_tcp_t> { raw.assumingMemoryBound(to: uv_tcp_t.self) }

    override func willClose() {
        super.willClose()
        onConnection = nil
    }

    public func bind(_ addr: SocketAddress) throws {
        try check(addr.withSockaddr { uv_tcp_bind(tcp, $0, 0) })
    }

    public func listen(backlog: Int32 = 511, _ cb: @escaping () -> Void) throws {
        onConnection = cb
        try check(uv_listen(stream, backlog) { s, status in
            guard status == 0 else { return }
            (UVHandle.owner(s!) as! TCP).onConnection?()
        })
    }

    /// Accepts a pending connection from this listener into a new handle.
    public func accept() -> TCP? {
        let client = TCP()
        if uv_accept(stream, client.stream) != 0 {
            client.close()
            return nil
        }
        return client
    }

    public func setNoDelay() { uv_tcp_nodelay(tcp, 1) }

    /// Closes with RST instead of FIN (queued writes are dropped).
    public func closeWithReset() {
        guard !isClosing else { return }
        willClose()
        if uv_tcp_close_reset(tcp, closeThunk) == 0 {
            markClosing()
        } else {
            close()
        }
    }

    public var localAddress: SocketAddress? { address(uv_tcp_getsockname) }
    public var peerAddress: SocketAddress? { address(uv_tcp_getpeername) }

    private func address(_ get: (UnsafePointer<uv_tcp_t>?, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<Int32>?) -> Int32) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(tcp, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) } }
    }

    public func connect(_ addr: SocketAddress, _ cb: @escaping (UVError?) -> Void) {
        let req = UVRequest<(UVError?) -> Void>(type: UV_CONNECT, state: cb)
        let rc = addr.withSockaddr {
            uv_tcp_connect(req.pointer(uv_connect_t.self), tcp, $0) { r, status in
                UVRequest<(UVError?) -> Void>.take(r!).state(status < 0 ? UVError(status) : nil)
            }
        }
        if rc < 0 {
            UVRequest<(UVError?) -> Void>.take(req.pointer(uv_connect_t.self)).state(UVError(rc))
        }
    }
}

/// The one `host:port` formatter: IPv6 literals go in brackets.
public enum HostPort {
    public static func bracketed(_ host: String) -> String { host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host }
    public static func format(_ host: String, _ port: Int) -> String { "\(bracketed(host)):\(port)" }
}

extension SocketAddress {
    /// The address's bytes: 4 for IPv4, 16 for IPv6 (an IPv4-mapped IPv6 address gives its 4).
    public var ipBytes: [UInt8] {
        withUnsafeBytes(of: storage) { raw -> [UInt8] in
            let family = raw.load(as: sa_family_t.self)
            if family == sa_family_t(AF_INET) {
                let off = MemoryLayout<sockaddr_in>.offset(of: \sockaddr_in.sin_addr)!
                return Array(raw[off..<off + 4])
            }
            let off = MemoryLayout<sockaddr_in6>.offset(of: \sockaddr_in6.sin6_addr)!
            let b = Array(raw[off..<off + 16])
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return Array(b[12..<16]) }
            return b
        }
    }

    /// The numeric addresses of this host's interfaces (for "is this connection to myself?").
    public static func localInterfaceHosts() -> Set<String> {
        var list: UnsafeMutablePointer<uv_interface_address_t>?
        var count: Int32 = 0
        guard uv_interface_addresses(&list, &count) == 0, let list else { return [] }
        defer { uv_free_interface_addresses(list, count) }
        var out: Set<String> = []
        for i in 0..<Int(count) {
            let a = withUnsafePointer(to: list[i].address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) } }
            out.insert(a.host)
        }
        return out
    }
}
