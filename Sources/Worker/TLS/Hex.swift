/// Lower-case hex, both ways: digests, peer tokens and bitmaps, ticket keys.
public enum Hex {
    /// Lower-case hex of `bytes` (a table, not `String(format:)`, which costs a formatter per byte:
    /// every cache hit hashes its authorization key).
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: bytes.count * 2) { buf in
            digits.withUTF8Buffer { d in
                for (i, b) in bytes.enumerated() {
                    buf[2 * i] = d[Int(b >> 4)]
                    buf[2 * i + 1] = d[Int(b & 0x0f)]
                }
            }
            return bytes.count * 2
        }
    }

    /// The bytes of lower-case hex; nil for anything else, or past 64 KiB of text.
    public static func decode<S: StringProtocol>(_ s: S) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0, u.count <= 1 << 16 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = v(u[i]), let lo = v(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
