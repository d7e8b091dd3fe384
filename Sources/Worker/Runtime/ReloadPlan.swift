import Config

/// The master's decisions that need no process: what a reload cannot apply, and which worker gets
/// the next socket.
public enum ReloadPlan {
    /// Keys whose change a reload cannot apply (the sockets stay bound as they are).
    public static func listenerChanges(from a: DaemonConfig, to b: DaemonConfig) -> [String] {
        func same(_ x: DaemonConfig.Listen?, _ y: DaemonConfig.Listen?) -> Bool { x?.listen == y?.listen && x?.ports == y?.ports }
        var out: [String] = []
        if !same(a.proxy?.tcpListen, b.proxy?.tcpListen) { out.append("proxy.tcpListen") }
        if !same(a.upload.tcpListen, b.upload.tcpListen) { out.append("upload.tcpListen") }
        if !same(a.health?.tcpListen, b.health?.tcpListen) || a.health?.path != b.health?.path { out.append("health") }
        return out
    }

    /// Round robin over the workers that are up: the index among `up` for the `n`th socket; nil
    /// when none is up (the socket waits, bounded, for one).
    public static func dispatch(_ n: Int, up: Int) -> Int? { up > 0 ? Int(UInt(bitPattern: n) % UInt(up)) : nil }
}
