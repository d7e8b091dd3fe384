import XCTest
@testable import TLS
@testable import HTTP

/// The 502 texts clients and logs see; e2e tests and operators grep for them.
final class UpstreamErrorTests: XCTestCase {
    func testDescriptions() {
        XCTAssertEqual("\(UpstreamError.unresolvable("reg.test:5000", reason: "unknown node or service"))",
                       "upstream reg.test:5000: cannot resolve host: unknown node or service")
        XCTAssertEqual("\(UpstreamError.unreachable("127.0.0.1:9", reason: "connection refused"))", "upstream 127.0.0.1:9: connection refused")
        // Refused is what the dialer saw (ECONNREFUSED), not a word in the text.
        XCTAssertTrue(UpstreamError.unreachable("h:1", reason: "connection refused", refused: true).isRefusal)
        XCTAssertFalse(UpstreamError.unreachable("h:1", reason: "connection refused").isRefusal)
        XCTAssertFalse(UpstreamError.unreachable("h:1", reason: "connect timed out").isRefusal)
        XCTAssertEqual("\(UpstreamError.tls("r:443", .verifyFailed("certificate verify failed: x")))", "upstream r:443: certificate verify failed: x")
        XCTAssertEqual("\(UpstreamError.silent("r:80", seconds: 60))", "upstream r:80: no data for 60 s")
        XCTAssertEqual("\(UpstreamError.closedMidBody("r:80"))", "upstream r:80: connection closed mid-body")
        XCTAssertEqual(UpstreamError.headTooLarge("r:80").upstream, "r:80")
        XCTAssertEqual(UpstreamError.writeFailed("r:80", reason: "broken pipe").detail, "write failed: broken pipe")
    }
}
