import XCTest
import FuzzTargets

/// Every committed fuzz input (seeds, and each crash libFuzzer ever found) runs through its target
/// on every test run: a crash found once stays a test.
final class FuzzCorpusTests: XCTestCase {
    func testEveryCommittedInputRunsClean() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")
        var total = 0
        for target in FuzzTarget.allCases {
            for folder in ["corpus", "regressions"] {
                let dir = root.appendingPathComponent(folder).appendingPathComponent(target.rawValue)
                let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
                for name in names where !name.hasPrefix(".") {
                    let data = try Data(contentsOf: dir.appendingPathComponent(name))
                    data.withUnsafeBytes { target.run($0) }
                    total += 1
                }
            }
            XCTAssertFalse(((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("corpus/\(target.rawValue)").path)) ?? []).isEmpty,
                           "\(target.rawValue) has a seed corpus")
        }
        XCTAssertGreaterThan(total, 20)
    }
}
