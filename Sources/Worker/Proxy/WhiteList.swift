import Config

/// `proxy.whiteList` as in the reference: when it has entries, a target is allowed only if the first
/// entry whose `host` (exact, case-insensitive) or `regx` (a search in the host name) matches it
/// lists its port, or lists none. Without entries everything is allowed.
public struct WhiteList: Sendable {
    struct Entry: Sendable {
        let host: String?
        let pattern: Pattern?
        let ports: Set<Int>
    }

    let entries: [Entry]

    public init(_ config: [DaemonConfig.WhiteListEntry]) {
        entries = config.map { e in
            Entry(host: e.host?.lowercased(), pattern: e.regx.flatMap(Pattern.init), ports: Set(e.ports.compactMap { Int($0) }))
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    public func allows(host: String, port: Int) -> Bool {
        guard !entries.isEmpty else { return true }
        let h = host.lowercased()
        guard let e = entries.first(where: { $0.host == h || ($0.pattern?.matches(h) ?? false) }) else { return false }
        return e.ports.isEmpty || e.ports.contains(port)
    }
}
