// Module HTTP: HTTP/1.1 on both sides: the parser, framing, server connections and exchanges,
// request targets and upstream URLs, upstream connections, the pool, origin fetches, typed upstream errors.
// May import: UV, TLS, Metrics (counting).

import Foundation
import UV
import Metrics

/// One request and its response, as a handler sees it: request body in, response out, with
/// backpressure both ways. Callbacks run on the worker's loop.
public final class Exchange {
    public let request: HTTPRequestHead
    public let hasRequestBody: Bool
    let connection: ServerConnection
    let stopwatch = Stopwatch()

    /// Request body bytes (valid during the call), then its end.
    public var onBody: ((UnsafeRawBufferPointer) -> Void)? { didSet { flushBufferedBody() } }
    public var onBodyEnd: (() -> Void)? { didSet { flushBufferedBody() } }
    /// The client went away before the response was finished.
    public var onAbort: (() -> Void)?
    /// The client's socket drained after `isWriteBlocked` was true.
    public var onWritable: (() -> Void)?

    private var state = ResponseState.awaitingHead
    public var headSent: Bool { state.headSent }
    public var isFinished: Bool { state.isFinished }
    package var status = 0
    private var bodyBytes: UInt64 = 0
    private(set) var bodyPaused = false
    private var bufferedBody: [UInt8] = []
    private var bodyEnded = false
    private var bodyEndDelivered = false

    /// Called once, when the exchange's access line is written: its end, whichever way it ended.
    package var onEnded: (() -> Void)?

    /// Fields added to this request's access-log line (upstream, rule, decision, error).
    public var logFields: [(String, LogValue)] = []
    /// How the request came in (`requests_total{mode}`); proxy until a handler says otherwise.
    public private(set) var mode = RequestMode.proxy
    /// Where the response body came from (`response_bytes_total{source}`).
    public var source = ByteSource.origin

    /// Sets the mode, for the metrics and the access line.
    public func setMode(_ m: RequestMode) {
        mode = m
        logFields.append(("mode", .string(m.name)))
    }

    init(request: HTTPRequestHead, connection: ServerConnection, hasBody: Bool) {
        self.request = request
        self.connection = connection
        self.hasRequestBody = hasBody
    }

    public var peer: String { connection.peer }

    // MARK: Request body

    func deliverBody(_ b: UnsafeRawBufferPointer) {
        if let onBody, bufferedBody.isEmpty {
            onBody(b)
        } else {
            // No consumer yet (the handler is still dialing upstream): hold it and stop reading.
            bufferedBody.append(contentsOf: b)
            pauseRequestBody()
        }
    }

    func deliverBodyEnd() {
        bodyEnded = true
        flushBufferedBody()
    }

    private func flushBufferedBody() {
        guard let onBody else { return }
        if !bufferedBody.isEmpty {
            let b = bufferedBody
            bufferedBody = []
            b.withUnsafeBytes { onBody($0) }
        }
        if bodyEnded, !bodyEndDelivered, let end = onBodyEnd {
            bodyEndDelivered = true
            end()
        }
    }

    public func pauseRequestBody() {
        bodyPaused = true
        connection.pauseBody()
    }

    public func resumeRequestBody() {
        bodyPaused = false
        connection.resumeBody()
    }

    /// Whether the whole request body has been handed to `onBody`.
    public var requestBodyComplete: Bool { !hasRequestBody || bodyEndDelivered }

    // MARK: Response

    /// Sends the status line and headers. `bodyLength` nil means unknown: chunked for HTTP/1.1
    /// clients, close-delimited for HTTP/1.0. Hop-by-hop framing headers are set here.
    public func sendHead(_ head: HTTPResponseHead, bodyLength: UInt64?) {
        let noBody = request.method == "HEAD" || head.status == 204 || head.status == 304 || head.status < 200
        let writer = ResponseState.writer(bodyLength: bodyLength, hasBody: !noBody, clientMinor: request.minorVersion)
        guard state.sendHead(writer) else { return }
        status = head.status
        var h = head
        h.minorVersion = 1
        h.headers.remove("Transfer-Encoding")
        if let n = bodyLength {
            if !(request.method == "HEAD" && h.headers.contains("Content-Length")) && head.status != 204 && head.status != 304 {
                h.headers.replace("Content-Length", String(n))
            }
        } else if !noBody {
            h.headers.remove("Content-Length")
            if writer == .chunked { h.headers.add("Transfer-Encoding", "chunked") }
        }
        if !request.wantsKeepAlive || writer == .untilClose || connection.closeAfterResponse {
            h.headers.replace("Connection", "close")
        } else if request.minorVersion == 0 {
            h.headers.replace("Connection", "keep-alive")
        }
        connection.write(h.serialized())
    }

    public func sendBody(_ b: UnsafeRawBufferPointer) {
        guard case .body(let writer) = state, b.count > 0, request.method != "HEAD" else { return }
        bodyBytes += UInt64(b.count)
        if writer == .chunked {
            connection.flushWrites()
            ChunkedEncoder.write(b, to: connection.socket)
        } else {
            connection.write(b)
        }
    }

    public func sendBody(_ b: [UInt8]) { b.withUnsafeBytes { sendBody($0) } }

    /// Body bytes straight from a file to a plain TCP client (sendfile(2)), when the response has a
    /// length and nothing is queued before them; nil when that is not possible here (TLS, chunked,
    /// HEAD): send the bytes instead. `.queueBusy` means wait for `onWritable`, which then comes only
    /// once every queued byte is out.
    public func sendBodyFromFile(_ fd: Int32, offset: Int64, count: Int) -> UVStream.FileSend? {
        guard case .body(let writer) = state, writer == .identity, request.method != "HEAD",
              let tcp = connection.socket as? TCP else { return nil }
        connection.flushWrites()
        let r = tcp.sendFile(fd, offset: offset, count: count)
        switch r {
        case .sent(let n): bodyBytes += UInt64(n)
        case .queueBusy, .full: tcp.lowWater = 0
        case .unavailable: break
        }
        return r
    }

    public var isWriteBlocked: Bool { connection.isWriteBlocked }

    /// The response is complete. The connection is reused when both sides allow it.
    public func finish() {
        guard let writer = state.finish() else { return }
        (connection.socket as? TCP)?.lowWater = UVStream.defaultLowWater
        if writer == .chunked { connection.write(ChunkedEncoder.last) }
        logAccess(bytes: bodyBytes)
        clearCallbacks()
        connection.finished(self, reusable: writer != .untilClose && requestBodyComplete)
    }

    /// A complete small response.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: String = "") {
        var head = HTTPResponseHead(status: status, headers: headers)
        if !body.isEmpty && !head.headers.contains("Content-Type") {
            head.headers.add("Content-Type", "text/plain; charset=utf-8")
        }
        let bytes = Array(body.utf8)
        sendHead(head, bodyLength: UInt64(bytes.count))
        sendBody(bytes)
        finish()
    }

    /// Ends the exchange without a clean end (the upstream failed mid-body): the client must not
    /// mistake a truncated body for a complete one, so the connection is dropped.
    public func abort(reason: String) {
        guard state.end() else { return }
        logFields.append(("error", .string(reason)))
        logAccess(bytes: bodyBytes)
        clearCallbacks()
        connection.abortConnection()
    }

    func connectionAborted() {
        guard state.end() else { return }
        logFields.append(("error", .string("client connection closed")))
        logAccess(bytes: bodyBytes)
        let cb = onAbort
        clearCallbacks()
        cb?()
    }

    private func clearCallbacks() {
        onBody = nil
        onBodyEnd = nil
        onAbort = nil
        onWritable = nil
    }

    /// What the connection does when the worker drains after it became a tunnel or hijacked session.
    public func whenDrainedWhileDetached(_ f: @escaping () -> Void) { connection.onDrainWhileDetached = f }

    /// Takes the client's socket for a CONNECT tunnel, with any bytes it already sent.
    public func detachForTunnel() -> (ByteStream, [UInt8]) {
        _ = state.end()
        clearCallbacks()
        return connection.detachForTunnel()
    }

    package func logAccess(bytes: UInt64) {
        let ms = stopwatch.elapsedMs
        var f: [(String, LogValue)] = [
            ("method", .string(request.method)), ("url", .string(request.target)), ("status", .int(status)),
            ("bytes", .int(Int(bytes))), ("durationMs", .double((ms * 1000).rounded() / 1000)),
            ("peer", .string(peer)),
        ]
        f.append(contentsOf: logFields)
        Log.shared.access(f)
        Metrics.request(mode, status: status, seconds: ms / 1000)
        if mode != .peer { Metrics.responseBytes(source, Int(bytes)) }
        _ = state.end()
        let ended = onEnded
        onEnded = nil
        ended?()
    }
}
