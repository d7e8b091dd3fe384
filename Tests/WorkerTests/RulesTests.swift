import XCTest
@testable import UV
@testable import HTTP
@testable import Config
@testable import Proxy

final class RulesTests: XCTestCase {
    func rules(_ r: [DaemonConfig.Rule]) -> ProxyRules { ProxyRules(r) }
    func url(_ s: String) -> UpstreamURL { UpstreamURL(s)! }

    func testFirstMatchingRuleWins() {
        let r = rules([DaemonConfig.Rule(regx: "blobs/sha256.*", direct: true), DaemonConfig.Rule(regx: "blobs")])
        let o = r.route(method: "GET", url: url("http://reg.test/v2/a/blobs/sha256:abc"))
        XCTAssertEqual(o.rule, "blobs/sha256.*")
        XCTAssertEqual(o.decision, .direct)
    }

    func testBlobGetGoesToCacheOtherMethodsDirect() {
        let r = rules([DaemonConfig.Rule(regx: "blobs/sha256.*")])
        XCTAssertEqual(r.route(method: "GET", url: url("http://reg.test/v2/a/blobs/sha256:abc")).decision, .cache)
        XCTAssertEqual(r.route(method: "HEAD", url: url("http://reg.test/v2/a/blobs/sha256:abc")).decision, .direct)
        XCTAssertEqual(r.route(method: "GET", url: url("http://reg.test/v2/a/manifests/1")).decision, .direct)
        XCTAssertNil(r.route(method: "GET", url: url("http://reg.test/v2/a/manifests/1")).rule)
    }

    func testUseHTTPSAndRedirects() {
        var https = DaemonConfig.Rule(regx: "reg\\.test")
        https.useHTTPS = true
        let o = rules([https]).route(method: "GET", url: url("http://reg.test/v2/"))
        XCTAssertEqual(o.url, UpstreamURL(scheme: "https", host: "reg.test", port: 443, target: "/v2/"))

        var host = DaemonConfig.Rule(regx: "reg\\.test")
        host.redirect = "mirror.test:5001"
        XCTAssertEqual(rules([host]).route(method: "GET", url: url("http://reg.test/v2/x")).url.description, "http://mirror.test:5001/v2/x")

        var full = DaemonConfig.Rule(regx: "^http://reg\\.test/v2/(.*)$")
        full.redirect = "http://other.test/prefix/$1"
        XCTAssertEqual(rules([full]).route(method: "GET", url: url("http://reg.test/v2/a/b")).url.description, "http://other.test/prefix/a/b")
    }

    func testMirrorDefaultRule() {
        let digest = String(repeating: "ab", count: 32)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/a/blobs/sha256:\(digest)"), .cache)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/a/blobs/sha256:\(digest)?ns=x"), .cache)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "HEAD", path: "/v2/a/blobs/sha256:\(digest)"), .direct)
        // Not a digest: nothing to key or verify a cached copy by, so straight through.
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/a/blobs/sha256:00"), .direct)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/a/manifests/latest"), .direct)
    }

    func testNamespaceParameterStripped() {
        XCTAssertEqual(MirrorUpstream.stripNamespace("/v2/a/blobs/x?ns=docker.io"), "/v2/a/blobs/x")
        XCTAssertEqual(MirrorUpstream.stripNamespace("/v2/a?x=1&ns=reg%3A5000&y=2"), "/v2/a?x=1&y=2")
        XCTAssertEqual(MirrorUpstream.stripNamespace("/v2/a?nsx=1"), "/v2/a?nsx=1")
        XCTAssertEqual(MirrorUpstream.stripNamespace("/v2/"), "/v2/")
    }

    func testUpstreamURL() {
        XCTAssertEqual(UpstreamURL("http://Reg.test:5000"), UpstreamURL(scheme: "http", host: "Reg.test", port: 5000, target: "/"))
        XCTAssertEqual(UpstreamURL("https://index.docker.io/v2/?a=b#frag")?.target, "/v2/?a=b")
        XCTAssertEqual(UpstreamURL("https://index.docker.io")?.port, 443)
        XCTAssertEqual(UpstreamURL("http://[::1]:8080/x")?.host, "::1")
        XCTAssertEqual(UpstreamURL("http://[::1]:8080/x")?.authority, "[::1]:8080")
        XCTAssertEqual(UpstreamURL("http://u:p@h.test/x")?.host, "h.test")
        XCTAssertNil(UpstreamURL("ftp://x"))
        XCTAssertNil(UpstreamURL("http://:80/"))
        XCTAssertNil(UpstreamURL("http://h:99999/"))
    }
}
