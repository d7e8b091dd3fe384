/// Where a fill's pieces come from, as narrow as the fill needs: news of who holds what, and the
/// bytes of one piece when asked. The peers are one; another kind of source (a second registry, a
/// seed service) is another implementation and touches no fill logic.
package protocol PieceSource: AnyObject {
    /// Starts finding the task: reports news (or a failure) to `sink` until `stop`.
    func start(_ sink: PieceSink)
    /// Fetches piece `k` (`count` bytes) from `from`; answers with `delivered` or `fetchFailed`.
    func fetch(_ k: Int, from: SourceID, count: Int)
    /// Piece `k` from `from` is stored: the source answered well.
    func stored(_ k: Int, from: SourceID)
    /// `s` is left out of this task (it failed, or lied; `unreachable`: it did not answer).
    func avoid(_ s: SourceID, unreachable: Bool)
    /// The seed `s` is given up: the next one, if any (else `sink.failed(.noSeed)`).
    func replaceSeed(_ s: SourceID)
    /// This host's order among equally rare pieces.
    func spread(_ k: Int) -> UInt64
    /// No more news or bytes are wanted.
    func stop()
}

/// What a `PieceSource` reports to (the fill's driver). Loop thread only.
package protocol PieceSink: AnyObject {
    func news(_ news: PieceNews, seed: SourceID)
    func delivered(_ k: Int, from: SourceID, bytes: [UInt8])
    func fetchFailed(_ k: Int, from: SourceID, _ why: FetchFailure)
    func failed(_ why: FillFailure)
}
