import Glibc
import UV
import HTTP

/// Sends bytes of a task's file to one client, cheapest way first, without the loop ever waiting
/// for the disk: only once their pages are in memory (read on the pool if not, see `PageWarmer`);
/// to a plain TCP client with sendfile(2), no copy through this process; else (TLS, or the socket
/// is full) a copy through the stream. A one-byte queued write as the "socket has room" probe
/// halved throughput when tried; a 64 KiB chunk does not.
final class FileSender {
    let task: CacheTask
    let exchange: Exchange
    /// Look before sending whether the pages are in memory (a download's own pieces just written need not).
    let warm: Bool
    /// Where the sender's bytes end (a piece's end): pages past it are never read ahead.
    let end: Int64?
    private var warmer: PageWarmer?
    /// What is copied when the client's socket is full.
    static let probeChunk = 64 << 10
    /// Bytes go from the file to the client's socket through this during one call.
    private let buffer = EventLoop.context.scratch(for: FileSender.self, bytes: CacheReader.chunk)

    enum Outcome {
        /// That many bytes went out (or were queued).
        case sent(Int)
        /// Nothing now: `ready` (pages read) or the exchange's `onWritable` (socket drained) comes next.
        case wait
        case failed(String)
    }

    init(task: CacheTask, exchange: Exchange, warm: Bool, end: Int64? = nil) {
        self.task = task
        self.exchange = exchange
        self.warm = warm
        self.end = end
    }

    func send(at pos: Int64, count: Int, ready: @escaping () -> Void) -> Outcome {
        var n = count
        if warm, warmer == nil, let length = task.contentLength { warmer = PageWarmer(task: task, length: min(length, end ?? length)) }
        if let warmer, !warmer.isWarm(pos, n, ready: ready) { return .wait }
        // When the socket is full, one small chunk is copied instead: its queued write is what
        // tells the loop the socket has room again (libuv watches its own sockets).
        switch exchange.sendBodyFromFile(task.dataFD, offset: pos, count: n) {
        case .sent(let k)?:
            return .sent(k)
        case .queueBusy?:
            return .wait
        case .full?:
            n = min(n, FileSender.probeChunk)
        case .unavailable?, nil:
            break
        }
        do {
            let got = try task.read(offset: pos, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            guard got == n else { throw SystemError(op: "short read", path: nil, errno: EIO) }
            exchange.sendBody(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            return .sent(n)
        } catch {
            return .failed("\(error)")
        }
    }
}
