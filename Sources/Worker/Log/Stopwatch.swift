import Foundation

/// Milliseconds since creation, for the durations the logs report.
struct Stopwatch {
    private let start = DispatchTime.now().uptimeNanoseconds
    var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
}
