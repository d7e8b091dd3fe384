import UV

/// How a message body is delimited on the wire.
public enum BodyFraming: Equatable {
    case none
    case length(UInt64)
    case chunked
    case untilClose
}

public enum Framing {
    /// A request's body framing, refusing the ambiguities that enable request smuggling.
    public static func request(_ head: HTTPRequestHead) throws -> BodyFraming {
        let te = head.headers.tokens("Transfer-Encoding")
        let cl = try contentLength(head.headers)
        if !te.isEmpty {
            if cl != nil { throw HTTPParseError.malformed("both Content-Length and Transfer-Encoding") }
            if head.minorVersion == 0 { throw HTTPParseError.malformed("Transfer-Encoding in an HTTP/1.0 request") }
            guard te.last == "chunked", te.filter({ $0 == "chunked" }).count == 1 else {
                throw HTTPParseError.malformed("unsupported Transfer-Encoding")
            }
            return .chunked
        }
        if let cl { return cl == 0 ? .none : .length(cl) }
        return .none
    }

    /// A response's body framing, given the method of the request it answers.
    public static func response(_ head: HTTPResponseHead, requestMethod: String) throws -> BodyFraming {
        if requestMethod == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304 {
            return .none
        }
        if requestMethod == "CONNECT" && head.status / 100 == 2 { return .none }
        let te = head.headers.tokens("Transfer-Encoding")
        if !te.isEmpty {
            return te.last == "chunked" ? .chunked : .untilClose
        }
        if let cl = try contentLength(head.headers) { return .length(cl) }
        return .untilClose
    }

    /// The single Content-Length value; differing or malformed values are an error.
    static func contentLength(_ headers: HTTPHeaders) throws -> UInt64? {
        let values = headers.all("Content-Length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingSpaces() }
        guard let first = values.first else { return nil }
        guard values.allSatisfy({ $0 == first }) else { throw HTTPParseError.malformed("conflicting Content-Length values") }
        guard !first.isEmpty, first.utf8.count <= 19, first.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let n = UInt64(first) else {
            throw HTTPParseError.malformed("malformed Content-Length")
        }
        return n
    }
}

/// Incremental body decoder: emits body bytes as they arrive, reports where the message ends.
public struct BodyDecoder {
    enum State {
        case length(remaining: UInt64)
        case chunkSize(digits: Int, value: UInt64, inExtension: Bool, lineLength: Int)
        case chunkData(remaining: UInt64)
        case chunkDataEnd(sawCR: Bool)
        case trailer(lineLength: Int, total: Int)
        case untilClose
        case done
    }

    static let maxChunkLine = 4096
    static let maxTrailer = 64 * 1024

    var state: State

    public init(_ framing: BodyFraming) {
        switch framing {
        case .none: state = .done
        case .length(let n): state = n == 0 ? .done : .length(remaining: n)
        case .chunked: state = .chunkSize(digits: 0, value: 0, inExtension: false, lineLength: 0)
        case .untilClose: state = .untilClose
        }
    }

    public var isDone: Bool { if case .done = state { return true } else { return false } }
    public var endsAtClose: Bool { if case .untilClose = state { return true } else { return false } }

    /// Decodes from `b`, emitting body bytes; returns how many bytes of `b` belong to this body.
    public mutating func decode(_ b: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        var i = 0
        let n = b.count
        while i < n {
            switch state {
            case .done:
                return i
            case .untilClose:
                emit(UnsafeRawBufferPointer(rebasing: b[i..<n]))
                return n
            case .length(let remaining):
                let take = Int(min(UInt64(n - i), remaining))
                emit(UnsafeRawBufferPointer(rebasing: b[i..<(i + take)]))
                i += take
                state = remaining - UInt64(take) == 0 ? .done : .length(remaining: remaining - UInt64(take))
            case .chunkData(let remaining):
                let take = Int(min(UInt64(n - i), remaining))
                emit(UnsafeRawBufferPointer(rebasing: b[i..<(i + take)]))
                i += take
                state = remaining - UInt64(take) == 0 ? .chunkDataEnd(sawCR: false) : .chunkData(remaining: remaining - UInt64(take))
            case .chunkDataEnd(let sawCR):
                let c = b[i]
                i += 1
                if c == 0x0D && !sawCR {
                    state = .chunkDataEnd(sawCR: true)
                } else if c == 0x0A {
                    state = .chunkSize(digits: 0, value: 0, inExtension: false, lineLength: 0)
                } else {
                    throw HTTPParseError.malformed("missing CRLF after chunk data")
                }
            case .chunkSize(let digits, let value, let inExt, let lineLength):
                let c = b[i]
                i += 1
                if lineLength + 1 > BodyDecoder.maxChunkLine { throw HTTPParseError.malformed("chunk size line too long") }
                if c == 0x0A {
                    guard digits > 0 else { throw HTTPParseError.malformed("malformed chunk size") }
                    state = value == 0 ? .trailer(lineLength: 0, total: 0) : .chunkData(remaining: value)
                } else if inExt || c == 0x0D {
                    state = .chunkSize(digits: digits, value: value, inExtension: true, lineLength: lineLength + 1)
                } else if c == UInt8(ascii: ";") || c == 0x20 || c == 0x09 {
                    guard digits > 0 else { throw HTTPParseError.malformed("malformed chunk size") }
                    state = .chunkSize(digits: digits, value: value, inExtension: true, lineLength: lineLength + 1)
                } else if let h = hexValue(c) {
                    guard digits < 15 else { throw HTTPParseError.malformed("chunk size too large") }
                    state = .chunkSize(digits: digits + 1, value: value << 4 | UInt64(h), inExtension: false, lineLength: lineLength + 1)
                } else {
                    throw HTTPParseError.malformed("malformed chunk size")
                }
            case .trailer(let lineLength, let total):
                let c = b[i]
                i += 1
                if total + 1 > BodyDecoder.maxTrailer { throw HTTPParseError.malformed("chunked trailer too large") }
                if c == 0x0A {
                    state = lineLength == 0 ? .done : .trailer(lineLength: 0, total: total + 1)
                } else if c == 0x0D {
                    state = .trailer(lineLength: lineLength, total: total + 1)
                } else {
                    state = .trailer(lineLength: lineLength + 1, total: total + 1)
                }
            }
        }
        return i
    }

    /// The connection closed: fine for a close-delimited body, a truncation otherwise.
    public mutating func finishAtEOF() -> Bool {
        switch state {
        case .untilClose, .done:
            state = .done
            return true
        default:
            return false
        }
    }

    private func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

/// Writes a body with the framing chosen for the receiving side.
public enum ChunkedEncoder {
    public static func chunkHeader(_ count: Int) -> [UInt8] { Array((String(count, radix: 16) + "\r\n").utf8) }
    public static let chunkEnd: [UInt8] = Array("\r\n".utf8)
    public static let last: [UInt8] = Array("0\r\n\r\n".utf8)

    /// Writes `b` as one chunk.
    static func write(_ b: UnsafeRawBufferPointer, to out: ByteStream) {
        out.write(chunkHeader(b.count))
        out.write(b)
        out.write(chunkEnd)
    }
}
