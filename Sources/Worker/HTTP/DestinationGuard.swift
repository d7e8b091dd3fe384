import UV

/// Where the daemon may connect on a client's behalf, checked on every resolved address just
/// before connecting (a name that resolves to a metadata address is refused like the address):
/// never link-local or cloud-metadata addresses, never the daemon's own listening ports.
public struct DestinationGuard: Sendable {
    /// The daemon's listening ports (proxy and peer): a connection to one of them on this host nests.
    public var ownPorts: [ClosedRange<Int>]
    /// This host's own addresses (interfaces, plus the unspecified ones).
    public var localHosts: Set<String>

    public init(ownPorts: [ClosedRange<Int>] = [], localHosts: Set<String> = []) {
        self.ownPorts = ownPorts
        self.localHosts = localHosts.union(["0.0.0.0", "::"])
    }

    /// Nothing refused (unit tests, tools).
    public static let open = DestinationGuard()

    /// Why a connection to `addr` is refused; nil when it is allowed.
    public func refusal(_ addr: SocketAddress) -> String? {
        let ip = addr.ipBytes
        if DestinationGuard.isLinkLocalOrMetadata(ip) { return "\(addr.host) is a link-local or metadata address" }
        if ownPorts.contains(where: { $0.contains(addr.port) }) && (DestinationGuard.isLoopback(ip) || localHosts.contains(addr.host)) {
            return "\(HostPort.format(addr.host, addr.port)) is this daemon"
        }
        return nil
    }

    /// 169.254.0.0/16, fe80::/10, and AWS's IPv6 metadata address fd00:ec2::254.
    static func isLinkLocalOrMetadata(_ ip: [UInt8]) -> Bool {
        if ip.count == 4 { return ip[0] == 169 && ip[1] == 254 }
        guard ip.count == 16 else { return false }
        if ip[0] == 0xfe && ip[1] & 0xc0 == 0x80 { return true }
        return ip == [0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54]
    }

    static func isLoopback(_ ip: [UInt8]) -> Bool {
        ip.count == 4 ? ip[0] == 127 : ip == [UInt8](repeating: 0, count: 15) + [1]
    }
}
