import XCTest
@testable import UV
@testable import HTTP

final class RetryAndBackoffTests: XCTestCase {
    func testCrashLoopBacksOffAndAHealthyRunResets() {
        var b = RestartBackoff()
        XCTAssertEqual(b.exited(afterLivingMs: 10), 100)
        XCTAssertEqual(b.exited(afterLivingMs: 10), 200)
        XCTAssertEqual((0..<10).map { _ in b.exited(afterLivingMs: 0) }.last, 5000, "capped")
        XCTAssertEqual(b.exited(afterLivingMs: 999), 5000)
        XCTAssertEqual(b.exited(afterLivingMs: 1000), 0, "a worker that lived is restarted at once")
        XCTAssertEqual(b.exited(afterLivingMs: 5), 100, "and a new crash loop starts from the beginning")
    }

    func testOnlyADeadReusedConnectionIsRetried() {
        XCTAssertTrue(RetryPolicy.shouldRetry(connectionWasReused: true, responseStarted: false, requestHasBody: false,
                                              responseDelivered: false, cancelled: false))
        for i in 0..<5 {
            var f = [true, false, false, false, false]
            f[i].toggle()
            XCTAssertFalse(RetryPolicy.shouldRetry(connectionWasReused: f[0], responseStarted: f[1], requestHasBody: f[2],
                                                   responseDelivered: f[3], cancelled: f[4]), "flag \(i)")
        }
    }
}
