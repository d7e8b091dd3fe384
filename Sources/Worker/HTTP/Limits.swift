import UV

/// Per-connection limits of the HTTP server. Values are generous for registry traffic and bound memory.
/// The tunable values are written only before the loop runs (worker start, tests) and read on the
/// loop's thread: they live in one `LoopBound`.
public enum Limits {
    public struct Tunable: Sendable {
        var headerTimeoutMs: UInt64 = 30_000
        var keepAliveTimeoutMs: UInt64 = 60_000
        var upstreamIdleMs: UInt64 = 60_000
        var connectTimeoutMs: UInt64 = 10_000
        var writeTimeoutMs: UInt64 = 60_000
        var tunnelIdleMs: UInt64 = 300_000
        var poolIdleMs: UInt64 = 30_000
    }
    static let tunable = LoopBound(Tunable())

    /// Time a client has to send a complete request head once it started one (slow-loris bound).
    public static var headerTimeoutMs: UInt64 { get { tunable.value.headerTimeoutMs } set { tunable.value.headerTimeoutMs = newValue } }
    /// An idle keep-alive connection is closed after this long.
    public static var keepAliveTimeoutMs: UInt64 { get { tunable.value.keepAliveTimeoutMs } set { tunable.value.keepAliveTimeoutMs = newValue } }
    /// Bytes of pipelined requests buffered while a response is in progress before reading pauses.
    public static let pipelineBuffer = 128 * 1024
    /// An origin that sends nothing for this long while a response is due is given up (502, or an
    /// aborted client). `upstreamTimeout` in dfget.yaml.
    public static var upstreamIdleMs: UInt64 { get { tunable.value.upstreamIdleMs } set { tunable.value.upstreamIdleMs = newValue } }
    /// Dialing an upstream gives up after this long.
    public static var connectTimeoutMs: UInt64 { get { tunable.value.connectTimeoutMs } set { tunable.value.connectTimeoutMs = newValue } }
    /// Idle upstream connections kept per host, and for how long.
    public static let poolPerHost = 64
    /// A client with bytes queued for it that takes none for this long is cut (a stalled reader
    /// would hold its connection, and its upstream or cache lock, forever).
    public static var writeTimeoutMs: UInt64 { get { tunable.value.writeTimeoutMs } set { tunable.value.writeTimeoutMs = newValue } }
    /// A CONNECT tunnel with no byte either way for this long is closed.
    public static var tunnelIdleMs: UInt64 { get { tunable.value.tunnelIdleMs } set { tunable.value.tunnelIdleMs = newValue } }
    public static var poolIdleMs: UInt64 { get { tunable.value.poolIdleMs } set { tunable.value.poolIdleMs = newValue } }
}
