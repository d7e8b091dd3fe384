import XCTest
import Foundation
@testable import UV

/// Access-line values are written as bytes without Swift's number printing; they must read back
/// as the same JSON numbers.
final class LogFormatTests: XCTestCase {
    func json(_ v: LogValue) -> String {
        var out = [UInt8]()
        v.appendJSON(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func testIntegersAsSwiftWritesThem() {
        for i in [0, 7, 10, 42, 1_000, 209_779_282, -1, -305, Int.max, Int.min] {
            XCTAssertEqual(json(.int(i)), String(i))
        }
    }

    func testDurationsWithUpToThreeDecimals() {
        XCTAssertEqual(json(.double(0.685)), "0.685")
        XCTAssertEqual(json(.double(12.0)), "12.0")
        XCTAssertEqual(json(.double(1.5)), "1.5")
        XCTAssertEqual(json(.double(0.05)), "0.05")
        XCTAssertEqual(json(.double(14325.0)), "14325.0")
        XCTAssertEqual(json(.double(-2.25)), "-2.25")
        // Anything else goes through Swift's own shortest form.
        XCTAssertEqual(json(.double(0.0004)), String(0.0004))
        XCTAssertEqual(json(.double(1e13)), String(1e13))
        XCTAssertEqual(json(.double(.nan)), "null")
        for d in [0.001, 0.999, 3.142, 99.9, 123456.789] {
            let v = try? JSONSerialization.jsonObject(with: Data(json(.double(d)).utf8), options: .fragmentsAllowed) as? Double
            XCTAssertEqual(v ?? .nan, d, accuracy: 1e-9, "\(d)")
        }
    }

    func testStringsAndBools() {
        XCTAssertEqual(json(.string("a\"b\\c\n")), #""a\"b\\c\n""#)
        XCTAssertEqual(json(.bool(true)), "true")
    }
}
