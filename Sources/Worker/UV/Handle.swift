internal import CUV

/// The only place that touches `Unmanaged`: every libuv handle and request keeps its Swift owner in
/// `data`, retained once from creation until libuv's final callback for it.
public class UVHandle {
    let raw: UnsafeMutableRawPointer
    var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }
    public private(set) var isClosing = false
    /// Called once, from the close callback, after which the handle is gone.
    public var onClose: (() -> Void)?

    init(type: uv_handle_type) {
        raw = UnsafeMutableRawPointer.allocate(byteCount: uv_handle_size(type), alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: uv_handle_size(type))
        // libuv never touches `data`: setting it before uv_*_init is fine. Released in `closeThunk`.
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit { raw.deallocate() }

    public func close() {
        guard !isClosing else { return }
        isClosing = true
        willClose()
        uv_close(handle, closeThunk)
    }

    func markClosing() { isClosing = true }

    /// Subclasses drop their callbacks here so that no closure outlives the handle's use.
    func willClose() {}

    public func unref() { uv_unref(handle) }

    static func owner(_ h: UnsafeMutablePointer<uv_handle_t>) -> UVHandle {
        Unmanaged<UVHandle>.fromOpaque(h.pointee.data).takeUnretainedValue()
    }
    static func owner<T>(_ p: UnsafeMutablePointer<T>) -> UVHandle {
        owner(UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self))
    }
}

let closeThunk: uv_close_cb = { h in
    let owner = Unmanaged<UVHandle>.fromOpaque(h!.pointee.data).takeRetainedValue()
    let done = owner.onClose
    owner.onClose = nil
    done?()
}

/// What the loop owns besides its handles: scratch memory, one buffer per user type. Each user
/// hands the bytes on before it returns (no callback keeps a pointer past its return) and no two
/// users share a buffer, so they need no locks on the loop's one thread. Reached through the loop's
/// `data`, it lives as long as the loop.
public final class LoopContext {
    private var buffers: [ObjectIdentifier: UnsafeMutableRawBufferPointer] = [:]
    private var objects: [ObjectIdentifier: AnyObject] = [:]

    /// The loop's one instance of `T`, made on first use (loop-wide state such as the DNS cache).
    public func object<T: AnyObject>(_: T.Type, make: () -> T) -> T {
        if let o = objects[ObjectIdentifier(T.self)] { return unsafeDowncast(o, to: T.self) }
        let o = make()
        objects[ObjectIdentifier(T.self)] = o
        return o
    }

    /// The buffer of `user`, allocated on first use; a user asks for the same size every time.
    public func scratch(for user: Any.Type, bytes: Int) -> UnsafeMutableRawBufferPointer {
        let key = ObjectIdentifier(user)
        if let b = buffers[key] {
            precondition(b.count == bytes, "one scratch size per user")
            return b
        }
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
        buffers[key] = b
        return b
    }

    static func of(_ loop: UnsafeMutablePointer<uv_loop_t>) -> LoopContext {
        if let d = loop.pointee.data { return Unmanaged<LoopContext>.fromOpaque(d).takeUnretainedValue() }
        let c = LoopContext()
        // Never released: the loop lives as long as the process.
        loop.pointee.data = Unmanaged.passRetained(c).toOpaque()
        return c
    }
}

/// An object's address as a C callback's context pointer, not retained: whoever installs the
/// callback keeps the object alive for as long as the callback can run.
package enum ContextPointer {
    package static func to(_ object: AnyObject) -> UnsafeMutableRawPointer { Unmanaged.passUnretained(object).toOpaque() }
    package static func object<T: AnyObject>(_ p: UnsafeMutableRawPointer, as _: T.Type) -> T {
        Unmanaged<T>.fromOpaque(p).takeUnretainedValue()
    }
}

/// A libuv request (`uv_write_t`, `uv_connect_t`, ...) with the Swift state its callback needs.
/// Retained while libuv holds it; `take` releases it in the callback.
final class UVRequest<State> {
    let raw: UnsafeMutableRawPointer
    var state: State

    init(type: uv_req_type, state: State) {
        raw = UnsafeMutableRawPointer.allocate(byteCount: uv_req_size(type), alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: uv_req_size(type))
        self.state = state
        raw.assumingMemoryBound(to: uv_req_t.self).pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit { raw.deallocate() }

    func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> { raw.assumingMemoryBound(to: T.self) }

    /// Release the retain made at init: for the callback, or when the call that would have used it failed.
    static func take<T>(_ req: UnsafeMutablePointer<T>) -> UVRequest<State> {
        let data = UnsafeMutableRawPointer(req).assumingMemoryBound(to: uv_req_t.self).pointee.data!
        return Unmanaged<UVRequest<State>>.fromOpaque(data).takeRetainedValue()
    }
}
