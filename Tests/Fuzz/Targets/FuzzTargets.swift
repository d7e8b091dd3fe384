import Foundation
import UV
import HTTP
import Config
import Cache
import Proxy
import Peer

/// libFuzzer targets over every parser that meets the network or the user's config. Each target
/// takes arbitrary bytes and must neither trap nor hang; `scripts/fuzz.sh TARGET SECONDS` runs one
/// under libFuzzer, and the unit tests replay the committed corpus and every crash found so far.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case head, response, chunked, range, url, mirror, config, peer

    public func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .head: FuzzTarget.head(data)
        case .response: FuzzTarget.response(data)
        case .chunked: FuzzTarget.chunked(data)
        case .range: FuzzTarget.range(String(decoding: data, as: UTF8.self))
        case .url: FuzzTarget.url(String(decoding: data, as: UTF8.self))
        case .mirror: FuzzTarget.mirror(data)
        case .config: FuzzTarget.config(String(decoding: data, as: UTF8.self))
        case .peer: FuzzTarget.peer(data)
        }
    }

    /// A request head, then everything the daemon derives from one: framing, target, URL, range, upstream choice.
    static func head(_ data: UnsafeRawBufferPointer) {
        guard case .complete(let h, let consumed) = HeadParser.parseRequest(data) else { return }
        precondition(consumed <= data.count)
        _ = try? Framing.request(h)
        let t = RequestTarget(h.target)
        _ = (t.blobDigest, t.repository, t.value(of: "ns"), t.removing(["ns"]).description)
        _ = UpstreamURL(h.target)
        range(h.headers["Range"] ?? "")
        _ = MirrorUpstream.choose(dynamic: true, header: h.headers["X-Dragonfly-Registry"], target: h.target,
                                  configured: UpstreamURL("http://127.0.0.1:5000"))
        _ = h.serialized()
    }

    static func response(_ data: UnsafeRawBufferPointer) {
        guard case .complete(let h, let consumed) = HeadParser.parseResponse(data) else { return }
        precondition(consumed <= data.count)
        for method in ["GET", "HEAD", "CONNECT"] { _ = try? Framing.response(h, requestMethod: method) }
        _ = h.serialized()
    }

    /// A chunked body fed in two parts, split where the first byte says.
    static func chunked(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let body = UnsafeRawBufferPointer(rebasing: data[1...])
        let split = body.isEmpty ? 0 : Int(first) % (body.count + 1)
        var d = BodyDecoder(.chunked)
        var emitted = 0
        do {
            var used = try d.decode(UnsafeRawBufferPointer(rebasing: body[..<split])) { emitted += $0.count }
            if used == split && !d.isDone {
                used += try d.decode(UnsafeRawBufferPointer(rebasing: body[split...])) { emitted += $0.count }
            }
            precondition(used <= body.count && emitted <= body.count)
        } catch {}
        _ = d.finishAtEOF()
    }

    static func range(_ s: String) {
        let r = ByteRange.parse(s)
        for length: Int64 in [0, 1, 4096, 1 << 40, Int64.max] {
            guard let got = r.resolve(length: length) else { continue }
            precondition(got.lowerBound >= 0 && got.upperBound <= length)
        }
    }

    static func url(_ s: String) {
        if let u = UpstreamURL(s) {
            _ = (u.authority, u.description, RequestTarget(u.target).blobDigest)
            precondition(u.target.hasPrefix("/"))
        }
        _ = UpstreamURL.splitHostPort(s, defaultPort: 443)
        _ = MirrorUpstream.registryURL(namespace: s)
        let t = RequestTarget(s)
        _ = (t.blobDigest, t.repository, t.value(of: "ns"), t.removing(["ns", "x"]).description)
    }

    /// The mirror's upstream choice: header value and target split where the first byte says.
    static func mirror(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let rest = Array(data.dropFirst())
        let split = Int(first) % (rest.count + 1)
        let header = String(decoding: rest[..<split], as: UTF8.self)
        let target = "/" + String(decoding: rest[split...], as: UTF8.self)
        for dynamic in [true, false] {
            _ = MirrorUpstream.choose(dynamic: dynamic, header: header, target: target, configured: UpstreamURL("http://127.0.0.1:5000"))
            _ = MirrorUpstream.choose(dynamic: dynamic, header: nil, target: target, configured: nil)
        }
    }

    /// The peer port's parsers: the first line is a request target to route (the piece paths, the
    /// info's `?digests=&holders=` query), the rest two TaskInfo answers, the second merged onto the first.
    static func peer(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        let nl = bytes.firstIndex(of: 0x0a) ?? bytes.count
        let target = String(decoding: bytes[..<nl], as: UTF8.self)
        for method in ["GET", "POST"] {
            if case .info(_, let since)? = PeerProtocol.route(method: method, target: target) {
                precondition(since.digests >= 0 && since.holders >= 0)
            }
        }
        let rest = Array(bytes[min(nl + 1, bytes.count)...])
        let cut = rest.firstIndex(of: 0x0a) ?? rest.count
        let first = TaskInfo.parse(Array(rest[..<cut]))
        if let second = TaskInfo.parse(Array(rest[min(cut + 1, rest.count)...])), let merged = second.merged(onto: first) {
            _ = merged.since
            _ = (0..<min(64, merged.digests.count)).map { merged.digest($0) }
        }
        _ = first?.since
    }

    /// The same text as a dfget.yaml and as a members file (`peers.membersFile`, the master's view).
    static func config(_ text: String) {
        _ = try? ConfigLoader.load(text: text, file: "fuzz.yaml")
        if let list = try? MembersFile.parse(text, path: "members", defaultPort: 65002) {
            let again = try? MembersFile.parse(MembersFile.render(list, header: "fuzz"), path: "view", defaultPort: 65002)
            precondition(again?.map { HostPort.format($0.host, $0.port) } == list.map { HostPort.format($0.host, $0.port) },
                         "a rendered view reads back as the same members")
        }
    }

    /// The target libFuzzer runs: `DFGET_FUZZ_TARGET` names it.
    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["DFGET_FUZZ_TARGET"] ?? ""
        guard let t = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("DFGET_FUZZ_TARGET must be one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return t
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.selected.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
