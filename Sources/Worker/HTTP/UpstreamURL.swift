import UV

/// An absolute `http://` or `https://` URL split the way a proxy needs it.
public struct UpstreamURL: Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// Origin-form target: path and query, always starting with "/".
    public var target: String

    public init?(_ s: String) {
        let lower = s.lowercased()
        if lower.hasPrefix("http://") { scheme = "http" } else if lower.hasPrefix("https://") { scheme = "https" } else { return nil }
        let rest = s.dropFirst(scheme.count + 3)
        let authEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        guard let hp = UpstreamURL.splitHostPort(String(authority), defaultPort: scheme == "https" ? 443 : 80) else { return nil }
        (host, port) = hp
        var t = String(rest[authEnd...])
        if let hash = t.firstIndex(of: "#") { t = String(t[..<hash]) }
        if t.isEmpty { t = "/" } else if t.hasPrefix("?") { t = "/" + t }
        target = t
    }

    public init(scheme: String, host: String, port: Int, target: String) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
    }

    /// `host[:port]` (IPv6 in brackets) into its parts.
    public static func splitHostPort(_ authority: String, defaultPort: Int) -> (String, Int)? {
        guard !authority.isEmpty else { return nil }
        var host = authority
        var port = defaultPort
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        }
        guard !host.isEmpty, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else { return nil }
        return (host, port)
    }

    public var isDefaultPort: Bool { port == (scheme == "https" ? 443 : 80) }

    /// The `Host` header value.
    public var authority: String {
        isDefaultPort ? HostPort.bracketed(host) : HostPort.format(host, port)
    }

    public var description: String { "\(scheme)://\(authority)\(target)" }

    /// The registry (or any origin) as the cache records where bytes came from:
    /// `scheme://host:port`, the host in lower case, the port always written.
    public var origin: String { "\(scheme)://\(HostPort.format(host.lowercased(), port))" }
}
