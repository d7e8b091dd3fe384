import UV
import TLS
import HTTP
import Config

/// A CONNECT to a `hijackHTTPS` host: answered 200, then the daemon is the TLS server, with a leaf for
/// the host signed by the user's CA, and the requests inside are served like proxy requests.
enum Hijack {
    static func open(_ exchange: Exchange, authority: String, mintsFor: @escaping (String) -> Bool,
                     serve: @escaping (_ exchange: Exchange, _ host: String, _ port: Int) -> Void) {
        guard let (host, port) = Tunnel.target(exchange, authority) else { return }
        guard let authorityCA = HijackAuthority.shared else {
            exchange.respond(status: 400, body: "CONNECT target must be host:port\n")
            return
        }
        let (stream, rest) = exchange.detachForTunnel()
        exchange.status = 200
        exchange.setMode(.hijack)
        exchange.logAccess(bytes: 0)
        guard let tcp = stream as? TCP, let ssl = authorityCA.newSSL(connectHost: host, mintsFor: mintsFor) else {
            Log.shared.error("hijack: cannot set up TLS", ["host": host])
            stream.close()
            return
        }
        tcp.write(Tunnel.established)
        let tls = TLSStream(tcp: tcp, ssl: ssl, server: true)
        var session: ServerConnection?
        exchange.whenDrainedWhileDetached { [weak tls] in
            if let session { session.drain() } else { tls?.close() }
        }
        tls.handshake(initial: rest) { err in
            authorityCA.forget(ssl)
            if let err {
                Log.shared.info("hijack: client TLS handshake failed", ["host": authority, "peer": tls.peerDescription, "error": "\(err)"])
                tls.close()
                return
            }
            let inner = ServerConnection(socket: tls) { ex in serve(ex, host, port) }
            tls.owner = inner
            session = inner
            inner.start()
        }
    }
}
