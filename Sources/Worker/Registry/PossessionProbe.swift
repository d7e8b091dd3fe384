/// What a registry that did not supply a cached blob must show to get it served from the cache: a
/// few bytes at a random offset. The offset lies in the first MiB, so a registry that ignores
/// `Range` and answers 200 can still be checked without reading a whole layer.
struct PossessionProbe {
    static let bytes = 64
    static let window: Int64 = 1 << 20
    let offset: Int64
    let count: Int

    init(length: Int64, offset: Int64? = nil) {
        count = Int(min(Int64(PossessionProbe.bytes), length))
        let last = max(0, min(length, PossessionProbe.window) - Int64(count))
        self.offset = offset.map { min(max(0, $0), last) } ?? Int64.random(in: 0...last)
    }

    var rangeHeader: String { "bytes=\(offset)-\(offset + Int64(count) - 1)" }

    /// How the answer's body is read: a 206 starts at the offset, a 200 at zero; anything else
    /// proves nothing.
    func collector(status: Int) -> Collector? {
        switch status {
        case 206: return Collector(skip: 0, count: count)
        case 200: return Collector(skip: offset, count: count)
        default: return nil
        }
    }

    /// Gathers `count` bytes after skipping `skip`.
    final class Collector {
        private var skip: Int64
        private let count: Int
        private var got: [UInt8] = []

        init(skip: Int64, count: Int) {
            self.skip = skip
            self.count = count
        }

        /// The bytes, once all have arrived.
        func take(_ b: UnsafeRawBufferPointer) -> [UInt8]? {
            var chunk = b[...]
            if skip > 0 {
                let drop = Int(min(skip, Int64(chunk.count)))
                skip -= Int64(drop)
                chunk = chunk.dropFirst(drop)
            }
            got.append(contentsOf: chunk.prefix(count - got.count))
            return got.count == count ? got : nil
        }
    }
}
