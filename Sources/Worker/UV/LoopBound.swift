import Foundation

/// A value that only the loop's thread touches (the process has one loop, run by its main thread,
/// and every object built on it is confined to that thread): the one place where that promise is
/// made to the compiler, instead of a `nonisolated(unsafe)` per variable (swift-nio's
/// `NIOLoopBound`). Values written before the loop runs (worker start, tests) are on that thread
/// too. Debug builds check it on every access.
public final class LoopBound<Value>: @unchecked Sendable {
    private var stored: Value

    public init(_ value: Value) { stored = value }

    public var value: Value {
        get {
            check()
            return stored
        }
        set {
            check()
            stored = newValue
        }
    }

    @inline(__always) private func check() {
        #if DEBUG
        precondition(Thread.isMainThread, "a loop-bound value touched off the loop's thread")
        #endif
    }
}
