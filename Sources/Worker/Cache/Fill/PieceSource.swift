import UV

/// Where a fill's pieces come from, as narrow as the fill needs: news of who holds what, and the
/// bytes of pieces. Two kinds: the origin streams the blob in order from `start` (its head and its
/// pieces, pushed), the peers answer `fetch` for one piece at a time. Another source (a second
/// registry, a seed service) is another implementation and touches no fill logic.
package protocol PieceSource: AnyObject {
    /// Starts: reports news, pieces or a failure to `sink` until `stop`.
    func start(_ sink: PieceSink)
    /// Fetches piece `k` (`count` bytes) from `from`; answers with `delivered` or `fetchFailed`.
    func fetch(_ k: Int, from: SourceID, count: Int)
    /// Piece `k` from `from` is stored: its buffer is free again.
    func stored(_ k: Int, from: SourceID, buffer: PieceBuffer)
    /// `s` is left out of this task (it failed, or lied; `unreachable`: it did not answer).
    func avoid(_ s: SourceID, unreachable: Bool)
    /// The seed `s` is given up: the next one, if any (else `sink.failed(.noSeed)`).
    func replaceSeed(_ s: SourceID)
    /// This host's order among equally rare pieces.
    func spread(_ k: Int) -> UInt64
    /// Pushed pieces wait for the disk: stop sending for now, or send again.
    func pause()
    func resume()
    /// Bytes from `offset` received but not yet a whole piece (the origin's stream), up to `max`.
    func partial(at offset: Int64, max: Int) -> UnsafeRawBufferPointer?
    /// The registry the bytes come from, as the task records it (empty: keep the task's).
    var registry: String { get }
    /// What the task's completion line says of this source (`source` and the rest).
    var logFields: [(String, LogValue)] { get }
    /// No more news or bytes are wanted.
    func stop()
}

/// What a `PieceSource` reports to (the fill's driver). Loop thread only.
package protocol PieceSink: AnyObject {
    func news(_ news: PieceNews, seed: SourceID)
    /// The origin's head.
    func described(length: Int64, contentType: String, digestHeader: String?)
    func delivered(_ k: Int, from: SourceID, _ buffer: PieceBuffer)
    /// More bytes arrived: of the origin's piece being received (for this worker's readers), or
    /// of a piece in flight from a member (the fill is not idle while they come).
    func progressed()
    func streamEnded()
    func fetchFailed(_ k: Int, from: SourceID, _ why: FetchFailure)
    func failed(_ why: FillFailure)
}
