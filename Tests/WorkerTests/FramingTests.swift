import XCTest
@testable import UV
@testable import HTTP
@testable import Config

final class FramingTests: XCTestCase {
    func req(_ headers: [(String, String)], minor: Int = 1) -> HTTPRequestHead {
        HTTPRequestHead(method: "POST", target: "/", minorVersion: minor, headers: HTTPHeaders(headers))
    }

    func testRequestFraming() throws {
        XCTAssertEqual(try Framing.request(req([])), BodyFraming.none)
        XCTAssertEqual(try Framing.request(req([("Content-Length", "10")])), .length(10))
        XCTAssertEqual(try Framing.request(req([("Content-Length", "0")])), BodyFraming.none)
        XCTAssertEqual(try Framing.request(req([("Content-Length", "7"), ("Content-Length", "7")])), .length(7))
        XCTAssertEqual(try Framing.request(req([("Transfer-Encoding", "chunked")])), .chunked)
    }

    func testSmugglingShapesRefused() {
        XCTAssertThrowsError(try Framing.request(req([("Content-Length", "5"), ("Transfer-Encoding", "chunked")])))
        XCTAssertThrowsError(try Framing.request(req([("Content-Length", "5"), ("Content-Length", "6")])))
        XCTAssertThrowsError(try Framing.request(req([("Content-Length", "5, 6")])))
        XCTAssertThrowsError(try Framing.request(req([("Content-Length", "-1")])))
        XCTAssertThrowsError(try Framing.request(req([("Content-Length", "+5")])))
        XCTAssertThrowsError(try Framing.request(req([("Transfer-Encoding", "gzip")])))
        XCTAssertThrowsError(try Framing.request(req([("Transfer-Encoding", "chunked, chunked")])))
        XCTAssertThrowsError(try Framing.request(req([("Transfer-Encoding", "chunked")], minor: 0)))
    }

    func testResponseFraming() throws {
        let ok = HTTPResponseHead(status: 200, headers: HTTPHeaders([("Content-Length", "9")]))
        XCTAssertEqual(try Framing.response(ok, requestMethod: "GET"), .length(9))
        XCTAssertEqual(try Framing.response(ok, requestMethod: "HEAD"), BodyFraming.none)
        XCTAssertEqual(try Framing.response(HTTPResponseHead(status: 304), requestMethod: "GET"), BodyFraming.none)
        XCTAssertEqual(try Framing.response(HTTPResponseHead(status: 204), requestMethod: "GET"), BodyFraming.none)
        XCTAssertEqual(try Framing.response(HTTPResponseHead(status: 200), requestMethod: "GET"), .untilClose)
        let chunked = HTTPResponseHead(status: 200, headers: HTTPHeaders([("Transfer-Encoding", "chunked")]))
        XCTAssertEqual(try Framing.response(chunked, requestMethod: "GET"), .chunked)
    }

    /// Decodes `wire` fed in pieces of `step` bytes; returns body and bytes consumed.
    func decode(_ framing: BodyFraming, _ wire: String, step: Int) throws -> (String, Int, Bool) {
        var d = BodyDecoder(framing)
        var body: [UInt8] = []
        let bytes = Array(wire.utf8)
        var consumed = 0
        var i = 0
        while i < bytes.count && !d.isDone {
            let end = min(i + step, bytes.count)
            let used = try bytes[i..<end].withUnsafeBytes { try d.decode($0) { body.append(contentsOf: $0) } }
            consumed += used
            if used < end - i { break }
            i = end
        }
        return (String(decoding: body, as: UTF8.self), consumed, d.isDone)
    }

    func testChunkedAnySplit() throws {
        let wire = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nGET /next"
        for step in [1, 2, 3, 7, 64, 1000] {
            let (body, consumed, done) = try decode(.chunked, wire, step: step)
            XCTAssertEqual(body, "Wikipedia in\r\n\r\nchunks.", "step \(step)")
            XCTAssertTrue(done)
            XCTAssertEqual(consumed, wire.utf8.count - "GET /next".utf8.count, "step \(step)")
        }
    }

    func testChunkedMalformed() {
        XCTAssertThrowsError(try decode(.chunked, "zz\r\n", step: 100))
        XCTAssertThrowsError(try decode(.chunked, "3\r\nabcX\r\n", step: 100))
        XCTAssertThrowsError(try decode(.chunked, "\r\n", step: 100))
        XCTAssertThrowsError(try decode(.chunked, "1000000000000000\r\n", step: 100))
    }

    func testLengthLeavesPipelinedBytes() throws {
        let (body, consumed, done) = try decode(.length(5), "helloGET / HTTP/1.1", step: 3)
        XCTAssertEqual(body, "hello")
        XCTAssertEqual(consumed, 5)
        XCTAssertTrue(done)
    }

    func testTruncatedBodyIsNotComplete() throws {
        var d = BodyDecoder(.length(10))
        _ = try Array("abc".utf8).withUnsafeBytes { try d.decode($0) { _ in } }
        XCTAssertFalse(d.finishAtEOF())
        var c = BodyDecoder(.untilClose)
        XCTAssertTrue(c.finishAtEOF())
    }
}
