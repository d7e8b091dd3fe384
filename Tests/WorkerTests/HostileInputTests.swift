import XCTest
@testable import HTTP
@testable import Cache
@testable import Registry

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

final class PossessionProbeTests: XCTestCase {
    func testOffsetsStayInsideTheFirstMiBAndTheBlob() {
        for _ in 0..<200 {
            let p = PossessionProbe(length: 10 << 20)
            XCTAssertEqual(p.count, 64)
            XCTAssertTrue((0...(1 << 20) - 64).contains(p.offset))
        }
        let tiny = PossessionProbe(length: 10)
        XCTAssertEqual(tiny.count, 10)
        XCTAssertEqual(tiny.offset, 0)
        XCTAssertEqual(PossessionProbe(length: 1000, offset: 100).rangeHeader, "bytes=100-163")
    }

    func testCollectorsReadRangedAndWholeAnswers() {
        let blob = (0..<300).map { UInt8($0 % 251) }
        let p = PossessionProbe(length: 300, offset: 100)
        let ranged = p.collector(status: 206)!
        XCTAssertNil(blob[100..<130].withUnsafeBytes { ranged.take($0) })
        XCTAssertEqual(blob[130..<164].withUnsafeBytes { ranged.take($0) }, Array(blob[100..<164]))
        let whole = p.collector(status: 200)!
        XCTAssertNil(blob[0..<150].withUnsafeBytes { whole.take($0) })
        XCTAssertEqual(blob[150...].withUnsafeBytes { whole.take($0) }, Array(blob[100..<164]))
        XCTAssertNil(p.collector(status: 404))
    }
}
