internal import CUV
import UV

/// Incremental SHA-256 (OpenSSL EVP).
public final class SHA256Digest {
    private let ctx: OpaquePointer

    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ b: UnsafeRawBufferPointer) {
        if b.count > 0 { EVP_DigestUpdate(ctx, b.baseAddress, b.count) }
    }

    /// The 32 digest bytes; the object is spent afterwards.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return out
    }

    /// The digest as lower-case hex; the object is spent afterwards.
    public func finalizeHex() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return Hex.encode(out)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let d = SHA256Digest()
        bytes.withUnsafeBytes { d.update($0) }
        return d.finalizeHex()
    }
}

/// HMAC-SHA256 (OpenSSL), for the peer port's request tokens.
public enum HMACSHA256 {
    public static func mac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        _ = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress, m.count, &out, &len)
            }
        }
        return Array(out.prefix(Int(len)))
    }

    /// Compares in time independent of where the first difference is.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in 0..<a.count { d |= a[i] ^ b[i] }
        return d == 0
    }
}
