internal import CUV
import UV

/// What every TLS context of the daemon speaks, in one place: TLS 1.2 or newer, ALPN `http/1.1`
/// only, released buffers on idle connections; clients verify against the system CAs plus the
/// configured certificates (partial chains, so a server's own certificate can be its trust anchor)
/// and check the host name, failing closed when it cannot be set.
enum TLSPolicy {
    static let minimumVersion = Int32(TLS1_2_VERSION)
    /// ALPN wire format: length-prefixed protocol names.
    static let alpn: [UInt8] = [8] + Array("http/1.1".utf8)

    static func clientContext(insecure: Bool) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError.current(nil, handshake: false) }
        common(ctx)
        _ = alpn.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(ctx, $0.baseAddress, UInt32($0.count)) }
        if insecure {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            SSL_CTX_set_default_verify_paths(ctx)
            X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx), UInt(X509_V_FLAG_PARTIAL_CHAIN))
        }
        return ctx
    }

    static func serverContext() throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError.current(nil, handshake: false) }
        common(ctx)
        // Resumption: one session id context for every server context (required with client
        // certificates), and the daemon's ticket keys, so a client resumes on whichever worker its
        // next connection lands.
        let sid = Array("dfget".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, sid, UInt32(sid.count))
        if var keys = SessionTickets.keys, keys.count == SessionTickets.keyBytes {
            _ = cuv_ssl_ctx_set_ticket_keys(ctx, &keys, keys.count)
        }
        SSL_CTX_set_alpn_select_cb(ctx, { _, out, outlen, inp, inlen, _ in
            var selected: UnsafeMutablePointer<UInt8>?
            let rc = TLSPolicy.alpn.withUnsafeBufferPointer {
                SSL_select_next_proto(&selected, outlen, $0.baseAddress, UInt32($0.count), inp, inlen)
            }
            // `selected` points into `inp` when the client offered http/1.1, which is all we accept.
            guard rc == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_NOACK }
            out?.pointee = UnsafePointer(selected)
            return SSL_TLSEXT_ERR_OK
        }, nil)
        return ctx
    }

    private static func common(_ ctx: OpaquePointer) {
        _ = cuv_ssl_ctx_set_min_proto_version(ctx, minimumVersion)
        _ = cuv_ssl_ctx_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
    }

    /// Adds every certificate of `source` to the context's trust store; false when none could be read.
    static func trust(_ ctx: OpaquePointer, _ source: String) throws -> Bool {
        let certs = try PEM.certificates(source)
        defer { certs.forEach { X509_free($0) } }
        let store = SSL_CTX_get_cert_store(ctx)
        let added = certs.filter { X509_STORE_add_cert(store, $0) == 1 }.count
        ERR_clear_error()
        return added > 0
    }

    /// Requires client certificates signed by the CAs in `source`.
    static func requireClientCertificates(_ ctx: OpaquePointer, signedBy source: String) throws -> Bool {
        guard try trust(ctx, source) else { return false }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        return true
    }

    /// SNI (not for IP literals) and the name or address the peer's certificate must carry.
    static func setPeerHost(_ ssl: OpaquePointer, _ host: String) throws {
        let ok: Bool
        if SocketAddress.isIPLiteral(host) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
        } else {
            ok = cuv_ssl_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1
        }
        guard ok else {
            ERR_clear_error()
            throw TLSError.config("cannot set the expected TLS peer name \(host)")
        }
    }
}

/// The TLS session ticket keys every worker of the daemon shares (the master makes them and hands
/// them over with the config), so tickets one worker issued open on another.
public enum SessionTickets {
    static let keyBytes = 80
    /// Set before any server context is made; nil: each context has keys of its own.
    public static var keys: [UInt8]? {
        get { keysBox.value }
        set { keysBox.value = newValue }
    }
    private static let keysBox = LoopBound<[UInt8]?>(nil)

    /// Fresh random keys, as hex (for the environment).
    public static func make() -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.encode((0..<keyBytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }

    /// Keys from their hex form; nil when malformed.
    public static func parse(_ hex: String) -> [UInt8]? {
        hex.utf8.count == 2 * keyBytes ? Hex.decode(hex) : nil
    }
}
