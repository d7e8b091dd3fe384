import TLS
import HTTP

/// What the cache asks before a stored blob goes to a client: would the registry the client asked
/// give it to them? The cache stores and serves bytes; the rules (credentials, challenges, proof
/// of possession) are the registry layer's, behind this.
package protocol AccessPolicy: AnyObject {
    /// `then` runs when the client may have `blob` through `url`; otherwise the policy answers the
    /// exchange itself (the registry's refusal, or 403).
    func confirm(_ ex: Exchange, url: UpstreamURL, policy: TLSContexts.ClientPolicy, blob: StoredBlob, then: @escaping () -> Void)
}

/// What an access policy may know of a stored blob.
package struct StoredBlob {
    package let id: String
    /// `sha256:<hex>` for a blob named by its digest.
    package let digest: String?
    /// The registry its bytes came from (`UpstreamURL.origin`).
    package let origin: String
    /// Its length once it is complete (verified); nil while it is being filled.
    package let completeLength: Int64?
    private let task: CacheTask

    init(_ task: CacheTask) {
        self.task = task
        id = task.key.id
        digest = task.key.expectedDigest
        origin = task.origin
        completeLength = task.isComplete ? task.contentLength : nil
    }

    /// Its bytes at `offset` (for a registry that must show it holds them).
    package func read(offset: Int64, into buf: UnsafeMutableRawBufferPointer) throws -> Int { try task.read(offset: offset, into: buf) }
}
