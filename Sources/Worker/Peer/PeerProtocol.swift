import Foundation
import TLS
import Cache

/// The peer protocol, version 1: HTTP/1.1 on the peer port, every request signed (`PeerToken`).
///
///     GET  /peer/v1/tasks/<sha256 hex>              TaskInfo (JSON): state, length, pieces, digests, holders
///          ?digests=N&holders=M                     ... without the first N digests and M holders, which
///                                                   the asker has from earlier answers (`TaskInfo.Since`)
///     GET  /peer/v1/tasks/<id>/pieces               the piece bitmap alone, raw bytes (what a follower
///                                                   polls other holders for; the owner is asked for all)
///     GET  /peer/v1/tasks/<id>/pieces/<k>           piece k's bytes (X-Dragonfly-Piece-Digest: its sha256)
///     POST /peer/v1/tasks/<id>/origin               body OriginRequest: the owner fetches the blob from
///                                                   the origin with the client's credentials (202)
///     POST /peer/v1/tasks/<id>/holders              body "host:port": a member that holds (or fetches) pieces
///
/// Only blobs (digest-named tasks) are exchanged: every piece is checked against the digests of the
/// host that got it from the origin, and the whole blob against its name.
package enum PeerProtocol {
    static let prefix = "/peer/v1/tasks/"
    /// On a 503 for a piece: when to ask this member again, in milliseconds (`Retry-After` has seconds).
    static let retryAfterMsHeader = "X-Dragonfly-Retry-After-Ms"

    static func taskPath(_ id: String, since: TaskInfo.Since = .all) -> String {
        since == .all ? prefix + id : prefix + id + "?digests=\(since.digests)&holders=\(since.holders)"
    }
    static func piecePath(_ id: String, _ k: Int) -> String { prefix + id + "/pieces/\(k)" }
    static func bitmapPath(_ id: String) -> String { prefix + id + "/pieces" }
    static func originPath(_ id: String) -> String { prefix + id + "/origin" }
    static func holdersPath(_ id: String) -> String { prefix + id + "/holders" }

    package enum Route: Equatable {
        case info(String, since: TaskInfo.Since)
        case bitmap(String)
        case piece(String, Int)
        case origin(String)
        case holders(String)
        /// A member asks the tag's owner about a tag for its client (`TagRequest`, sealed).
        case tag
    }
    static let tagPath = "/peer/v1/tags"

    /// The route of a request target; nil for anything that is not the protocol.
    package static func route(method: String, target: String) -> Route? {
        if target == tagPath { return method == "POST" ? .tag : nil }
        guard target.hasPrefix(prefix) else { return nil }
        let split = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let parts = split[0].dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        // Only a task's info takes a query, and only its two counts.
        var since = TaskInfo.Since.all
        if split.count == 2 {
            guard method == "GET", parts.count == 1, let s = TaskInfo.Since(query: split[1]) else { return nil }
            since = s
        }
        guard let id = parts.first.map(String.init), TaskKey.forDigest(id) != nil else { return nil }
        switch (method, parts.count) {
        case ("GET", 1): return .info(id, since: since)
        case ("GET", 2) where parts[1] == "pieces": return .bitmap(id)
        case ("GET", 3) where parts[1] == "pieces":
            guard parts[2].utf8.count <= 6, parts[2].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let k = Int(parts[2]) else { return nil }
            return .piece(id, k)
        case ("POST", 2) where parts[1] == "origin": return .origin(id)
        case ("POST", 2) where parts[1] == "holders": return .holders(id)
        default: return nil
        }
    }
}

/// What a host knows of a task.
package struct TaskInfo: Codable, Equatable {
    var state: String
    var length: Int64?
    var pieceSize: Int
    var contentType: String
    /// The piece bitmap in hex (piece 0 in the lowest bit of the first byte).
    var pieces: String
    /// Each piece's sha256 in hex, "" where unknown.
    package var digests: [String]
    var holders: [String]
    /// Where `digests` and `holders` start: the asker had the ones before (nil: from the first).
    var digestsFrom: Int?
    var holdersFrom: Int?
    /// `pieces` and `digests` decoded once (a follower asks about every piece on every poll).
    private var bits: [UInt8] = []
    private var pieceDigests: [[UInt8]?] = []

    enum CodingKeys: String, CodingKey { case state, length, pieceSize, contentType, pieces, digests, holders, digestsFrom, holdersFrom }

    /// What an asker already has: the first `digests` digests and `holders` holders. A follower asks
    /// the owner every poll; without this each answer would carry every digest and every holder
    /// again, and the owner's uplink would fill with them as the cluster grows.
    package struct Since: Equatable {
        package var digests: Int
        package var holders: Int
        package static let all = Since(digests: 0, holders: 0)

        init(digests: Int, holders: Int) {
            self.digests = digests
            self.holders = holders
        }

        /// `digests=N&holders=M`, both, each at most 7 digits; nil for anything else.
        init?(query: Substring) {
            var d: Int?, h: Int?
            for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard kv.count == 2, (1...7).contains(kv[1].utf8.count), kv[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                      let n = Int(kv[1]) else { return nil }
                switch kv[0] {
                case "digests" where d == nil: d = n
                case "holders" where h == nil: h = n
                default: return nil
                }
            }
            guard let d, let h else { return nil }
            self.init(digests: d, holders: h)
        }
    }

    init(_ task: CacheTask, since: Since = .all) {
        state = "\(task.state)"
        length = task.contentLength
        pieceSize = task.pieceSize
        contentType = task.contentType
        pieces = Hex.encode(task.bitmap)
        // Only the digests the asker lacks are read (the holders' file is a line per member).
        let from = min(max(0, since.digests), task.pieceCount), known = task.holders
        digests = task.pieceDigests(from: from).map { $0.map(Hex.encode) ?? "" }
        holders = Array(known.dropFirst(since.holders))
        if since.digests > 0 { digestsFrom = from }
        if since.holders > 0 { holdersFrom = min(since.holders, known.count) }
    }

    /// This answer on top of the asker's `previous` one: the digests and holders it left out are
    /// taken from there. Nil when they are not there (the asker starts again from the first).
    package func merged(onto previous: TaskInfo?) -> TaskInfo? {
        let d = digestsFrom ?? 0, h = holdersFrom ?? 0
        guard d >= 0, h >= 0 else { return nil }
        guard d == 0 && h == 0 else {
            guard let previous, previous.digests.count >= d, previous.holders.count >= h else { return nil }
            var info = self
            info.digests = Array(previous.digests.prefix(d)) + digests
            info.holders = Array(previous.holders.prefix(h)) + holders
            info.digestsFrom = nil
            info.holdersFrom = nil
            info.decodeWire()
            return info
        }
        return self
    }

    /// What to ask the same member next time: the digests known from the first one on, every holder.
    package var since: Since {
        Since(digests: pieceDigests.firstIndex(where: { $0 == nil }) ?? pieceDigests.count, holders: holders.count)
    }

    /// A member's answer, decoded.
    package static func parse(_ body: [UInt8]) -> TaskInfo? {
        guard var info = try? JSONDecoder().decode(TaskInfo.self, from: Data(body)) else { return nil }
        info.decodeWire()
        return info
    }

    private mutating func decodeWire() {
        bits = Hex.decode(pieces) ?? []
        pieceDigests = digests.map { Hex.decode($0).flatMap { $0.count == 32 ? $0 : nil } }
    }

    /// What a holder's bitmap alone says (`/pieces`): which pieces it has, nothing else.
    static func holding(_ bitmap: [UInt8]) -> TaskInfo {
        var info = TaskInfo(state: "downloading", length: nil, pieceSize: 0, contentType: "", pieces: "", digests: [], holders: [])
        info.bits = bitmap
        return info
    }

    init(state: String, length: Int64?, pieceSize: Int, contentType: String, pieces: String, digests: [String], holders: [String]) {
        self.state = state
        self.length = length
        self.pieceSize = pieceSize
        self.contentType = contentType
        self.pieces = pieces
        self.digests = digests
        self.holders = holders
        decodeWire()
    }


    func has(_ k: Int) -> Bool {
        guard k >= 0, k / 8 < bits.count else { return false }
        return bits[k / 8] & (1 << UInt8(k % 8)) != 0
    }

    /// The piece bitmap as received (piece k in bit k % 8 of byte k / 8).
    var bitmap: [UInt8] { bits }
    /// Each piece's digest, nil where unknown.
    var pieceDigestList: [[UInt8]?] { pieceDigests }

    package func digest(_ k: Int) -> [UInt8]? {
        guard k >= 0, k < pieceDigests.count else { return nil }
        return pieceDigests[k]
    }
}

/// The owner is asked to fetch from the origin: where, and with which of the client's headers.
struct OriginRequest: Codable {
    var url: String
    var headers: [[String]]
}

/// A tag request passed to the member that answers for the cluster: the client's method, the
/// registry URL and the client's headers (its `Accept` and `Authorization`).
struct TagRequest: Codable {
    var method: String
    var url: String
    var headers: [[String]]
}
