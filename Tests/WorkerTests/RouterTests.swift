import XCTest
@testable import TLS
@testable import HTTP
@testable import Config
@testable import Proxy

/// The routing decisions of the proxy port, from config to outcome, without a socket.
final class RouterTests: XCTestCase {
    let digest = String(repeating: "cd", count: 32)
    let base = UpstreamURL("https://reg.test:5000")!

    func proxyConfig(_ edit: (inout DaemonConfig.Proxy) -> Void) -> DaemonConfig.Proxy {
        var p = DaemonConfig.Proxy()
        edit(&p)
        return p
    }

    func testHijackIsASearchInHostPort() {
        let r = Router(proxyConfig {
            $0.hijackHTTPS = .init(cert: "c", key: "k", hosts: [.init(regx: "your.private.registry", insecure: true),
                                                                 .init(regx: "^other\\.test:443$")])
        })
        XCTAssertEqual(r.hijackPolicy(for: "your.private.registry:443"), .init(insecure: true))
        // Unanchored patterns also match longer names (README says how to anchor one).
        XCTAssertEqual(r.hijackPolicy(for: "your.private.registry.evil.test:443"), .init(insecure: true))
        XCTAssertEqual(r.hijackPolicy(for: "other.test:443"), .standard)
        XCTAssertNil(r.hijackPolicy(for: "other.test:8443"))
        XCTAssertNil(r.hijackPolicy(for: "unrelated.test:443"))
    }

    func testMirrorDefaultSendsBlobGetsToTheCacheWithTheRegistrysTrust() {
        let r = Router(proxyConfig { $0.registryMirror.certs = ["/etc/reg.crt"] })
        let blob = r.mirror(method: "GET", target: "/v2/a/blobs/sha256:\(digest)?ns=reg.test", base: base)
        XCTAssertEqual(blob.outcome.decision, .cache)
        XCTAssertEqual(blob.outcome.url.description, "https://reg.test:5000/v2/a/blobs/sha256:\(digest)")
        XCTAssertEqual(blob.outcome.rule, "blobs/sha256:")
        XCTAssertEqual(blob.policy, .init(certs: ["/etc/reg.crt"]))
        XCTAssertEqual(r.mirror(method: "GET", target: "/v2/a/manifests/1", base: base).outcome.decision, .direct)
        XCTAssertEqual(r.mirror(method: "HEAD", target: "/v2/a/blobs/sha256:\(digest)", base: base).outcome.decision, .direct)
    }

    func testMirrorKeepsTheBasePathPrefix() {
        let r = Router(DaemonConfig.Proxy())
        let u = r.mirror(method: "GET", target: "/v2/", base: UpstreamURL("http://reg.test/prefix/")!).outcome.url
        XCTAssertEqual(u.description, "http://reg.test/prefix/v2/")
    }

    func testMirrorDirectNeverCaches() {
        let r = Router(proxyConfig { $0.registryMirror.direct = true })
        XCTAssertEqual(r.mirror(method: "GET", target: "/v2/a/blobs/sha256:\(digest)", base: base).outcome.decision, .direct)
    }

    func testMirrorUseProxiesFollowsRulesAndLeavingTheRegistryDropsItsTrust() {
        let r = Router(proxyConfig {
            $0.registryMirror.useProxies = true
            $0.registryMirror.insecure = true
            var rule = DaemonConfig.Rule(regx: "manifests")
            rule.redirect = "elsewhere.test:5001"
            $0.proxies = [DaemonConfig.Rule(regx: "blobs/sha256.*", direct: true), rule]
        })
        let blob = r.mirror(method: "GET", target: "/v2/a/blobs/sha256:\(digest)", base: base)
        XCTAssertEqual(blob.outcome.decision, .direct)
        XCTAssertEqual(blob.policy, .init(insecure: true))
        let moved = r.mirror(method: "GET", target: "/v2/a/manifests/1", base: base)
        XCTAssertEqual(moved.outcome.url.authority, "elsewhere.test:5001")
        XCTAssertEqual(moved.outcome.decision, .cache)
        XCTAssertEqual(moved.policy, .standard)
    }

    func testForwardUsesTheProxiesRules() {
        let r = Router(proxyConfig { $0.proxies = [DaemonConfig.Rule(regx: "blobs/sha256.*")] })
        XCTAssertEqual(r.forward(method: "GET", url: UpstreamURL("http://reg.test/v2/a/blobs/sha256:1")!).decision, .cache)
        XCTAssertEqual(r.forward(method: "GET", url: UpstreamURL("http://reg.test/v2/a/manifests/1")!).decision, .direct)
    }
}
