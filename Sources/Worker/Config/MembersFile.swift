import Foundation
import UV
import HTTP

/// `peers.membersFile` and the master's view of the members: one member per line, `host`,
/// `host:port`, `[v6]:port` or a bare IPv6 address (the port defaults to the peer port); `#` starts
/// a comment. IP addresses are written in their canonical form, so `0:0::1` and `::1` are one member.
public enum MembersFile {
    public static func parse(_ text: String, path: String, defaultPort: Int, keyPath: String = "") throws -> [(host: String, port: Int)] {
        var out: [(host: String, port: Int)] = []
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty { continue }
            guard let hp = member(String(entry), defaultPort: defaultPort) else {
                throw ConfigError(file: path, line: i + 1, keyPath: keyPath, message: "\"\(entry)\" is not host[:port] (IPv6: [addr]:port)")
            }
            out.append(hp)
        }
        return out
    }

    /// One member as written in `peers.members` or a members file.
    public static func member(_ s: String, defaultPort: Int) -> (host: String, port: Int)? {
        // A bare IPv6 address has colons of its own and no port.
        if !s.hasPrefix("["), s.utf8.filter({ $0 == UInt8(ascii: ":") }).count > 1 {
            guard let canonical = canonicalIP(s) else { return nil }
            return (canonical, defaultPort)
        }
        guard let (host, port) = UpstreamURL.splitHostPort(s, defaultPort: defaultPort) else { return nil }
        if host.utf8.contains(UInt8(ascii: ":")) {
            guard let canonical = canonicalIP(host) else { return nil }
            return (canonical, port)
        }
        return (canonicalIP(host) ?? host, port)
    }

    static func canonicalIP(_ s: String) -> String? { (try? SocketAddress(host: s, port: 0))?.host }

    /// The text of a list, one member per line, that `parse` reads back.
    public static func render(_ members: [(host: String, port: Int)], header: String) -> String {
        "# \(header)\n" + members.map { HostPort.format($0.host, $0.port) + "\n" }.joined()
    }
}
