/// Where one connection to an origin stands. The connection carries one request at a time, then
/// goes back to `idle` (and to the pool, when the response allows reuse); `broken` is final.
enum UpstreamState: Equatable {
    case idle
    /// The request is out; no response head yet.
    case awaitingHead
    /// The head is in; the body is being read.
    case body
    /// Failed or closed; `afterHead` says whether the response had begun (a retry is only safe before).
    case broken(afterHead: Bool)

    var isBroken: Bool { if case .broken = self { return true } else { return false } }

    /// A response is due or being read: the origin's silence counts.
    var expectsData: Bool { self == .awaitingHead || self == .body }

    var responseStarted: Bool { self == .body || self == .broken(afterHead: true) }

    mutating func fail() -> Bool {
        guard !isBroken else { return false }
        self = .broken(afterHead: self == .body)
        return true
    }

    /// Whether the connection may carry another request after this response: the origin did not
    /// ask to close (HTTP/1.1 default keep-alive, HTTP/1.0 only with `Connection: keep-alive`) and
    /// the body's end is not the connection's end.
    static func keepAlive(_ head: HTTPResponseHead, framing: BodyFraming) -> Bool {
        if framing == .untilClose { return false }
        let connection = head.headers.tokens("Connection")
        return head.minorVersion >= 1 ? !connection.contains("close") : connection.contains("keep-alive")
    }
}
