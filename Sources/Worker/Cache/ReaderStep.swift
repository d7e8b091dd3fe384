/// What a cache reader does next: the table of the task's state × the reader's own progress
/// (head sent or not, bytes left, the client's socket backed up), decided without I/O.
enum ReaderStep: Equatable {
    /// The task failed or stopped caching before the head: serve the client another way.
    case fallback(reason: String)
    /// The origin's bytes are not the blob, found before the head: 502 naming the digest.
    case refuseCorrupt
    /// Caching stopped after the head: the rest of the body comes from the origin by range.
    case continueFromOrigin
    /// The content itself failed after the head: the client must see a cut, not an end.
    case abortFailed
    /// The downloader has not learnt the length yet.
    case waitForLength
    /// The client's range is outside the content.
    case unsatisfiable(length: Int64)
    /// Send the head for these bytes (then decide again).
    case sendHead(Range<Int64>)
    /// Every byte is sent.
    case finish
    /// The client's socket is backed up: wait for it to drain.
    case waitForClient
    /// The next piece has not landed (or the last byte waits for the digest): wait for the task.
    case waitForTask
    /// The task is complete but its bytes are not there.
    case inconsistent
    /// Send `count` bytes from the current position.
    case send(count: Int)

    struct Task {
        var state: TaskState
        var contentLength: Int64?
        /// Bytes present from an offset, up to a maximum.
        var readable: (_ from: Int64, _ max: Int) -> Int
    }

    struct Progress {
        var headSent: Bool
        /// The next byte to send and the end of the response, once the head is out.
        var pos: Int64
        var end: Int64
        var clientBlocked: Bool
    }

    static func next(_ task: Task, _ me: Progress, range: ByteRange, chunk: Int) -> ReaderStep {
        switch task.state {
        case .corrupt:
            return me.headSent ? .abortFailed : .refuseCorrupt
        case .failed, .uncached:
            if !me.headSent { return .fallback(reason: task.state == .uncached ? "caching stopped" : "task failed") }
            return task.state == .uncached ? .continueFromOrigin : .abortFailed
        case .empty, .downloading, .complete:
            break
        }
        guard let length = task.contentLength else { return .waitForLength }
        if !me.headSent {
            guard let r = range.resolve(length: length) else { return .unsatisfiable(length: length) }
            return .sendHead(r)
        }
        if me.pos >= me.end { return .finish }
        if me.clientBlocked { return .waitForClient }
        // The last byte of a response waits for the task to be complete (its digest verified): a
        // client never holds a whole body of unverified content.
        let complete = task.state == .complete
        let sendable = complete ? me.end : me.end - 1
        let n = me.pos < sendable ? task.readable(me.pos, Int(min(Int64(chunk), sendable - me.pos))) : 0
        if n == 0 { return complete ? .inconsistent : .waitForTask }
        return .send(count: n)
    }
}
