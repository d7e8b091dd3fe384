internal import CUV
import UV

/// A TLS failure with OpenSSL's own words for it.
public enum TLSError: Error, CustomStringConvertible, Equatable {
    /// The peer's certificate did not verify (with OpenSSL's verify error text).
    case verifyFailed(String)
    case handshake(String)
    case protocolError(String)
    case timeout
    case closed
    case config(String)

    public var description: String {
        switch self {
        case .verifyFailed(let s): return s
        case .handshake(let s): return "TLS handshake failed: \(s)"
        case .protocolError(let s): return "TLS error: \(s)"
        case .timeout: return "TLS handshake timed out"
        case .closed: return "connection closed during the TLS handshake"
        case .config(let s): return s
        }
    }

    /// The queued OpenSSL error for `ssl` (the queue is emptied), classified.
    static func current(_ ssl: OpaquePointer?, handshake: Bool) -> TLSError {
        let verify = ssl.map { SSL_get_verify_result($0) } ?? Int(X509_V_OK)
        let queued = ERR_peek_error()
        let reason = queued == 0 ? nil : ERR_reason_error_string(queued).map { String(cString: $0) }
        ERR_clear_error()
        return classify(verifyResult: verify, queuedReason: queued == 0 ? nil : cuv_err_get_reason(queued),
                        reasonText: reason, handshake: handshake)
    }

    /// A failed verification wins over the generic handshake error it causes; otherwise OpenSSL's reason.
    static func classify(verifyResult: Int, queuedReason: Int32?, reasonText: String?, handshake: Bool) -> TLSError {
        let verifyFailed = verifyResult != Int(X509_V_OK)
        if verifyFailed && (queuedReason == SSL_R_CERTIFICATE_VERIFY_FAILED || queuedReason == nil) {
            let text = X509_verify_cert_error_string(verifyResult).map { String(cString: $0) } ?? "error \(verifyResult)"
            return .verifyFailed("certificate verify failed: \(text)")
        }
        let t = queuedReason == nil ? "unknown error" : (reasonText ?? "TLS error")
        return handshake ? .handshake(t) : .protocolError(t)
    }
}
