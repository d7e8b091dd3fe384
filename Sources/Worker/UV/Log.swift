import Foundation

public enum LogValue {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)

    var json: String {
        switch self {
        case .string(let s): return Log.quote(s)
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? String(d) : "null"
        case .bool(let b): return b ? "true" : "false"
        }
    }

    func appendJSON(to out: inout [UInt8]) {
        switch self {
        case .string(let s): Log.appendQuoted(s, to: &out)
        case .int(let i): LogValue.appendDecimal(i, to: &out)
        case .double(let d):
            // Durations have at most three decimals: written from integers, as Swift would print
            // them ("12.0", "0.685"); anything else goes through Swift's shortest form.
            let scaled = (d * 1000).rounded()
            guard d.isFinite, abs(d) < 1e12, abs(scaled - d * 1000) < 1e-6 else { return out.append(contentsOf: json.utf8) }
            let m = Int(scaled)
            if m < 0 { out.append(UInt8(ascii: "-")) }
            let a = abs(m)
            LogValue.appendDecimal(a / 1000, to: &out)
            out.append(UInt8(ascii: "."))
            // The three decimals, trailing zeros dropped (at least one digit stays).
            var frac = a % 1000, unit = 100
            repeat {
                out.append(UInt8(ascii: "0") + UInt8(frac / unit))
                frac %= unit
                unit /= 10
            } while frac > 0
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        }
    }

    /// `i` in decimal, without a String in between (every access line has several).
    static func appendDecimal(_ i: Int, to out: inout [UInt8]) {
        if i < 0 {
            out.append(UInt8(ascii: "-"))
            if i == Int.min { return out.append(contentsOf: String(i).utf8.dropFirst()) }
        }
        var v = i < 0 ? -i : i
        if v < 10 { return out.append(UInt8(ascii: "0") + UInt8(v)) }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for Int.max
        var n = 0
        withUnsafeMutableBytes(of: &digits) { d in
            while v > 0 {
                d[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            }
            out.append(contentsOf: d[(24 - n)...])
        }
    }
}

/// Values a log line can carry.
public protocol LogConvertible { var logValue: LogValue { get } }
extension String: LogConvertible { public var logValue: LogValue { .string(self) } }
extension Substring: LogConvertible { public var logValue: LogValue { .string(String(self)) } }
extension Int: LogConvertible { public var logValue: LogValue { .int(self) } }
extension Int32: LogConvertible { public var logValue: LogValue { .int(Int(self)) } }
extension Int64: LogConvertible { public var logValue: LogValue { .int(Int(self)) } }
extension UInt64: LogConvertible { public var logValue: LogValue { .int(Int(self)) } }
extension Double: LogConvertible { public var logValue: LogValue { .double(self) } }
extension Bool: LogConvertible { public var logValue: LogValue { .bool(self) } }
extension LogValue: LogConvertible { public var logValue: LogValue { self } }

/// JSON-lines logger: one `write(2)` per line on an O_APPEND file shared by the master and its workers,
/// so lines from different processes never interleave.
public final class Log {
    /// Replaced once at startup, before the loop or any pool thread runs; each line is one write(2).
    public nonisolated(unsafe) static var shared = Log(path: nil, role: "main")

    private var fd: Int32 = -1
    public let path: String?
    let role: String
    let pid = Int(getpid())
    private lazy var pidText = String(pid)
    /// Warnings and errors are also printed to stderr (startup problems must be visible).
    public var echoToStderr = true

    public init(path: String?, role: String) {
        self.path = path
        self.role = role
    }

    /// Opens `<logDir>/daemon/core.log`, creating the folders.
    public static func open(logDir: String, role: String) throws -> Log {
        let dir = (logDir as NSString).appendingPathComponent("daemon")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        let path = (dir as NSString).appendingPathComponent("core.log")
        let log = Log(path: path, role: role)
        log.fd = Foundation.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        if log.fd < 0 { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
        return log
    }

    /// Opens the file at `path` again (SIGUSR1, after logrotate moved it away): lines go to the new
    /// file from now on. On failure the old descriptor stays and the error is returned.
    @discardableResult
    public func reopen() -> String? {
        guard let path else { return nil }
        let fresh = Foundation.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard fresh >= 0 else { return String(cString: strerror(errno)) }
        flush()
        let old = fd
        fd = fresh
        if old >= 0 { Foundation.close(old) }
        return nil
    }

    public typealias Fields = KeyValuePairs<String, any LogConvertible>

    public func info(_ msg: String, _ fields: Fields = [:]) { write("info", msg, fields.map { ($0.key, $0.value.logValue) }) }
    public func warn(_ msg: String, _ fields: Fields = [:]) { write("warn", msg, fields.map { ($0.key, $0.value.logValue) }) }
    public func error(_ msg: String, _ fields: Fields = [:]) { write("error", msg, fields.map { ($0.key, $0.value.logValue) }) }
    public func access(_ fields: [(String, LogValue)]) { write("info", "access", fields, buffer: bufferAccess) }

    /// Access lines wait in memory (up to `bufferLimit` bytes or `flushAfterMs`) and go to the file in
    /// one write, like nginx's `access_log ... buffer=`: a busy worker makes one system call per 64
    /// KiB of log, not one per request. Any other line flushes them first, so the order holds.
    public var bufferAccess = false
    private var pending: [UInt8] = []
    private var flushTimer: LoopTimer?
    static let bufferLimit = 64 << 10
    static let flushAfterMs: UInt64 = 100

    /// Writes the buffered access lines now (before an exit, a reopen, or any other line).
    public func flush() {
        guard !pending.isEmpty else { return }
        if fd >= 0 { pending.withUnsafeBytes { _ = Foundation.write(fd, $0.baseAddress, $0.count) } }
        pending.removeAll(keepingCapacity: true)
    }

    public func write(_ level: String, _ msg: String, _ fields: [(String, LogValue)], buffer: Bool = false) {
        // Built as bytes, straight into the buffer of pending lines: an access line is written for
        // every request. Any other line first flushes what is pending, then goes out at once.
        if !(buffer && fd >= 0) { flush() }
        let first = pending.isEmpty
        if first { pending.reserveCapacity(Log.bufferLimit + 1024) }
        let start = pending.count
        pending.append(contentsOf: "{\"level\":\"".utf8)
        pending.append(contentsOf: level.utf8)
        pending.append(contentsOf: "\",\"ts\":\"".utf8)
        appendTimestamp(to: &pending)
        pending.append(contentsOf: "\",\"role\":\"".utf8)
        pending.append(contentsOf: role.utf8)
        pending.append(contentsOf: "\",\"pid\":".utf8)
        pending.append(contentsOf: pidText.utf8)
        pending.append(contentsOf: ",\"msg\":".utf8)
        Log.appendQuoted(msg, to: &pending)
        for (k, v) in fields {
            // Field names are the code's own identifiers: nothing in them needs escaping.
            pending.append(contentsOf: [UInt8(ascii: ","), UInt8(ascii: "\"")])
            pending.append(contentsOf: k.utf8)
            pending.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
            v.appendJSON(to: &pending)
        }
        pending.append(contentsOf: "}\n".utf8)
        if buffer && fd >= 0 {
            if pending.count >= Log.bufferLimit {
                flush()
            } else if first {
                if flushTimer == nil {
                    let t = LoopTimer()
                    t.unref()
                    flushTimer = t
                }
                flushTimer?.start(ms: Log.flushAfterMs) { [weak self] in self?.flush() }
            }
            return
        }
        if fd >= 0 {
            flush()
        } else {
            pending.removeSubrange(start...)
        }
        if fd < 0 || (echoToStderr && level != "info") {
            let plain = "dfget \(level): \(msg)" + fields.map { " \($0.0)=\($0.1.plain)" }.joined() + "\n"
            FileHandle.standardError.write(plain.data(using: .utf8)!)
        }
    }

    /// `2026-11-29 04:37:10.329`, local time. The part up to the seconds is formatted once a second:
    /// every access line needs one.
    func appendTimestamp(to out: inout [UInt8]) {
        var tv = timeval()
        gettimeofday(&tv, nil)
        if tv.tv_sec != cachedSecond {
            var t = time_t(tv.tv_sec)
            var tmv = tm()
            localtime_r(&t, &tmv)
            cachedPrefix = "\(tmv.tm_year + 1900)-\(Log.pad2(tmv.tm_mon + 1))-\(Log.pad2(tmv.tm_mday)) \(Log.pad2(tmv.tm_hour)):\(Log.pad2(tmv.tm_min)):\(Log.pad2(tmv.tm_sec))"
            cachedSecond = tv.tv_sec
        }
        let ms = Int(tv.tv_usec / 1000)
        out.append(contentsOf: cachedPrefix.utf8)
        out.append(contentsOf: [UInt8(ascii: "."), UInt8(ascii: "0") + UInt8(ms / 100), UInt8(ascii: "0") + UInt8(ms / 10 % 10),
                                UInt8(ascii: "0") + UInt8(ms % 10)])
    }

    private var cachedSecond = -1
    private var cachedPrefix = ""

    private static func pad2(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }

    static func quote(_ s: String) -> String {
        var out = [UInt8]()
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `s` as a JSON string. UTF-8 bytes of 0x80 and above pass as they are (a Swift string is valid
    /// UTF-8); quotes, backslashes and control characters are escaped.
    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            // Most values need no escape: one copy.
            if !u.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }) {
                out.append(contentsOf: u)
                return
            }
            for b in u {
                switch b {
                case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0a: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0d: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xf)]])
                default: out.append(b)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension LogValue {
    var plain: String {
        switch self {
        case .string(let s): return s
        default: return json
        }
    }
}
