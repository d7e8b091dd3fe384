internal import CUV
import Glibc

/// Bytes between two TCP sockets without passing through the process: splice(2) from each socket
/// into a pipe and from the pipe into the other socket, the kernel moving pages. Both sockets are
/// taken over as they are (copies of their descriptors, watched with `Poll`); their libuv handles
/// must be idle (not reading, nothing queued) until the relay is closed. Half-close is kept: the
/// end of one direction shuts down the other socket's write side.
public final class SpliceRelay {
    private final class Direction {
        let from: Int32
        let to: Int32
        let pipe: (read: Int32, write: Int32)
        var inPipe = 0
        var sawEnd = false
        var done = false
        var moved = 0
        init(from: Int32, to: Int32, pipe: (Int32, Int32)) {
            self.from = from
            self.to = to
            self.pipe = pipe
        }
        /// Waits for its source to be readable (empty pipe) or its target writable (bytes in it).
        var wantsRead: Bool { !done && !sawEnd && inPipe == 0 }
        var wantsWrite: Bool { !done && inPipe > 0 }
    }

    private let fds: (Int32, Int32)
    private let polls: (Poll, Poll)
    private let ab: Direction
    private let ba: Direction
    private var closed = false
    /// Bytes moved so far from a to b and from b to a (called after each round that moved some).
    public var onProgress: ((_ aToB: Int, _ bToA: Int) -> Void)?
    /// Both directions ended cleanly (nil), or one failed.
    public var onEnd: ((Int32?) -> Void)?

    static let pipeSize: Int32 = 1 << 20

    /// Nil when the relay cannot be set up here (no descriptor, pipe or poll): relay another way.
    public init?(_ a: TCP, _ b: TCP) {
        guard a.writeQueueSize == 0, b.writeQueueSize == 0, !a.isReading, !b.isReading,
              let fa = a.fileDescriptor, let fb = b.fileDescriptor else { return nil }
        var made: [Int32] = []
        func cleanup() { made.forEach { _ = Glibc.close($0) } }
        let da = fcntl(fa, F_DUPFD_CLOEXEC, 0), db = fcntl(fb, F_DUPFD_CLOEXEC, 0)
        made += [da, db].filter { $0 >= 0 }
        var p1: [Int32] = [-1, -1], p2: [Int32] = [-1, -1]
        guard da >= 0, db >= 0, cuv_pipe_nonblock(&p1) == 0 else { cleanup(); return nil }
        made += p1
        guard cuv_pipe_nonblock(&p2) == 0 else { cleanup(); return nil }
        made += p2
        for fd in [p1[1], p2[1]] { _ = cuv_set_pipe_size(fd, SpliceRelay.pipeSize) }
        guard let pa = try? Poll(fd: da) else { cleanup(); return nil }
        guard let pb = try? Poll(fd: db) else { pa.close(); cleanup(); return nil }
        fds = (da, db)
        polls = (pa, pb)
        ab = Direction(from: da, to: db, pipe: (p1[0], p1[1]))
        ba = Direction(from: db, to: da, pipe: (p2[0], p2[1]))
    }

    public func start() { pump() }

    /// Stops and closes the copies and pipes (the sockets' own handles are the owner's to close).
    public func close() {
        guard !closed else { return }
        closed = true
        onProgress = nil
        onEnd = nil
        polls.0.close()
        polls.1.close()
        for fd in [fds.0, fds.1, ab.pipe.read, ab.pipe.write, ba.pipe.read, ba.pipe.write] { _ = Glibc.close(fd) }
    }

    private func pump() {
        guard !closed else { return }
        let before = (ab.moved, ba.moved)
        for d in [ab, ba] {
            if let e = move(d) { return end(e) }
        }
        if ab.moved != before.0 || ba.moved != before.1 { onProgress?(ab.moved, ba.moved) }
        guard !closed else { return }
        if ab.done && ba.done { return end(nil) }
        // What each socket waits for: a's readable for a→b, a's writable for b→a, and so on (the
        // poll is changed only when that changes: each change is an epoll_ctl).
        let want = (ab.wantsRead, ba.wantsWrite, ba.wantsRead, ab.wantsWrite)
        if watching == nil || want.0 != watching!.0 || want.1 != watching!.1 {
            polls.0.watch(readable: want.0, writable: want.1) { [weak self] _, _, error in self?.event(error) }
        }
        if watching == nil || want.2 != watching!.2 || want.3 != watching!.3 {
            polls.1.watch(readable: want.2, writable: want.3) { [weak self] _, _, error in self?.event(error) }
        }
        watching = want
    }

    private var watching: (Bool, Bool, Bool, Bool)?

    private func event(_ error: Bool) {
        if error { return end(EIO) }
        pump()
    }

    /// Moves what it can in one direction now; an errno when the relay must end.
    private func move(_ d: Direction) -> Int32? {
        while !d.done {
            if d.inPipe > 0 {
                let m = cuv_splice(d.pipe.read, d.to, d.inPipe)
                if m > 0 {
                    d.inPipe -= m
                    d.moved += m
                    continue
                }
                return errno == EAGAIN ? nil : (m == 0 ? EPIPE : errno)
            }
            if d.sawEnd {
                _ = shutdown(d.to, Int32(SHUT_WR))
                d.done = true
                return nil
            }
            let n = cuv_splice(d.from, d.pipe.write, Int(SpliceRelay.pipeSize))
            if n > 0 {
                d.inPipe += n
            } else if n == 0 {
                d.sawEnd = true
            } else {
                return errno == EAGAIN ? nil : errno
            }
        }
        return nil
    }

    private func end(_ error: Int32?) {
        let cb = onEnd
        close()
        cb?(error)
    }
}
