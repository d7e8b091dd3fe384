import TLS

/// Why a request to an upstream failed. Its description is the text of the 502 a client gets (or
/// of the log line when the client already had a head): `upstream <host:port>: <what happened>`.
public enum UpstreamError: Error, Equatable, CustomStringConvertible {
    case unresolvable(String, reason: String)
    /// Every address refused or timed out; `reason` is the last one's, `refused` whether it
    /// refused the connection (nothing listens there) rather than not answering in time.
    case unreachable(String, reason: String, refused: Bool = false)
    case tls(String, TLSError)
    /// Nothing arrived for `seconds` while a response was due.
    case silent(String, seconds: UInt64)
    case closedBeforeResponse(String)
    case closedMidBody(String)
    case readFailed(String, reason: String)
    case writeFailed(String, reason: String)
    case malformedHead(String, reason: String)
    case headTooLarge(String)
    case malformedFraming(String)
    case malformedBody(String)
    /// A pooled connection closed or spoke while idle (never reaches a client).
    case idleClosed(String)
    /// The destination policy refuses this target (403, and no connection is made).
    case forbidden(String, reason: String)

    /// The upstream's `host:port`.
    public var upstream: String {
        switch self {
        case .unresolvable(let u, _), .unreachable(let u, _, _), .tls(let u, _), .silent(let u, _), .closedBeforeResponse(let u),
             .closedMidBody(let u), .readFailed(let u, _), .writeFailed(let u, _), .malformedHead(let u, _), .headTooLarge(let u),
             .malformedFraming(let u), .malformedBody(let u), .idleClosed(let u), .forbidden(let u, _):
            return u
        }
    }

    /// What happened, without the upstream.
    public var detail: String {
        switch self {
        case .unresolvable(_, let r): return "cannot resolve host: \(r)"
        case .unreachable(_, let r, _): return r
        case .tls(_, let e): return e.description
        case .silent(_, let s): return "no data for \(s) s"
        case .closedBeforeResponse: return "connection closed before a response"
        case .closedMidBody: return "connection closed mid-body"
        case .readFailed(_, let r): return r
        case .writeFailed(_, let r): return "write failed: \(r)"
        case .malformedHead(_, let r): return r
        case .headTooLarge: return "response head too large"
        case .malformedFraming: return "malformed response framing"
        case .malformedBody: return "malformed response body"
        case .idleClosed: return "idle connection closed"
        case .forbidden(_, let r): return "refused: \(r)"
        }
    }

    public var description: String { "upstream \(upstream): \(detail)" }

    /// Nothing listens at that address: the connection was refused (a stopped process), as
    /// opposed to an address that did not answer in time (slow, or lost on the way).
    public var isRefusal: Bool {
        if case .unreachable(_, _, let refused) = self { return refused }
        return false
    }

    /// The status a client gets for it before any byte of a response: 403 for a refused
    /// destination, 502 for everything the upstream did.
    public var status: Int { if case .forbidden = self { return 403 } else { return 502 } }
}
