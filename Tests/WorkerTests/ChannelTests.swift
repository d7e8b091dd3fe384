import XCTest
@testable import Config
@testable import Worker

/// What the master and its workers say to each other, and the master's decisions, without processes.
final class ChannelTests: XCTestCase {
    func testEveryByteOnTheChannelIsASocketOrACommand() {
        XCTAssertEqual(WorkerCommand.decode(Handoff.proxy.rawValue), .socket(.proxy))
        XCTAssertEqual(WorkerCommand.decode(Handoff.peer.rawValue), .socket(.peer))
        for c in WorkerCommand.allCases { XCTAssertEqual(WorkerCommand.decode(c.rawValue), .command(c)) }
        XCTAssertEqual(WorkerCommand.decode(0), .unknown(0))
        let sockets = Set([Handoff.proxy, .peer].map(\.rawValue)), commands = Set(WorkerCommand.allCases.map(\.rawValue))
        XCTAssertTrue(sockets.isDisjoint(with: commands), "a command must never be taken for a socket (it has no handle)")
    }

    func testDispatchIsRoundRobinOverTheWorkersUp() {
        XCTAssertEqual((0..<6).map { ReloadPlan.dispatch($0, up: 3) }, [0, 1, 2, 0, 1, 2])
        XCTAssertNil(ReloadPlan.dispatch(5, up: 0), "nobody up: the socket waits")
        XCTAssertEqual(ReloadPlan.dispatch(Int.min, up: 3).map { (0..<3).contains($0) }, true, "a counter that wrapped still picks a worker")
    }

    func testAReloadSaysWhichListenersItKeeps() throws {
        let a = try ConfigLoader.load(text: "proxy:\n  tcpListen:\n    port: 65001\n", file: "a.yaml").config
        var b = a
        XCTAssertEqual(ReloadPlan.listenerChanges(from: a, to: b), [])
        b.upload.tcpListen.ports = 7000...7000
        XCTAssertEqual(ReloadPlan.listenerChanges(from: a, to: b), ["upload.tcpListen"])
        b.proxy?.tcpListen.listen = "127.0.0.2"
        XCTAssertEqual(ReloadPlan.listenerChanges(from: a, to: b), ["proxy.tcpListen", "upload.tcpListen"])
    }
}
