// Module TLS: OpenSSL without I/O (the engine), TLS streams over UV sockets, trust policies and
// contexts, PEM loading, the certificates the daemon makes, the hijack CA and the TLS listener.
// May import: CUV (internally), UV.

internal import CUV
import UV

/// OpenSSL driven through memory BIOs: bytes from the network in, bytes for the network out,
/// plaintext in and out. No I/O, no threads: the same engine runs on a socket or in a unit test.
final class TLSEngine {
    let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    private(set) var handshakeDone = false
    private(set) var receivedCloseNotify = false
    /// Network output is copied out of OpenSSL through this, then handed on before the next use.
    private let scratch: UnsafeMutableRawBufferPointer

    enum Step: Equatable {
        case done
        case needMore
        case failed(TLSError)
    }

    /// `ssl` is owned by the engine from here on.
    init(ssl: OpaquePointer, server: Bool,
         scratch: UnsafeMutableRawBufferPointer = EventLoop.context.scratch(for: TLSEngine.self, bytes: TLSEngine.scratchSize)) {
        self.ssl = ssl
        self.scratch = scratch
        // Memory BIOs: `rbio` holds what the network gave, `wbio` what it must be sent. An empty
        // `rbio` reads as "retry", not end of file.
        rbio = BIO_new(BIO_s_mem())
        wbio = BIO_new(BIO_s_mem())
        cuv_bio_set_mem_eof_return(rbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        if server { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
    }

    deinit { SSL_free(ssl) }

    /// Ciphertext from the network.
    func feed(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        _ = BIO_write(rbio, b.baseAddress, Int32(b.count))
    }

    func handshake() -> Step {
        if handshakeDone { return .done }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return .done
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .needMore
        case SSL_ERROR_ZERO_RETURN: return .failed(.closed)
        default: return .failed(TLSError.current(ssl, handshake: true))
        }
    }

    enum ReadResult: Equatable {
        case data(Int)
        case needMore
        case closed
        case failed(TLSError)
    }

    /// Decrypts into `into`.
    func read(into: UnsafeMutableRawBufferPointer) -> ReadResult {
        ERR_clear_error()
        let n = SSL_read(ssl, into.baseAddress, Int32(into.count))
        if n > 0 { return .data(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .needMore
        case SSL_ERROR_ZERO_RETURN:
            receivedCloseNotify = true
            return .closed
        default: return .failed(TLSError.current(ssl, handshake: false))
        }
    }

    /// Encrypts all of `b` (memory BIOs never refuse a write).
    func write(_ b: UnsafeRawBufferPointer) -> TLSError? {
        var off = 0
        while off < b.count {
            ERR_clear_error()
            let n = SSL_write(ssl, b.baseAddress! + off, Int32(min(b.count - off, Int(Int32.max))))
            if n <= 0 { return TLSError.current(ssl, handshake: false) }
            off += Int(n)
        }
        return nil
    }

    /// Queues close_notify.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// Hands the pending network output to `body` in pieces.
    func drainOutput(_ body: (UnsafeRawBufferPointer) -> Void) {
        while true {
            let pending = cuv_bio_pending(wbio)
            if pending <= 0 { return }
            let chunk = min(pending, scratch.count)
            let n = BIO_read(wbio, scratch.baseAddress, Int32(chunk))
            if n <= 0 { return }
            body(UnsafeRawBufferPointer(rebasing: scratch[0..<Int(n)]))
        }
    }

    /// Whether this handshake resumed an earlier session (no full key exchange).
    var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    /// The session, for resuming later connections to the same upstream (nil if not resumable yet).
    func resumableSession() -> OpaquePointer? {
        guard handshakeDone, let s = SSL_get1_session(ssl) else { return nil }
        if SSL_SESSION_is_resumable(s) == 1 { return s }
        SSL_SESSION_free(s)
        return nil
    }

    var alpn: String? {
        var p: UnsafePointer<UInt8>?
        var len: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &p, &len)
        guard let p, len > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(len)), as: UTF8.self)
    }

    static let scratchSize = 256 * 1024
}
