import ArgumentParser
import Foundation
import Glibc
import Config

/// `dfget status [DIGEST] [--watch]`: the daemon's `/debug/tasks` in a terminal: the fills in
/// progress and the last ones (where the bytes came from, the owner, the time, any fallback), or
/// one task's fills. It finds the health listener in the daemon's config.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the fills in progress and the last ones (the daemon's /debug/tasks).")

    @Option(name: .long, help: "The daemon's config file (where its health listener is).")
    var config = "/etc/dragonfly/dfget.yaml"

    @Flag(name: .long, help: "Show it again every second.")
    var watch = false

    @Argument(help: "A blob digest (sha256:...): that task's fills.")
    var digest: String?

    func run() throws {
        let loaded = try loadConfig(config, for: "status")
        guard let h = loaded.config.health?.tcpListen else {
            printError("dfget status: \(config) has no health section: the daemon serves /debug/tasks on health.tcpListen\n")
            throw ExitCode(2)
        }
        let host = h.localAddress
        let target = "/debug/tasks" + (digest.map { "/" + $0 } ?? "")
        repeat {
            guard let (status, body) = h.ports.lazy.compactMap({ Status.get(host: host, port: $0, target: target) }).first else {
                printError("dfget status: no daemon answers on \(host):\(h.ports.lowerBound) (health.tcpListen in \(config))\n")
                throw ExitCode(1)
            }
            guard status == 200 else {
                printError("dfget status: \(status): \(String(decoding: body, as: UTF8.self))")
                throw ExitCode(1)
            }
            if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(digest == nil ? Status.table(body) : String(decoding: body, as: UTF8.self))
            if watch { sleep(1) }
        } while watch
    }

    /// The listing as two tables.
    static func table(_ body: [UInt8]) -> String {
        guard let j = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return String(decoding: body, as: UTF8.self) }
        var out = ["filling now:"]
        let filling = j["filling"] as? [[String: Any]] ?? []
        if filling.isEmpty { out.append("  (none)") }
        for f in filling {
            out.append("  \(short(f["digest"]))  \(f["piecesDone"] ?? 0)/\(f["pieces"] ?? 0) pieces  \(mib(f["size"])) MiB")
        }
        out.append("last fills (oldest first):")
        let recent = j["recent"] as? [[String: Any]] ?? []
        if recent.isEmpty { out.append("  (none)") }
        for r in recent.suffix(20) {
            let b = r["bytes"] as? [String: Any] ?? [:]
            let peers = (b["peers"] as? [String: Int] ?? [:]).values.reduce(0, +)
            var line = "  \(short(r["digest"]))  \(r["state"] ?? "?") from \(r["source"] ?? "?")  \(mib(r["size"])) MiB"
                + "  origin \(mib(b["origin"])) / peers \(mib(peers)) MiB  \(Int(r["durationMs"] as? Double ?? 0)) ms"
            if let mbs = r["mbPerSecond"] { line += "  \(mbs) MB/s" }
            if let o = r["owner"] { line += "  owner \(o)" }
            if let f = r["fallback"] { line += "  fallback: \(f)" }
            if let e = r["error"] { line += "  error: \(e)" }
            out.append(line)
        }
        return out.joined(separator: "\n")
    }

    static func short(_ d: Any?) -> String { String(String(describing: d ?? "?").prefix(19)) }
    static func mib(_ n: Any?) -> String { String(format: "%.1f", Double((n as? Int) ?? Int((n as? Int64) ?? 0)) / 1048576) }

    /// A blocking HTTP/1.0 GET on the loopback (no event loop in a command): status and body, or nil.
    static func get(host: String, port: Int, target: String) -> (Int, [UInt8])? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else { return nil }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else { return nil }
        let req = Array("GET \(target) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard send(fd, req, req.count, 0) == req.count else { return nil }
        var all = [UInt8](), buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            all += buf[0..<n]
        }
        guard let end = all.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: all[..<end.lowerBound], as: UTF8.self)
        let parts = head.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return (status, Array(all[end.upperBound...]))
    }
}
