import TLS

/// Verifies a content-addressed response on its way to a client, whichever path serves it: every
/// byte is hashed, and the last one is held back until the digest matched, so a client never holds
/// a whole body that is not the blob it asked for. A whole blob (200) is verified; so is the rest of
/// one whose first part was already sent and hashed (a 206 continuation). Other answers pass as they are.
package final class BlobVerifier {
    /// The expected sha256, lower-case hex.
    package let digest: String
    private let hasher: SHA256Digest
    private let continuation: Bool
    private var active = false
    private var remaining: UInt64?
    private var held: UInt8?
    /// Leading body bytes that are hashed but not sent: the client already has them.
    private var skip: Int

    /// `hashedSoFar`: the hash of the bytes before this body (a continuation); `skip`: how many
    /// of this body's first bytes the client already got by other means (hashed, not sent again).
    package init(digest: String, hashedSoFar: SHA256Digest? = nil, skip: Int = 0) {
        self.digest = digest
        hasher = hashedSoFar ?? SHA256Digest()
        continuation = hashedSoFar != nil
        self.skip = skip
    }

    /// The response head arrived: verify a whole blob (or the continuation of one), with a known
    /// length or not; anything else passes untouched.
    package func arm(status: Int, framing: BodyFraming) {
        active = status == (continuation ? 206 : 200)
        if case .length(let n) = framing { remaining = n } else { remaining = nil }
    }

    /// Hands `send` what may go to the client now: everything but, at the end, the last byte.
    package func pass(_ b: UnsafeRawBufferPointer, send: (UnsafeRawBufferPointer) -> Void) {
        guard active, b.count > 0 else { return send(b) }
        hasher.update(b)
        if skip > 0 {
            let n = min(skip, b.count)
            skip -= n
            if let r = remaining { remaining = r - min(r, UInt64(n)) }
            if n == b.count { return }
            return passHashed(UnsafeRawBufferPointer(rebasing: b[n...]), send: send)
        }
        passHashed(b, send: send)
    }

    /// The part of a hashed chunk that goes to the client.
    private func passHashed(_ b: UnsafeRawBufferPointer, send: (UnsafeRawBufferPointer) -> Void) {
        if let r = remaining {
            // The length is known: only the chunk that ends the body keeps a byte back.
            let n = UInt64(b.count)
            remaining = r >= n ? r - n : 0
            if remaining == 0 {
                send(UnsafeRawBufferPointer(rebasing: b[..<(b.count - 1)]))
                held = b[b.count - 1]
            } else {
                send(b)
            }
            return
        }
        // Unknown length: any chunk may be the last.
        if let h = held { withUnsafeBytes(of: h) { send($0) } }
        send(UnsafeRawBufferPointer(rebasing: b[..<(b.count - 1)]))
        held = b[b.count - 1]
    }

    /// The body ended. True when it may finish cleanly (the held byte has gone out); false when
    /// the bytes are not the blob: the client must get an abort, never a clean end.
    package func finish(send: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard active else { return true }
        active = false
        guard hasher.finalizeHex() == digest else { return false }
        if let h = held { withUnsafeBytes(of: h) { send($0) } }
        return true
    }
}
