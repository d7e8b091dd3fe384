import XCTest
@testable import UV
@testable import HTTP
@testable import Config

final class HeadParserTests: XCTestCase {
    func parse(_ s: String) -> HeadParseResult<HTTPRequestHead> {
        Array(s.utf8).withUnsafeBytes { HeadParser.parseRequest($0) }
    }

    func head(_ s: String) throws -> (HTTPRequestHead, Int) {
        // A thrown error fails the test (a skip would hide a parser that stopped completing).
        guard case .complete(let h, let n) = parse(s) else { throw Incomplete(result: "\(parse(s))") }
        return (h, n)
    }

    func failure(_ s: String) -> HTTPParseError? {
        if case .failed(let e) = parse(s) { return e }
        return nil
    }

    func testRequestWithHeaders() throws {
        let raw = "GET http://reg.test:5000/v2/ HTTP/1.1\r\nHost: reg.test:5000\r\nAccept:  a, b \r\n\r\nNEXT"
        let (h, n) = try head(raw)
        XCTAssertEqual(h.method, "GET")
        XCTAssertEqual(h.target, "http://reg.test:5000/v2/")
        XCTAssertEqual(h.minorVersion, 1)
        XCTAssertEqual(h.headers["host"], "reg.test:5000")
        XCTAssertEqual(h.headers["ACCEPT"], "a, b")
        XCTAssertEqual(n, raw.utf8.count - 4, "consumed stops at the blank line; pipelined bytes stay")
    }

    func testBareLineFeedsAccepted() throws {
        let (h, _) = try head("HEAD /v2/ HTTP/1.0\nHost: x\n\n")
        XCTAssertEqual(h.method, "HEAD")
        XCTAssertEqual(h.minorVersion, 0)
        XCTAssertFalse(h.wantsKeepAlive)
    }

    func testIncompleteNeedsMore() {
        guard case .needMore = parse("GET / HTTP/1.1\r\nHost: x\r\n") else { return XCTFail() }
    }

    func testMalformed() {
        XCTAssertEqual(failure("GET /\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/2.0\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("G(T / HTTP/1.1\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nNo colon here\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nA: b\u{1}c\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n")?.status, 400)
        XCTAssertEqual(failure("GET /a b HTTP/1.1\r\n\r\n")?.status, 400)
    }

    func testHeadTooLargeIs431() {
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HeadParser.maxHeadSize) + "\r\n\r\n"
        XCTAssertEqual(failure(big), .headTooLarge)
        XCTAssertEqual(failure(big)?.status, 431)
        // Without its end yet, but already over the limit: refused without waiting for more.
        let partial = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HeadParser.maxHeadSize + 10)
        XCTAssertEqual(failure(partial)?.status, 431)
        // Just under the limit is fine.
        let ok = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HeadParser.maxHeadSize - 100) + "\r\n\r\n"
        guard case .complete = parse(ok) else { return XCTFail() }
    }

    func testResponseHead() {
        let r = Array("HTTP/1.1 307 Temporary Redirect\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n".utf8)
            .withUnsafeBytes { HeadParser.parseResponse($0) }
        guard case .complete(let h, _) = r else { return XCTFail() }
        XCTAssertEqual(h.status, 307)
        XCTAssertEqual(h.reason, "Temporary Redirect")
        XCTAssertEqual(h.headers["location"], "/x")
        let bad = Array("HTTP/1.1 2000 OK\r\n\r\n".utf8).withUnsafeBytes { HeadParser.parseResponse($0) }
        guard case .failed = bad else { return XCTFail() }
    }

    func testKeepAliveSemantics() throws {
        XCTAssertTrue(try head("GET / HTTP/1.1\r\n\r\n").0.wantsKeepAlive)
        XCTAssertFalse(try head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").0.wantsKeepAlive)
        XCTAssertTrue(try head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").0.wantsKeepAlive)
    }

    func testHopByHopStripped() {
        var h = HTTPHeaders([("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Proxy-Authorization", "Basic x"),
                             ("Keep-Alive", "5"), ("TE", "trailers"), ("Accept", "a"), ("Authorization", "Bearer t"),
                             ("Proxy-Connection", "keep-alive"), ("Upgrade", "h2c"), ("Trailer", "x")])
        HopByHop.strip(&h)
        XCTAssertEqual(h.fields.map(\.name), ["Accept", "Authorization"])
    }
}

struct Incomplete: Error, CustomStringConvertible {
    let result: String
    var description: String { "the head did not parse completely: \(result)" }
}
