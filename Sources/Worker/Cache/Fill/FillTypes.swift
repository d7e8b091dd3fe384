/// A source of pieces as the fill sees it, by name: a member (`host:port`), the origin, a seed.
public struct SourceID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public static let origin = SourceID("origin")
    public var description: String { name }
    public static func < (a: SourceID, b: SourceID) -> Bool { a.name < b.name }
}

/// Why a fill stopped or fell back: named, so callers decide on cases, not on strings.
public enum FillFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// No member could be asked to fetch the blob from the origin.
    case noSeed
    /// The seed's own download failed (its state), or it could no longer be reached.
    case seedFailed(String)
    /// The seed cuts the blob into pieces of another size.
    case pieceSizeMismatch
    /// Nothing was stored for this long.
    case noProgress(ms: UInt64)
    /// The seed sent pieces that failed their digests and no other source has what is missing.
    case badPiecesFromSeed
    /// The whole blob did not match its digest.
    case digestMismatch
    /// The disk is full: the task is not cached.
    case diskFull
    /// The origin (or the seed's answer) announced a length the task cannot hold, or broke it.
    case badLength(String)
    /// A source that streams the blob failed (the origin: an error, a stall, a short body).
    case sourceFailed(String)
    /// Writing the bytes or the task's state failed.
    case store(String)
    /// Verifying, flushing or sealing failed.
    case seal(String)

    /// The peers failed (not the disk, not the origin's stream): the origin's ranges can finish.
    public var isThePeers: Bool {
        switch self {
        case .noSeed, .seedFailed, .noProgress, .badPiecesFromSeed: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .noSeed: return "no owner reachable"
        case .seedFailed(let why): return why
        case .pieceSizeMismatch: return "owner uses a piece size a task cannot hold"
        case .noProgress: return "no progress from the peers"
        case .badPiecesFromSeed: return "the owner's pieces do not match their digests"
        case .digestMismatch: return "digest mismatch"
        case .diskFull: return "disk full"
        case .badLength(let why), .sourceFailed(let why), .store(let why), .seal(let why): return why
        }
    }
}

/// What a source of individual pieces reports in one round: what the seed says of the task, and
/// which pieces each source holds.
public struct PieceNews: Equatable, Sendable {
    /// The blob's length and piece size, once the seed knows them.
    public var length: Int64?
    public var pieceSize: Int?
    public var contentType: String = ""
    /// The seed has every piece (and verified the blob): the endgame may use its uplink freely.
    public var seedComplete = false
    /// The seed's digest of each piece (nil where it has none yet).
    public var digests: [[UInt8]?] = []
    /// Who holds which pieces (the seed among them), as bitmaps: piece k in bit k % 8 of byte k / 8.
    public var holdings: [SourceID: [UInt8]] = [:]
    /// The seed's followers in the task's rendezvous order: the seed's pieces are dealt to them in turn.
    public var followers: [SourceID] = []

    public init() {}
}

/// Why a piece did not come from a source.
public enum FetchFailure: Equatable, Sendable {
    /// An error answer or a short body.
    case refused
    /// No answer at all (refused connection, reset, timeout).
    case unreachable
    /// The source is busy (503 with `Retry-After`): ask another one, and this one again later.
    case busy(retryAfterMs: UInt64)
}

/// Why a source is left out of a task.
public enum Avoidance: Equatable, Sendable {
    /// Its bytes of that piece did not match the seed's digest.
    case badDigest(piece: Int)
    /// It answered that piece with an error or a short body.
    case refused(piece: Int)
    /// It did not answer at all.
    case unreachable
}

/// The decisions of a fill, for its driver to carry out.
public enum FillAction: Equatable, Sendable {
    /// The length is known: size the task's file for it (`digestHeader`: the origin's
    /// `Docker-Content-Digest`, nil for the task's own digest).
    case describe(length: Int64, contentType: String, digestHeader: String?)
    /// Fetch piece k from that source.
    case fetch(Int, from: SourceID)
    /// Piece k from that source matched its digest: write it, then mark it present.
    case store(Int, from: SourceID)
    /// Let go of piece k's bytes in hand (cut through, and its digest never came or did not match).
    case drop(Int)
    /// Leave that source out of this task, for that reason.
    case avoid(SourceID, Avoidance)
    /// The seed is given up: find the next one (or report `.failed(.noSeed)`).
    case replaceSeed(SourceID)
    /// Every piece is present: verify the blob, flush, seal.
    case seal
    /// Every piece is present and matched the digests of a seed that has verified the blob: flush
    /// and seal without hashing the blob again (its pieces are the seed's verified bytes).
    case sealChecked
    /// The peers could not finish it: the missing pieces are now asked from the origin by range
    /// (`fetch(k, from: .origin)`), the pieces held kept.
    case rangeFromOrigin(FillFailure)
    /// The sources could not fill it: start over from the origin, on the same claim.
    case fallBack(FillFailure)
    /// Filled, verified and sealed.
    case finish
    /// Stopped for good: the task is given up (`diskFull`: not cached, readers finish from the
    /// origin; `digestMismatch`: already dropped as corrupt).
    case abort(FillFailure)
}
