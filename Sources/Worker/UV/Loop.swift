// Module UV: the libuv runtime (the loop and what it owns, handles, streams, TCP, pipes, timers,
// signals, child processes, DNS, file watches), the syscall helper and the JSON-lines log.
// May import: CUV (internally), Foundation. Nothing of this package.

internal import CUV
import Foundation

/// The process's single libuv loop. Everything built on it is confined to the thread that runs it.
public enum EventLoop {
    static var raw: UnsafeMutablePointer<uv_loop_t> { uv_default_loop() }

    /// Runs until no active handle is left.
    public static func run() { uv_run(raw, UV_RUN_DEFAULT) }

    /// What the loop owns besides its handles (scratch memory).
    public static var context: LoopContext { LoopContext.of(raw) }

    /// Milliseconds of the loop's cached clock.
    public static var nowMs: UInt64 { uv_now(raw) }

    public static func ignoreSIGPIPE() { cuv_ignore_sigpipe() }

    /// Raises the soft limit of open files to the hard limit (every connection is one, or two when
    /// relayed); returns the limit in force.
    @discardableResult
    public static func raiseFileLimit() -> UInt64 {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0 else { return 0 }
        if r.rlim_cur < r.rlim_max {
            var raised = r
            raised.rlim_cur = r.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { r = raised }
        }
        return UInt64(r.rlim_cur)
    }

    /// Absolute path of the running executable.
    public static func executablePath() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        var size = buf.count
        guard uv_exepath(&buf, &size) == 0 else { return CommandLine.arguments[0] }
        return String(nulTerminated: buf)
    }
}

/// A libuv error code (negative errno) with its text.
public struct UVError: Error, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public var description: String { String(cString: uv_strerror(code)) }
    public static let eof = UV_EOF.rawValue
    public static let canceled = UV_ECANCELED.rawValue
    public static let connectionRefused = UV_ECONNREFUSED.rawValue
}

@discardableResult
func check(_ rc: Int32) throws -> Int32 {
    if rc < 0 { throw UVError(rc) }
    return rc
}

extension String {
    /// The text of a NUL-terminated C buffer.
    package init(nulTerminated buf: [CChar]) {
        self = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
