import UV

/// Header fields in arrival order; names compare case-insensitively.
public struct HTTPHeaders: Sequence, Equatable {
    public private(set) var fields: [(name: String, value: String)] = []

    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    /// `Name: value` lines and the blank line that ends a head, as bytes.
    func append(to out: inout [UInt8]) {
        for (n, v) in fields {
            out.append(contentsOf: n.utf8)
            out.append(contentsOf: [0x3A, 0x20])
            out.append(contentsOf: v.utf8)
            out.append(contentsOf: [0x0D, 0x0A])
        }
        out.append(contentsOf: [0x0D, 0x0A])
    }

    public subscript(name: String) -> String? { first(name) }

    public func first(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    public func all(_ name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveEquals(name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool { first(name) != nil }

    public mutating func add(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    public mutating func remove(_ name: String) { fields.removeAll { $0.name.caseInsensitiveEquals(name) } }

    public mutating func replace(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func removeAll(where pred: (String) -> Bool) { fields.removeAll { pred($0.name) } }

    /// Comma-separated tokens of every field called `name`, lower-cased (`Connection`, `Transfer-Encoding`).
    public func tokens(_ name: String) -> [String] {
        all(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces().lowercased() }.filter { !$0.isEmpty }
    }
}

extension StringProtocol {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7a) }
    }

    package func trimmingSpaces() -> String {
        let s = Substring(self), u = s.utf8
        guard let first = u.firstIndex(where: { $0 != 0x20 && $0 != 0x09 }),
              let last = u.lastIndex(where: { $0 != 0x20 && $0 != 0x09 }) else { return "" }
        return String(s[first...last])
    }
}

public struct HTTPRequestHead {
    public var method: String
    public var target: String
    public var minorVersion: Int
    public var headers: HTTPHeaders

    public init(method: String, target: String, minorVersion: Int = 1, headers: HTTPHeaders = HTTPHeaders()) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.headers = headers
    }

    /// Whether the client allows the connection to stay open after this exchange.
    public var wantsKeepAlive: Bool {
        guard headers.contains("Connection") else { return minorVersion >= 1 }
        let conn = headers.tokens("Connection")
        return minorVersion >= 1 ? !conn.contains("close") : conn.contains("keep-alive")
    }

    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256)
        out.append(contentsOf: method.utf8)
        out.append(0x20)
        out.append(contentsOf: target.utf8)
        out.append(contentsOf: " HTTP/1.".utf8)
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: minorVersion))
        out.append(contentsOf: [0x0D, 0x0A])
        headers.append(to: &out)
        return out
    }
}

public struct HTTPResponseHead {
    public var status: Int
    public var reason: String
    public var minorVersion: Int
    public var headers: HTTPHeaders

    public init(status: Int, reason: String? = nil, minorVersion: Int = 1, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.reason = reason ?? HTTPResponseHead.reasonPhrase(status)
        self.minorVersion = minorVersion
        self.headers = headers
    }

    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(384)
        out.append(contentsOf: "HTTP/1.".utf8)
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: minorVersion))
        out.append(0x20)
        out.append(contentsOf: String(status).utf8)
        out.append(0x20)
        out.append(contentsOf: reason.utf8)
        out.append(contentsOf: [0x0D, 0x0A])
        headers.append(to: &out)
        return out
    }

    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 407: return "Proxy Authentication Required"
        case 408: return "Request Timeout"
        case 411: return "Length Required"
        case 413: return "Payload Too Large"
        case 414: return "URI Too Long"
        case 416: return "Range Not Satisfiable"
        case 417: return "Expectation Failed"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Status \(status)"
        }
    }
}

/// Hop-by-hop fields a proxy must not forward (RFC 9110 7.6.1), plus whatever `Connection` names.
public enum HopByHop {
    static let fixed: Set<String> = [
        "connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
        "te", "trailer", "transfer-encoding", "upgrade",
    ]

    public static func strip(_ headers: inout HTTPHeaders) {
        let named = Set(headers.tokens("Connection"))
        headers.removeAll { name in
            let l = name.lowercased()
            return fixed.contains(l) || named.contains(l)
        }
    }
}
