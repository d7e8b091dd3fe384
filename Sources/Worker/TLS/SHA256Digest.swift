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

    /// The digest as lower-case hex; the object is spent afterwards.
    public func finalizeHex() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return out.map { String(format: "%02x", $0) }.joined()
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let d = SHA256Digest()
        bytes.withUnsafeBytes { d.update($0) }
        return d.finalizeHex()
    }
}
