internal import CUV
import UV

/// The process's TLS contexts: one per distinct upstream trust setting, made once and kept.
public enum TLSContexts {
    /// How to verify an upstream: system CAs (plus `certs`, each a CA or the server's own
    /// certificate), or not at all when `insecure`.
    public struct ClientPolicy: Hashable, Sendable {
        public var insecure = false
        public var certs: [String] = []
        public init(insecure: Bool = false, certs: [String] = []) {
            self.insecure = insecure
            self.certs = certs
        }
        public static let standard = ClientPolicy()
    }

    /// Filled on the loop thread only (the process has one loop), so no lock.
    private static var clients: [ClientPolicy: OpaquePointer] {
        get { clientsBox.value }
        set { clientsBox.value = newValue }
    }
    private static let clientsBox = LoopBound<[ClientPolicy: OpaquePointer]>([:])

    static func client(_ policy: ClientPolicy) throws -> OpaquePointer {
        if let c = clients[policy] { return c }
        let ctx = try TLSPolicy.clientContext(insecure: policy.insecure)
        if !policy.insecure {
            for c in policy.certs where (try? TLSPolicy.trust(ctx, c)) != true {
                SSL_CTX_free(ctx)
                throw TLSError.config("no certificate could be read from \(PEM.describe(c))")
            }
        }
        clients[policy] = ctx
        return ctx
    }

    /// Validates a policy at startup (files readable, PEM parses).
    public static func check(_ policy: ClientPolicy) throws { _ = try client(policy) }

    /// A client SSL for `host`: SNI, ALPN http/1.1 and, unless insecure, hostname verification;
    /// resuming the last session saved under `sessionKey`.
    static func clientSSL(host: String, policy: ClientPolicy, sessionKey: String? = nil) throws -> OpaquePointer {
        guard let ssl = SSL_new(try client(policy)) else { throw TLSError.current(nil, handshake: true) }
        do { try TLSPolicy.setPeerHost(ssl, host) } catch {
            SSL_free(ssl)
            throw error
        }
        if let sessionKey, let s = sessions[sessionKey] { SSL_set_session(ssl, s) }
        return ssl
    }

    /// Last resumable session per upstream (key: the pool's key, which includes the trust policy).
    /// Loop thread only, like `clients`.
    private static var sessions: [String: OpaquePointer] {
        get { sessionsBox.value }
        set { sessionsBox.value = newValue }
    }
    private static let sessionsBox = LoopBound<[String: OpaquePointer]>([:])

    static func saveSession(_ engine: TLSEngine, key: String) {
        guard let s = engine.resumableSession() else { return }
        if let old = sessions[key] { SSL_SESSION_free(old) }
        sessions[key] = s
    }

    /// Starts a client handshake on a connected socket.
    package static func connect(_ tcp: TCP, host: String, policy: ClientPolicy, sessionKey: String,
                        _ done: @escaping (Result<TLSStream, TLSError>) -> Void) {
        let ssl: OpaquePointer
        do { ssl = try clientSSL(host: host, policy: policy, sessionKey: sessionKey) } catch {
            tcp.close()
            done(.failure(error as? TLSError ?? .config("\(error)")))
            return
        }
        let stream = TLSStream(tcp: tcp, ssl: ssl, server: false)
        stream.sessionKey = sessionKey
        stream.handshake { err in
            if let err {
                stream.close()
                done(.failure(err))
            } else {
                done(.success(stream))
            }
        }
    }
}
