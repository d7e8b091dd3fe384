internal import CUV

/// AES-256-GCM (OpenSSL EVP): a message sealed under a key, bound to `aad` (said, not hidden), as
/// nonce (12) ‖ ciphertext ‖ tag (16). For the peer port's request bodies, which carry a client's
/// registry credentials between members.
public enum SealedBox {
    static let nonceBytes = 12, tagBytes = 16

    /// Nil only if OpenSSL fails (no randomness).
    public static func seal(_ plain: [UInt8], key: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard key.count == 32, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var nonce = [UInt8](repeating: 0, count: nonceBytes)
        guard RAND_bytes(&nonce, Int32(nonceBytes)) == 1,
              EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1 else { return nil }
        var n: Int32 = 0
        if !aad.isEmpty { guard EVP_EncryptUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1 else { return nil } }
        var out = [UInt8](repeating: 0, count: plain.count + tagBytes)
        var total: Int32 = 0
        if !plain.isEmpty {
            guard EVP_EncryptUpdate(ctx, &out, &n, plain, Int32(plain.count)) == 1 else { return nil }
            total = n
        }
        let ok = out.withUnsafeMutableBufferPointer { b in EVP_EncryptFinal_ex(ctx, b.baseAddress! + Int(total), &n) }
        guard ok == 1 else { return nil }
        total += n
        var tag = [UInt8](repeating: 0, count: tagBytes)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(tagBytes), &tag) == 1 else { return nil }
        return nonce + out.prefix(Int(total)) + tag
    }

    /// The message, or nil when `box` was not sealed under `key` with `aad` (or was altered).
    public static func open(_ box: [UInt8], key: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard key.count == 32, box.count >= nonceBytes + tagBytes, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let nonce = Array(box.prefix(nonceBytes)), cipher = Array(box.dropFirst(nonceBytes).dropLast(tagBytes))
        var tag = Array(box.suffix(tagBytes))
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1 else { return nil }
        var n: Int32 = 0
        if !aad.isEmpty { guard EVP_DecryptUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1 else { return nil } }
        var out = [UInt8](repeating: 0, count: cipher.count + tagBytes)
        var total: Int32 = 0
        if !cipher.isEmpty {
            guard EVP_DecryptUpdate(ctx, &out, &n, cipher, Int32(cipher.count)) == 1 else { return nil }
            total = n
        }
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(tagBytes), &tag) == 1 else { return nil }
        let ok = out.withUnsafeMutableBufferPointer { b in EVP_DecryptFinal_ex(ctx, b.baseAddress! + Int(total), &n) }
        guard ok == 1 else { return nil }
        return Array(out.prefix(Int(total + n)))
    }
}
