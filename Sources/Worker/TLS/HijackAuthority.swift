internal import CUV
import Foundation
import UV

/// The user's CA for `hijackHTTPS`: mints a leaf per host (fresh ECDSA P-256 key, never the CA's),
/// short-lived and renewed before expiry, kept in memory only (LRU). A `cert` that is not a CA is
/// served as it is for every hijacked host.
public final class HijackAuthority {
    /// Made once at startup, before the loop runs; used on the loop thread only.
    package static var shared: HijackAuthority? {
        get { sharedBox.value }
        set { sharedBox.value = newValue }
    }
    private static let sharedBox = LoopBound<HijackAuthority?>(nil)

    let caCert: OpaquePointer
    let caKey: OpaquePointer
    public let isCA: Bool
    let serverContext: OpaquePointer
    private var leaves: [String: (cert: OpaquePointer, key: OpaquePointer)] = [:]
    private var recency: [String] = []
    /// Per connection in handshake: which names (SNI) a leaf may be minted for.
    private var sniRules: [OpaquePointer: (String) -> Bool] = [:]

    static let capacity = 512
    static let validitySeconds = 7 * 86400
    static let renewBeforeSeconds: Int = 86400

    /// Loads and checks the CA: readable, PEM, key matching the certificate.
    public static func load(cert: String, key: String) throws -> HijackAuthority {
        let x = try PEM.certificate(cert, field: "hijackHTTPS.cert")
        let k: OpaquePointer
        do { k = try PEM.privateKey(key, field: "hijackHTTPS.key") } catch {
            X509_free(x)
            throw error
        }
        guard X509_check_private_key(x, k) == 1 else {
            ERR_clear_error()
            X509_free(x)
            EVP_PKEY_free(k)
            throw TLSError.config("hijackHTTPS.key does not match hijackHTTPS.cert")
        }
        let ctx = try TLSPolicy.serverContext()
        let authority = HijackAuthority(cert: x, key: k, context: ctx)
        // The context, and so this callback, lives as long as the authority: both last the process.
        cuv_ssl_ctx_set_servername_callback(ctx, { ssl, _, arg in
            guard let ssl, let arg else { return SSL_TLSEXT_ERR_ALERT_FATAL }
            let me = ContextPointer.object(arg, as: HijackAuthority.self)
            guard let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_OK }
            let sni = String(cString: name)
            guard me.sniRules[ssl]?(sni) == true else {
                Log.shared.warn("hijack: no leaf for a name the CONNECT's rule does not accept", ["sni": sni])
                return SSL_TLSEXT_ERR_ALERT_FATAL
            }
            return me.install(host: sni, on: ssl) ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL
        }, ContextPointer.to(authority))
        return authority
    }

    /// A warning when the key file can be read by group or others.
    public static func keyPermissionWarning(_ key: String) -> String? {
        guard !PEM.isInline(key), let attrs = try? FileManager.default.attributesOfItem(atPath: key),
              let mode = attrs[.posixPermissions] as? Int, mode & 0o077 != 0 else { return nil }
        return "hijackHTTPS.key \(key) is readable by group or others (mode \(String(mode, radix: 8))): chmod 600 it"
    }

    private init(cert: OpaquePointer, key: OpaquePointer, context: OpaquePointer) {
        caCert = cert
        caKey = key
        serverContext = context
        isCA = Certificates.isCA(cert)
    }

    /// A server SSL for a hijacked CONNECT to `host`, with that host's leaf; the client's SNI, when
    /// it sends one, picks the leaf instead during the handshake.
    /// `mintsFor` decides which names a client's SNI may ask a leaf for; `forget` the SSL once its
    /// handshake is over.
    package func newSSL(connectHost: String, mintsFor: @escaping (String) -> Bool) -> OpaquePointer? {
        guard let ssl = SSL_new(serverContext) else { return nil }
        guard install(host: connectHost, on: ssl) else {
            SSL_free(ssl)
            return nil
        }
        sniRules[ssl] = mintsFor
        return ssl
    }

    package func forget(_ ssl: OpaquePointer) { sniRules[ssl] = nil }

    func install(host: String, on ssl: OpaquePointer) -> Bool {
        guard let (cert, key) = leaf(for: host) else { return false }
        return SSL_use_certificate(ssl, cert) == 1 && SSL_use_PrivateKey(ssl, key) == 1
    }

    /// The leaf for `host` from the cache, minted when absent or close to expiry.
    func leaf(for rawHost: String) -> (OpaquePointer, OpaquePointer)? {
        guard isCA else { return (caCert, caKey) }
        let host = rawHost.lowercased()
        if let l = leaves[host], Certificates.secondsLeft(l.cert) > HijackAuthority.renewBeforeSeconds {
            touch(host)
            return (l.cert, l.key)
        }
        let cert: OpaquePointer
        let key: OpaquePointer
        do {
            (cert, key) = try Certificates.make(Certificates.leaf(validitySeconds: HijackAuthority.validitySeconds), commonName: host,
                                                san: Certificates.SubjectAltName(host: host), issuer: (caCert, caKey))
        } catch {
            Log.shared.error("cannot mint a leaf certificate", ["host": host, "error": "\(error)"])
            return nil
        }
        if let old = leaves[host] { free(old) }
        leaves[host] = (cert, key)
        touch(host)
        while recency.count > HijackAuthority.capacity {
            let evict = recency.removeFirst()
            if let old = leaves.removeValue(forKey: evict) { free(old) }
        }
        return (cert, key)
    }

    private func touch(_ host: String) {
        if let i = recency.lastIndex(of: host) { recency.remove(at: i) }
        recency.append(host)
    }

    private func free(_ l: (cert: OpaquePointer, key: OpaquePointer)) {
        // SSL_use_certificate took its own references: freeing ours is safe with handshakes in flight.
        X509_free(l.cert)
        EVP_PKEY_free(l.key)
    }

    /// PEM text of a certificate (tests and diagnostics).
    static func pem(_ cert: OpaquePointer) -> String { PEM.encode(certificate: cert) }

    public static func makeShared(cert: String, key: String) throws {
        shared = try load(cert: cert, key: key)
    }
}
