import XCTest
@testable import Cache

/// The cache reader's decision table, row by row, without files or sockets.
final class ReaderStepTests: XCTestCase {
    func task(_ state: TaskState, length: Int64? = 100, present: Int64 = 100) -> ReaderStep.Task {
        ReaderStep.Task(state: state, contentLength: length, readable: { from, max in Int(Swift.max(0, Swift.min(present - from, Int64(max)))) })
    }

    func before() -> ReaderStep.Progress { .init(headSent: false, pos: 0, end: 0, clientBlocked: false) }
    func after(pos: Int64, end: Int64 = 100, blocked: Bool = false) -> ReaderStep.Progress {
        .init(headSent: true, pos: pos, end: end, clientBlocked: blocked)
    }

    func testFailureBeforeTheHeadFallsBackAndAfterItDependsOnWhy() {
        XCTAssertEqual(ReaderStep.next(task(.failed), before(), range: .whole, chunk: 10), .fallback(reason: "task failed"))
        XCTAssertEqual(ReaderStep.next(task(.uncached), before(), range: .whole, chunk: 10), .fallback(reason: "caching stopped"))
        XCTAssertEqual(ReaderStep.next(task(.uncached), after(pos: 50), range: .whole, chunk: 10), .continueFromOrigin)
        XCTAssertEqual(ReaderStep.next(task(.failed), after(pos: 50), range: .whole, chunk: 10), .abortFailed)
    }

    func testHeadWaitsForTheLengthThenFollowsTheRange() {
        XCTAssertEqual(ReaderStep.next(task(.downloading, length: nil), before(), range: .whole, chunk: 10), .waitForLength)
        XCTAssertEqual(ReaderStep.next(task(.downloading), before(), range: .whole, chunk: 10), .sendHead(0..<100))
        XCTAssertEqual(ReaderStep.next(task(.downloading), before(), range: .single(first: 10, last: 19), chunk: 10), .sendHead(10..<20))
        XCTAssertEqual(ReaderStep.next(task(.downloading), before(), range: .single(first: 100, last: nil), chunk: 10),
                       .unsatisfiable(length: 100))
    }

    func testBodyInChunksWithBackpressure() {
        XCTAssertEqual(ReaderStep.next(task(.complete), after(pos: 0), range: .whole, chunk: 30), .send(count: 30))
        XCTAssertEqual(ReaderStep.next(task(.complete), after(pos: 90), range: .whole, chunk: 30), .send(count: 10))
        XCTAssertEqual(ReaderStep.next(task(.complete), after(pos: 0, blocked: true), range: .whole, chunk: 30), .waitForClient)
        XCTAssertEqual(ReaderStep.next(task(.complete), after(pos: 100), range: .whole, chunk: 30), .finish)
        XCTAssertEqual(ReaderStep.next(task(.downloading, present: 40), after(pos: 40), range: .whole, chunk: 30), .waitForTask)
    }

    func testTheLastByteWaitsForVerification() {
        // All bytes are on disk but the digest is not checked yet: everything but the last byte goes.
        XCTAssertEqual(ReaderStep.next(task(.downloading), after(pos: 0), range: .whole, chunk: 1000), .send(count: 99))
        XCTAssertEqual(ReaderStep.next(task(.downloading), after(pos: 99), range: .whole, chunk: 1000), .waitForTask)
        XCTAssertEqual(ReaderStep.next(task(.complete), after(pos: 99), range: .whole, chunk: 1000), .send(count: 1))
    }

    func testCompleteButMissingBytesIsAnInconsistency() {
        XCTAssertEqual(ReaderStep.next(task(.complete, present: 50), after(pos: 50), range: .whole, chunk: 10), .inconsistent)
    }

    func testCorruptContentIsRefusedOrCut() {
        XCTAssertEqual(ReaderStep.next(task(.corrupt), before(), range: .whole, chunk: 10), .refuseCorrupt)
        XCTAssertEqual(ReaderStep.next(task(.corrupt), after(pos: 10), range: .whole, chunk: 10), .abortFailed)
    }
}
