import Foundation
import UV

/// Why a message head was refused; each maps to the status the client gets.
public enum HTTPParseError: Error, Equatable {
    case headTooLarge
    case malformed(String)

    public var status: Int {
        switch self {
        case .headTooLarge: return 431
        case .malformed: return 400
        }
    }

    public var reason: String {
        switch self {
        case .headTooLarge: return "request head exceeds \(HeadParser.maxHeadSize) bytes"
        case .malformed(let why): return why
        }
    }
}

public enum HeadParseResult<Head> {
    case needMore
    case complete(Head, consumed: Int)
    case failed(HTTPParseError)
}

/// Parses an HTTP/1.x message head from the start of a byte buffer.
public enum HeadParser {
    /// A request head larger than this is refused with 431: far above what registries and clients send.
    public static let maxHeadSize = 64 * 1024
    static let maxHeaderCount = 256

    /// Offset just past the blank line that ends the head, if present.
    static func headEnd(_ b: UnsafeRawBufferPointer) -> Int? {
        guard b.count >= 2 else { return nil }
        var i = 0
        let n = b.count
        while i < n {
            guard let p = memchr(b.baseAddress! + i, 0x0A, n - i) else { return nil }
            let nl = b.baseAddress!.distance(to: UnsafeRawPointer(p))
            // A line end is LF or CRLF; the head ends at an empty line.
            if nl + 1 < n, b[nl + 1] == 0x0A { return nl + 2 }
            if nl + 2 < n, b[nl + 1] == 0x0D, b[nl + 2] == 0x0A { return nl + 3 }
            i = nl + 1
        }
        return nil
    }

    public static func parseRequest(_ b: UnsafeRawBufferPointer) -> HeadParseResult<HTTPRequestHead> {
        parse(b) { line, headers in
            // Cut on bytes: method SP target SP version, exactly two spaces.
            guard let s1 = line.firstIndex(of: 0x20), let s2 = line[(s1 + 1)...].firstIndex(of: 0x20),
                  !line[(s2 + 1)...].contains(0x20) else {
                throw HTTPParseError.malformed("malformed request line")
            }
            let method = line[..<s1], target = line[(s1 + 1)..<s2]
            guard !method.isEmpty, !target.isEmpty else { throw HTTPParseError.malformed("malformed request line") }
            guard method.allSatisfy(isTokenChar) else { throw HTTPParseError.malformed("malformed method") }
            guard target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw HTTPParseError.malformed("malformed request target")
            }
            let minor = try version(Substring(String(decoding: UnsafeRawBufferPointer(rebasing: line[(s2 + 1)...]), as: UTF8.self)))
            return HTTPRequestHead(method: String(decoding: UnsafeRawBufferPointer(rebasing: method), as: UTF8.self),
                                   target: String(decoding: UnsafeRawBufferPointer(rebasing: target), as: UTF8.self),
                                   minorVersion: minor, headers: headers)
        }
    }

    public static func parseResponse(_ b: UnsafeRawBufferPointer) -> HeadParseResult<HTTPResponseHead> {
        parse(b) { line, headers in
            let first = Substring(String(decoding: line, as: UTF8.self))
            let parts = first.utf8.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false).map { Substring($0) }
            guard parts.count >= 2, let status = Int(parts[1]), parts[1].count == 3, status >= 100 else {
                throw HTTPParseError.malformed("malformed status line")
            }
            let minor = try version(parts[0])
            return HTTPResponseHead(status: status, reason: parts.count == 3 ? String(parts[2]) : "", minorVersion: minor, headers: headers)
        }
    }

    private static func version(_ s: Substring) throws -> Int {
        switch s {
        case "HTTP/1.1": return 1
        case "HTTP/1.0": return 0
        default: throw HTTPParseError.malformed("unsupported HTTP version")
        }
    }

    private static func parse<H>(_ b: UnsafeRawBufferPointer, build: (UnsafeRawBufferPointer, HTTPHeaders) throws -> H) -> HeadParseResult<H> {
        guard let end = headEnd(b) else {
            return b.count > maxHeadSize ? .failed(.headTooLarge) : .needMore
        }
        if end > maxHeadSize { return .failed(.headTooLarge) }
        // Lines are split on bytes (Swift's String treats "\r\n" as one Character), and header
        // fields are cut from the bytes too: only the request line, names and values become strings.
        var lines: [(start: Int, stop: Int)] = []
        var start = 0
        for i in 0..<end where b[i] == 0x0A {
            var stop = i
            if stop > start && b[stop - 1] == 0x0D { stop -= 1 }
            let bytes = UnsafeRawBufferPointer(rebasing: b[start..<stop])
            if bytes.contains(0x0D) || bytes.contains(0) { return .failed(.malformed("bare CR or NUL in head")) }
            lines.append((start, stop))
            start = i + 1
        }
        while let l = lines.last, l.start == l.stop { lines.removeLast() }
        guard let f = lines.first, f.stop > f.start else { return .failed(.malformed("empty request line")) }
        let first = UnsafeRawBufferPointer(rebasing: b[f.start..<f.stop])
        do {
            var headers = HTTPHeaders()
            for l in lines.dropFirst() {
                let line = UnsafeRawBufferPointer(rebasing: b[l.start..<l.stop])
                if line.first == 0x20 || line.first == 0x09 {
                    throw HTTPParseError.malformed("obsolete header line folding")
                }
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw HTTPParseError.malformed("header line without colon") }
                let name = line[..<colon]
                guard !name.isEmpty, name.allSatisfy(isTokenChar) else {
                    throw HTTPParseError.malformed("malformed header name")
                }
                var v0 = colon + 1, v1 = line.count
                while v0 < v1 && (line[v0] == 0x20 || line[v0] == 0x09) { v0 += 1 }
                while v1 > v0 && (line[v1 - 1] == 0x20 || line[v1 - 1] == 0x09) { v1 -= 1 }
                let value = line[v0..<v1]
                guard value.allSatisfy({ $0 >= 0x20 || $0 == 0x09 }), !value.contains(0x7F) else {
                    throw HTTPParseError.malformed("control character in header \(String(decoding: name, as: UTF8.self))")
                }
                headers.add(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
                if headers.fields.count > maxHeaderCount { throw HTTPParseError.headTooLarge }
            }
            return .complete(try build(first, headers), consumed: end)
        } catch let e as HTTPParseError {
            return .failed(e)
        } catch {
            return .failed(.malformed("\(error)"))
        }
    }

    static func isTokenChar(_ c: UInt8) -> Bool { tokenChars[Int(c)] }

    /// RFC 9110 tchar, by byte (every header name of every request is checked).
    private static let tokenChars: [Bool] = (0..<256).map { i in
        let c = UInt8(i)
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }
}
