import Foundation
import TLS
import Cache

/// The peer protocol, version 1: HTTP/1.1 on the peer port, every request signed (`PeerToken`).
///
///     GET  /peer/v1/tasks/<sha256 hex>              TaskInfo (JSON): state, length, pieces, digests, holders
///     GET  /peer/v1/tasks/<id>/pieces               the piece bitmap alone, raw bytes (what a follower
///                                                   polls other holders for; the owner is asked for all)
///     GET  /peer/v1/tasks/<id>/pieces/<k>           piece k's bytes (X-Dragonfly-Piece-Digest: its sha256)
///     POST /peer/v1/tasks/<id>/origin               body OriginRequest: the owner fetches the blob from
///                                                   the origin with the client's credentials (202)
///     POST /peer/v1/tasks/<id>/holders              body "host:port": a member that holds (or fetches) pieces
///
/// Only blobs (digest-named tasks) are exchanged: every piece is checked against the digests of the
/// host that got it from the origin, and the whole blob against its name.
enum PeerProtocol {
    static let prefix = "/peer/v1/tasks/"

    static func taskPath(_ id: String) -> String { prefix + id }
    static func piecePath(_ id: String, _ k: Int) -> String { prefix + id + "/pieces/\(k)" }
    static func bitmapPath(_ id: String) -> String { prefix + id + "/pieces" }
    static func originPath(_ id: String) -> String { prefix + id + "/origin" }
    static func holdersPath(_ id: String) -> String { prefix + id + "/holders" }

    enum Route: Equatable {
        case info(String)
        case bitmap(String)
        case piece(String, Int)
        case origin(String)
        case holders(String)
    }

    /// The route of a request target; nil for anything that is not the protocol.
    static func route(method: String, target: String) -> Route? {
        guard target.hasPrefix(prefix), !target.contains("?") else { return nil }
        let parts = target.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard let id = parts.first.map(String.init), TaskKey.forDigest(id) != nil else { return nil }
        switch (method, parts.count) {
        case ("GET", 1): return .info(id)
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
struct TaskInfo: Codable, Equatable {
    var state: String
    var length: Int64?
    var pieceSize: Int
    var contentType: String
    /// The piece bitmap in hex (piece 0 in the lowest bit of the first byte).
    var pieces: String
    /// Each piece's sha256 in hex, "" where unknown.
    var digests: [String]
    var holders: [String]
    /// `pieces` and `digests` decoded once (a follower asks about every piece on every poll).
    private var bits: [UInt8] = []
    private var pieceDigests: [[UInt8]?] = []

    enum CodingKeys: String, CodingKey { case state, length, pieceSize, contentType, pieces, digests, holders }

    init(_ task: CacheTask) {
        state = "\(task.state)"
        length = task.contentLength
        pieceSize = task.pieceSize
        contentType = task.contentType
        pieces = Hex.encode(task.bitmap)
        digests = task.pieceDigests().map { $0.map(Hex.encode) ?? "" }
        holders = task.holders
    }

    /// A member's answer, decoded.
    static func parse(_ body: [UInt8]) -> TaskInfo? {
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

    func digest(_ k: Int) -> [UInt8]? {
        guard k >= 0, k < pieceDigests.count else { return nil }
        return pieceDigests[k]
    }
}

/// The owner is asked to fetch from the origin: where, and with which of the client's headers.
struct OriginRequest: Codable {
    var url: String
    var headers: [[String]]
}
