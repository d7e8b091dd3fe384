import XCTest
@testable import TLS
@testable import HTTP

/// The connection state machines, driven by their events alone.
final class StateMachineTests: XCTestCase {
    func testResponseLifecycle() {
        var s = ResponseState.awaitingHead
        XCTAssertFalse(s.headSent)
        XCTAssertNil(s.finish(), "no clean end before a head")
        XCTAssertTrue(s.sendHead(.chunked))
        XCTAssertFalse(s.sendHead(.identity), "one head per response")
        XCTAssertTrue(s.headSent)
        XCTAssertEqual(s.finish(), .chunked)
        XCTAssertEqual(s, .finished(headSent: true))
        XCTAssertNil(s.finish())
        XCTAssertFalse(s.end(), "an ended response stays ended")
    }

    func testResponseEndsWithoutAHead() {
        var s = ResponseState.awaitingHead
        XCTAssertTrue(s.end())
        XCTAssertEqual(s, .finished(headSent: false))
        XCTAssertFalse(s.sendHead(.identity), "nothing goes out after the end")
    }

    func testResponseFraming() {
        XCTAssertEqual(ResponseState.writer(bodyLength: 10, hasBody: true, clientMinor: 1), .identity)
        XCTAssertEqual(ResponseState.writer(bodyLength: nil, hasBody: true, clientMinor: 1), .chunked)
        XCTAssertEqual(ResponseState.writer(bodyLength: nil, hasBody: true, clientMinor: 0), .untilClose)
        XCTAssertEqual(ResponseState.writer(bodyLength: nil, hasBody: false, clientMinor: 0), .identity)
    }

    func testUpstreamLifecycle() {
        var s = UpstreamState.idle
        XCTAssertFalse(s.expectsData)
        s = .awaitingHead
        XCTAssertTrue(s.expectsData)
        XCTAssertFalse(s.responseStarted)
        var beforeHead = s
        XCTAssertTrue(beforeHead.fail())
        XCTAssertEqual(beforeHead, .broken(afterHead: false))
        XCTAssertFalse(beforeHead.responseStarted, "a failure before the head may be retried")
        s = .body
        XCTAssertTrue(s.fail())
        XCTAssertTrue(s.responseStarted)
        XCTAssertFalse(s.fail(), "broken is final")
        XCTAssertFalse(s.expectsData)
    }

    func testUpstreamKeepAlive() {
        func head(_ minor: Int, _ connection: String?) -> HTTPResponseHead {
            var h = HTTPResponseHead(status: 200)
            h.minorVersion = minor
            if let connection { h.headers.add("Connection", connection) }
            return h
        }
        XCTAssertTrue(UpstreamState.keepAlive(head(1, nil), framing: .length(1)))
        XCTAssertFalse(UpstreamState.keepAlive(head(1, "close"), framing: .length(1)))
        XCTAssertFalse(UpstreamState.keepAlive(head(0, nil), framing: .length(1)))
        XCTAssertTrue(UpstreamState.keepAlive(head(0, "Keep-Alive"), framing: .length(1)))
        XCTAssertFalse(UpstreamState.keepAlive(head(1, nil), framing: .untilClose))
    }

    func testTLSReadActions() {
        XCTAssertEqual(TLSStreamState.readAction(.data(5), peerClosed: true), .deliver(5))
        XCTAssertEqual(TLSStreamState.readAction(.needMore, peerClosed: false), .waitForCiphertext)
        XCTAssertEqual(TLSStreamState.readAction(.needMore, peerClosed: true), .endOfStream)
        XCTAssertEqual(TLSStreamState.readAction(.closed, peerClosed: false), .endOfStream)
        XCTAssertEqual(TLSStreamState.readAction(.failed(.closed), peerClosed: false), .fail(.closed))
    }
}
