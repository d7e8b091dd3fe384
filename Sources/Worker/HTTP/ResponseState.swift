/// Where a response to a client stands: the one piece of state `Exchange` keeps about its output.
/// Transitions are pure, so the lifecycle is tested without a socket.
enum ResponseState: Equatable {
    case awaitingHead
    case body(Writer)
    /// Done, cleanly or not; `headSent` says whether the client got a status line.
    case finished(headSent: Bool)

    /// How the body is framed on the wire.
    enum Writer: Equatable {
        /// `Content-Length` is known (or there is no body).
        case identity
        case chunked
        /// Unknown length to an HTTP/1.0 client: the end of the body is the end of the connection.
        case untilClose
    }

    var headSent: Bool {
        switch self {
        case .awaitingHead: return false
        case .body: return true
        case .finished(let h): return h
        }
    }

    var isFinished: Bool { if case .finished = self { return true } else { return false } }

    /// The framing of a response whose length is `bodyLength` (nil: unknown) to an HTTP/1.`clientMinor` client.
    static func writer(bodyLength: UInt64?, hasBody: Bool, clientMinor: Int) -> Writer {
        guard bodyLength == nil, hasBody else { return .identity }
        return clientMinor >= 1 ? .chunked : .untilClose
    }

    /// The head goes out: false when it is too late for one.
    mutating func sendHead(_ writer: Writer) -> Bool {
        guard case .awaitingHead = self else { return false }
        self = .body(writer)
        return true
    }

    /// A clean end. Returns the writer the body had (for the chunked terminator), nil when there
    /// was no body in progress.
    mutating func finish() -> Writer? {
        guard case .body(let w) = self else { return nil }
        self = .finished(headSent: true)
        return w
    }

    /// An end without a clean end (abort, the client left, a tunnel took the socket): false if
    /// the response had already ended.
    mutating func end() -> Bool {
        guard !isFinished else { return false }
        self = .finished(headSent: headSent)
        return true
    }
}
