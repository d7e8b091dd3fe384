import XCTest
@testable import HTTP
@testable import Cache

/// Values from the network at their extremes: answered, never trapped on.
final class HostileInputTests: XCTestCase {
    func testRangeEndsBeyondInt64AreClamped() {
        XCTAssertEqual(ByteRange.parse("bytes=0-9223372036854775807").resolve(length: 100), 0..<100)
        XCTAssertEqual(ByteRange.parse("bytes=99-9223372036854775807").resolve(length: 100), 99..<100)
        XCTAssertEqual(ByteRange.parse("bytes=-9223372036854775807").resolve(length: 100), 0..<100)
        XCTAssertEqual(ByteRange.parse("bytes=0-99999999999999999999"), .whole, "beyond Int64: not a position")
        XCTAssertEqual(ByteRange.parse("bytes=+1-+2"), .whole, "digits only")
        XCTAssertNil(ByteRange.parse("bytes=100-").resolve(length: 100))
    }

    func testRepositoryOfAMarkerRightAfterV2() {
        XCTAssertEqual(AuthConfirmations.repository("/v2/blobs/sha256:\(String(repeating: "a", count: 64))"),
                       "/v2/blobs/sha256:\(String(repeating: "a", count: 64))")
    }
}
