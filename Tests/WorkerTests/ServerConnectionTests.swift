import XCTest
@testable import UV
@testable import HTTP
@testable import Config
@testable import Proxy

/// Drives a real `ServerConnection` over loopback on the libuv loop. `EventLoop.run()` returns only
/// when every handle is closed, so each test also proves the connection leaves nothing behind.
final class ServerConnectionTests: XCTestCase {
    func exchange(_ request: String, handler: @escaping (Exchange) -> Void) throws -> String {
        let listener = TCP()
        try listener.bind(SocketAddress(host: "127.0.0.1", port: 0))
        var server: ServerConnection?
        try listener.listen {
            guard let s = listener.accept() else { return }
            server = ServerConnection(socket: s, handler: handler)
            server!.start()
        }
        let port = listener.localAddress!.port
        let client = TCP()
        var response: [UInt8] = []
        let deadline = LoopTimer()
        deadline.start(ms: 5000) {
            XCTFail("no end of response within 5 s; got \(String(decoding: response, as: UTF8.self))")
            client.close()
            server?.close()
            listener.close()
            deadline.close()
        }
        client.connect(try SocketAddress(host: "127.0.0.1", port: port)) { err in
            XCTAssertNil(err)
            client.write(request)
            client.startReading { ev in
                switch ev {
                case .data(let b): response.append(contentsOf: b)
                case .eof, .error:
                    client.close()
                    listener.close()
                    deadline.close()
                }
            }
        }
        EventLoop.run()
        return String(decoding: response, as: UTF8.self)
    }

    func echoTarget(_ ex: Exchange) { ex.respond(status: 200, body: ex.request.target) }

    func bodies(_ raw: String) -> [String] {
        raw.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.components(separatedBy: "\r\n\r\n").last ?? "" }
    }

    func testPipelinedRequestsAnsweredInOrder() throws {
        var pending: [Exchange] = []
        let raw = try exchange("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n") { ex in
            // The first answer is late: later pipelined requests must wait for it.
            if ex.request.target == "/a" {
                pending.append(ex)
                let t = LoopTimer()
                t.start(ms: 30) {
                    t.close()
                    pending.removeAll()
                    ex.respond(status: 200, body: ex.request.target)
                }
            } else {
                self.echoTarget(ex)
            }
        }
        XCTAssertEqual(bodies(raw), ["/a", "/b", "/c"])
        XCTAssertTrue(raw.hasSuffix("/c"))
        XCTAssertTrue(raw.contains("Connection: close"))
    }

    func testChunkedRequestBodyAndChunkedResponse() throws {
        let req = "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        let raw = try exchange(req) { ex in
            var got: [UInt8] = []
            ex.onBody = { got.append(contentsOf: $0) }
            ex.onBodyEnd = {
                ex.sendHead(HTTPResponseHead(status: 200), bodyLength: nil)
                ex.sendBody(got)
                ex.finish()
            }
        }
        XCTAssertTrue(raw.contains("Transfer-Encoding: chunked"), raw)
        XCTAssertTrue(raw.hasSuffix("\r\n\r\n7\r\nabcdefg\r\n0\r\n\r\n"), raw)
    }

    func testExpectContinue() throws {
        let req = "PUT /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhi"
        let raw = try exchange(req) { ex in
            var n = 0
            ex.onBody = { n += $0.count }
            ex.onBodyEnd = { ex.respond(status: 201, body: "\(n)") }
        }
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"), raw)
        XCTAssertTrue(raw.hasSuffix("\r\n\r\n2"))
    }

    func testMalformedRequestGets400AndClose() throws {
        var handled = 0
        let raw = try exchange("GET / HTTP/1.1\r\nHost x\r\n\r\n") { _ in handled += 1 }
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), raw)
        XCTAssertTrue(raw.contains("header line without colon"))
        XCTAssertEqual(handled, 0)
    }

    func testOversizedHeadGets431() throws {
        let raw = try exchange("GET / HTTP/1.1\r\nX: " + String(repeating: "y", count: 70_000) + "\r\n\r\n") { _ in XCTFail() }
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 431 "), String(raw.prefix(80)))
    }

    func testSmugglingShapeGets400() throws {
        let raw = try exchange("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") { _ in XCTFail() }
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 400 "), raw)
        XCTAssertTrue(raw.contains("both Content-Length and Transfer-Encoding"))
    }

    func testGoodRequestAfterBadOneOnAnotherConnectionStillServed() throws {
        _ = try exchange("BAD\r\n\r\n") { _ in }
        let raw = try exchange("GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n", handler: echoTarget)
        XCTAssertTrue(raw.hasSuffix("/ok"))
    }

    func testHeadResponseHasNoBody() throws {
        let raw = try exchange("HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n") { ex in
            var h = HTTPResponseHead(status: 200)
            h.headers.add("Content-Length", "1234")
            ex.sendHead(h, bodyLength: 0)
            ex.finish()
        }
        XCTAssertTrue(raw.contains("Content-Length: 1234\r\n"), raw)
        XCTAssertTrue(raw.hasSuffix("\r\n\r\n"))
    }

    func testHeaderTimeoutGets408() throws {
        let saved = Limits.headerTimeoutMs
        Limits.headerTimeoutMs = 100
        defer { Limits.headerTimeoutMs = saved }
        let raw = try exchange("GET /slow HTTP/1.1\r\nHost: x\r\n") { _ in XCTFail("an incomplete head must not be handled") }
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 408 "), raw)
    }

    func testIdleKeepAliveConnectionIsClosed() throws {
        let saved = Limits.keepAliveTimeoutMs
        Limits.keepAliveTimeoutMs = 100
        defer { Limits.keepAliveTimeoutMs = saved }
        // No `Connection: close`: only the idle timeout can end this connection (else the 5 s deadline fails).
        let raw = try exchange("GET /one HTTP/1.1\r\n\r\n", handler: echoTarget)
        XCTAssertTrue(raw.hasSuffix("/one"), raw)
        XCTAssertFalse(raw.contains("Connection: close"))
    }
}
