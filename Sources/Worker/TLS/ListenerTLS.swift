internal import CUV
import UV

/// The proxy listener itself over TLS (`proxy.security.insecure: false`), optionally requiring client
/// certificates signed by `caCert` (`tlsVerify: true`).
public final class ListenerTLS {
    /// Made once at startup, before the loop runs; used on the loop thread only.
    package nonisolated(unsafe) static var shared: ListenerTLS?
    let context: OpaquePointer

    package static func makeShared(cert: String, key: String, clientCA: String?) throws {
        guard let ctx = cuv_tls_server_ctx() else { throw TLSError.current(nil, handshake: false) }
        let certPEM = try PEMSource.text(cert)
        let keyPEM = try PEMSource.text(key)
        guard let x = certPEM.withCString({ cuv_pem_read_cert($0, strlen($0)) }) else {
            throw TLSError.config("proxy.security.cert: no PEM certificate")
        }
        defer { X509_free(x) }
        guard let k = keyPEM.withCString({ cuv_pem_read_key($0, strlen($0)) }) else {
            throw TLSError.config("proxy.security.key: no PEM private key")
        }
        defer { EVP_PKEY_free(k) }
        guard SSL_CTX_use_certificate(ctx, x) == 1, SSL_CTX_use_PrivateKey(ctx, k) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            ERR_clear_error()
            throw TLSError.config("proxy.security.key does not match proxy.security.cert")
        }
        if let ca = clientCA, cuv_tls_ctx_require_client_certs(ctx, ca, PEMSource.isInline(ca) ? 1 : 0) != 0 {
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
