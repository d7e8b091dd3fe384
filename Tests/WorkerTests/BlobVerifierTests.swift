import XCTest
@testable import TLS
@testable import HTTP

/// A body that is not the blob never reaches a client whole: the last byte waits for the digest.
final class BlobVerifierTests: XCTestCase {
    let blob = Array("the layer's bytes".utf8)
    var digest: String { SHA256Digest.hex(blob) }

    func relay(_ v: BlobVerifier, _ body: [UInt8], chunks: Int) -> ([UInt8], Bool) {
        var out: [UInt8] = []
        let size = max(1, body.count / chunks)
        var i = 0
        while i < body.count {
            let end = min(body.count, i + size)
            body[i..<end].withUnsafeBytes { b in v.pass(b) { out.append(contentsOf: $0) } }
            i = end
        }
        let ok = v.finish { out.append(contentsOf: $0) }
        return (out, ok)
    }

    func testAMatchingBlobPassesWhole() {
        for (framing, chunks) in [(BodyFraming.length(UInt64(blob.count)), 3), (.chunked, 4), (.untilClose, 1)] {
            let v = BlobVerifier(digest: digest)
            v.arm(status: 200, framing: framing)
            let (out, ok) = relay(v, blob, chunks: chunks)
            XCTAssertTrue(ok)
            XCTAssertEqual(out, blob, "\(framing)")
        }
    }

    func testSkippedBytesAreHashedButNotSentAgain() {
        // A continuation that starts before what the client already has: the first bytes of the
        // origin's answer are hashed, not sent; the rest goes out, last byte after the match.
        let prefix = 4, have = 5
        for chunks in [1, 2, 5] {
            let h = SHA256Digest()
            blob[..<prefix].withUnsafeBytes { h.update($0) }
            let v = BlobVerifier(digest: digest, hashedSoFar: h, skip: have)
            v.arm(status: 206, framing: .length(UInt64(blob.count - prefix)))
            let (out, ok) = relay(v, Array(blob[prefix...]), chunks: chunks)
            XCTAssertTrue(ok)
            XCTAssertEqual(out, Array(blob[(prefix + have)...]), "\(chunks) chunks")
        }
        var wrong = blob
        wrong[prefix + 1] ^= 1  // a changed byte in the skipped part still fails the digest
        let h = SHA256Digest()
        blob[..<prefix].withUnsafeBytes { h.update($0) }
        let v = BlobVerifier(digest: digest, hashedSoFar: h, skip: have)
        v.arm(status: 206, framing: .length(UInt64(blob.count - prefix)))
        let (out, ok) = relay(v, Array(wrong[prefix...]), chunks: 3)
        XCTAssertFalse(ok)
        XCTAssertEqual(out, Array(blob[(prefix + have)..<(blob.count - 1)]))
    }

    func testAWrongBodyNeverGetsItsLastByte() {
        var wrong = blob
        wrong[3] ^= 1
        for framing in [BodyFraming.length(UInt64(blob.count)), .chunked] {
            let v = BlobVerifier(digest: digest)
            v.arm(status: 200, framing: framing)
            let (out, ok) = relay(v, wrong, chunks: 2)
            XCTAssertFalse(ok)
            XCTAssertEqual(out.count, blob.count - 1, "everything but the last byte: the client sees a cut body")
        }
    }

    func testOtherAnswersPassUntouched() {
        let v = BlobVerifier(digest: digest)
        v.arm(status: 404, framing: .length(9))
        let (out, ok) = relay(v, Array("not found".utf8), chunks: 1)
        XCTAssertTrue(ok)
        XCTAssertEqual(out, Array("not found".utf8))
    }

    func testAContinuationIsVerifiedWithWhatWasSent() {
        let sent = SHA256Digest()
        blob[..<5].withUnsafeBytes { sent.update($0) }
        let v = BlobVerifier(digest: digest, hashedSoFar: sent)
        v.arm(status: 206, framing: .length(UInt64(blob.count - 5)))
        let (out, ok) = relay(v, Array(blob[5...]), chunks: 2)
        XCTAssertTrue(ok)
        XCTAssertEqual(out, Array(blob[5...]))
    }
}
