import XCTest
@testable import UV
@testable import HTTP

final class RequestTargetTests: XCTestCase {
    func testPathAndQuery() {
        XCTAssertEqual(RequestTarget("/v2/a?x=1").path, "/v2/a")
        XCTAssertEqual(RequestTarget("/v2/a?x=1").query, "x=1")
        XCTAssertNil(RequestTarget("/v2/a").query)
        XCTAssertEqual(RequestTarget("/v2/a?").query, "")
        XCTAssertEqual(RequestTarget("/a?b?c").description, "/a?b?c")
    }

    func testValueIsDecodedAndFirstWins() {
        let t = RequestTarget("/v2/?ns&nsx=1&ns=reg%3A5000&ns=second")
        XCTAssertEqual(t.value(of: "ns"), "reg:5000")
        XCTAssertNil(RequestTarget("/v2/?ns=").value(of: "ns"))
        XCTAssertNil(RequestTarget("/v2/").value(of: "ns"))
    }

    func testRemoving() {
        XCTAssertEqual(RequestTarget("/a?x=1&ns=r&y=2").removing(["ns"]).description, "/a?x=1&y=2")
        XCTAssertEqual(RequestTarget("/a?ns=r").removing(["ns"]).description, "/a")
        XCTAssertEqual(RequestTarget("/a?ns").removing(["ns"]).description, "/a")
        XCTAssertEqual(RequestTarget("/a?x&&y").removing([]).description, "/a?x&&y")
        XCTAssertEqual(RequestTarget("/a?x&&y").removing(["z"]).description, "/a?x&y")
    }

    func testBlobDigest() {
        let hex = String(repeating: "0f", count: 32)
        XCTAssertEqual(RequestTarget("/v2/a/b/blobs/sha256:\(hex)").blobDigest, hex)
        XCTAssertEqual(RequestTarget("/v2/a/blobs/sha256:\(hex.uppercased())?ns=x").blobDigest, hex)
        XCTAssertNil(RequestTarget("/v2/a/blobs/sha256:\(hex)0").blobDigest)
        XCTAssertNil(RequestTarget("/v2/a/blobs/sha256:\(hex.dropLast())g").blobDigest)
        XCTAssertNil(RequestTarget("/v2/a/manifests/sha256:\(hex)").blobDigest)
    }

    func testRepository() {
        XCTAssertEqual(RequestTarget("/v2/library/busybox/blobs/sha256:x").repository, "library/busybox")
        XCTAssertEqual(RequestTarget("/v2/a/manifests/latest").repository, "a")
        // The marker right after /v2: no repository (and no out-of-range slice).
        XCTAssertNil(RequestTarget("/v2/blobs/sha256:x").repository)
        XCTAssertNil(RequestTarget("/v2blobs/x").repository)
        XCTAssertNil(RequestTarget("/other").repository)
    }

    func testHostPort() {
        XCTAssertEqual(HostPort.format("::1", 80), "[::1]:80")
        XCTAssertEqual(HostPort.format("reg.test", 5000), "reg.test:5000")
        XCTAssertEqual(UpstreamURL("http://[::1]/x")?.authority, "[::1]")
    }
}
