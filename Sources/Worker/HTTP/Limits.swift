/// Per-connection limits of the HTTP server. Values are generous for registry traffic and bound memory.
/// The tunable values are written only before the loop runs (worker start, tests) and read on the loop
/// thread: hence `nonisolated(unsafe)`.
public enum Limits {
    /// Time a client has to send a complete request head once it started one (slow-loris bound).
    public nonisolated(unsafe) static var headerTimeoutMs: UInt64 = 30_000
    /// An idle keep-alive connection is closed after this long.
    public nonisolated(unsafe) static var keepAliveTimeoutMs: UInt64 = 60_000
    /// Bytes of pipelined requests buffered while a response is in progress before reading pauses.
    public static let pipelineBuffer = 128 * 1024
    /// An origin that sends nothing for this long while a response is due is given up (502, or an
    /// aborted client). `upstreamTimeout` in dfget.yaml.
    public nonisolated(unsafe) static var upstreamIdleMs: UInt64 = 60_000
    /// Dialing an upstream gives up after this long.
    public nonisolated(unsafe) static var connectTimeoutMs: UInt64 = 10_000
    /// Idle upstream connections kept per host, and for how long.
    public static let poolPerHost = 64
    /// A client with bytes queued for it that takes none for this long is cut (a stalled reader
    /// would hold its connection, and its upstream or cache lock, forever).
    public nonisolated(unsafe) static var writeTimeoutMs: UInt64 = 60_000
    /// A CONNECT tunnel with no byte either way for this long is closed.
    public nonisolated(unsafe) static var tunnelIdleMs: UInt64 = 300_000
    public nonisolated(unsafe) static var poolIdleMs: UInt64 = 30_000
}
