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

final class ContinuationRetryTests: XCTestCase {
    func testBackoffDoublesAndStopsAtTheAttempts() {
        var r = ContinuationRetry(maxAttempts: 4, patienceMs: 60_000)
        XCTAssertEqual([r.next(), r.next(), r.next(), r.next()], [500, 1000, 2000, 4000])
        XCTAssertNil(r.next(), "past maxAttempts the response is aborted")
    }

    func testRetryAfterIsHonouredButCapped() {
        var r = ContinuationRetry()
        XCTAssertEqual(r.next(retryAfterMs: 3000), 3000)
        XCTAssertEqual(r.next(retryAfterMs: 3_600_000), 10_000, "a registry asking for an hour gets 10 s")
    }

    func testTheClientsPatienceBoundsTheTotalWait() {
        var r = ContinuationRetry(maxAttempts: 100, patienceMs: 5000)
        var total: UInt64 = 0
        while let w = r.next() { total += w }
        XCTAssertLessThanOrEqual(total, 5000)
        XCTAssertEqual(total, 500 + 1000 + 2000, "the next (4 s) would pass the patience")
    }

    func testOnlyOverloadAndGatewayFailuresAreAskedAgain() {
        XCTAssertEqual([429, 500, 502, 503, 504, 404, 401, 200].map(ContinuationRetry.retryable(status:)),
                       [true, false, true, true, true, false, false, false])
    }
}
