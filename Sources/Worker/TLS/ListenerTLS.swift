internal import CUV
import UV

/// The proxy listener itself over TLS (`proxy.security.insecure: false`), optionally requiring client
/// certificates signed by `caCert` (`tlsVerify: true`).
public final class ListenerTLS {
    /// Made once at startup, before the loop runs; used on the loop thread only.
    package static var shared: ListenerTLS? {
        get { sharedBox.value }
        set { sharedBox.value = newValue }
    }
    private static let sharedBox = LoopBound<ListenerTLS?>(nil)
    let context: OpaquePointer

    package static func makeShared(cert: String, key: String, clientCA: String?) throws {
        let ctx = try TLSPolicy.serverContext()
        let x = try PEM.certificate(cert, field: "proxy.security.cert")
        defer { X509_free(x) }
        let k = try PEM.privateKey(key, field: "proxy.security.key")
        defer { EVP_PKEY_free(k) }
        guard SSL_CTX_use_certificate(ctx, x) == 1, SSL_CTX_use_PrivateKey(ctx, k) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            ERR_clear_error()
            throw TLSError.config("proxy.security.key does not match proxy.security.cert")
        }
        if let ca = clientCA, try !TLSPolicy.requireClientCertificates(ctx, signedBy: ca) {
            throw TLSError.config("proxy.security.caCert: no PEM certificate")
        }
        shared = ListenerTLS(context: ctx)
    }

    private init(context: OpaquePointer) { self.context = context }

    /// Runs the server handshake on an accepted socket.
    package func accept(_ tcp: TCP, _ done: @escaping (TLSStream?) -> Void) {
        guard let ssl = SSL_new(context) else {
            tcp.close()
            done(nil)
            return
        }
        let tls = TLSStream(tcp: tcp, ssl: ssl, server: true)
        tls.handshake { err in
            if let err {
                Log.shared.info("listener: client TLS handshake failed", ["peer": tls.peerDescription, "error": "\(err)"])
                tls.close()
                done(nil)
            } else {
                done(tls)
            }
        }
    }
}
