import Foundation

/// Milliseconds since creation, for the durations the logs report.
package struct Stopwatch {
    private let start = DispatchTime.now().uptimeNanoseconds
    package init() {}
    package var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
}
