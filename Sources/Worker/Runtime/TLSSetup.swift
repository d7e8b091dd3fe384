import UV
import TLS
import Config

/// TLS material the config names, loaded and checked once per process: the master refuses to start on
/// a bad CA or trust file, workers load the same before serving.
public enum TLSSetup {
    /// Loads the hijack CA and checks every trust setting; returns warnings for the log.
    public static func prepare(_ config: DaemonConfig) throws -> [String] {
        guard let p = config.proxy else { return [] }
        var warnings: [String] = []
        if let h = p.hijackHTTPS, let cert = h.cert, let key = h.key {
            try HijackAuthority.makeShared(cert: cert, key: key)
            if let w = HijackAuthority.keyPermissionWarning(key) { warnings.append(w) }
            if HijackAuthority.shared?.isCA == false {
                warnings.append("hijackHTTPS.cert is not a CA: it is served as it is for every hijacked host")
            }
            for host in h.hosts { try TLSContexts.check(.init(insecure: host.insecure, certs: host.certs)) }
        }
        try TLSContexts.check(.init(insecure: p.registryMirror.insecure, certs: p.registryMirror.certs))
        try TLSContexts.check(.standard)
        if !p.security.insecure, let cert = p.security.cert, let key = p.security.key {
            try ListenerTLS.makeShared(cert: cert, key: key, clientCA: p.security.tlsVerify ? p.security.caCert : nil)
        }
        return warnings
    }
}
