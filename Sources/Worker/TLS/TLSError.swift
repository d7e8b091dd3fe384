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

    /// The queued OpenSSL error for `ssl`, classified.
    static func current(_ ssl: OpaquePointer?, handshake: Bool) -> TLSError {
        var buf = [CChar](repeating: 0, count: 256)
        cuv_tls_error_text(ssl, &buf, buf.count)
        let text = String(nulTerminated: buf)
        if text.hasPrefix("certificate verify failed") { return .verifyFailed(text) }
        let t = text.isEmpty ? "unknown error" : text
        return handshake ? .handshake(t) : .protocolError(t)
    }
}
