/// The states of a `TLSStream`, and what it does with each result of decrypting, as pure values.
enum TLSStreamState: Equatable {
    /// Created; no handshake started.
    case idle
    case handshaking
    /// Handshake done: application data flows. `peerClosed`: the socket's read side ended (bytes
    /// already received may still decrypt to plaintext).
    case open(peerClosed: Bool)
    /// The handshake failed or timed out.
    case failed

    var isHandshaking: Bool { self == .handshaking }

    /// What the reader gets next for one result of `TLSEngine.read`.
    enum ReadAction: Equatable {
        case deliver(Int)
        /// No plaintext yet: flush what the engine wants sent (renegotiation, tickets) and wait.
        case waitForCiphertext
        /// The peer is done: close_notify, or the socket ended with nothing left to decrypt.
        case endOfStream
        case fail(TLSError)
    }

    static func readAction(_ result: TLSEngine.ReadResult, peerClosed: Bool) -> ReadAction {
        switch result {
        case .data(let n): return .deliver(n)
        case .needMore: return peerClosed ? .endOfStream : .waitForCiphertext
        case .closed: return .endOfStream
        case .failed(let e): return .fail(e)
        }
    }
}
