import XCTest
@testable import UV
@testable import HTTP
@testable import Config
@testable import Proxy

/// Where the daemon may go on a client's behalf, decided without a socket.
final class DestinationPolicyTests: XCTestCase {
    func addr(_ host: String, _ port: Int) -> SocketAddress { try! SocketAddress(host: host, port: port) }

    func testLinkLocalAndMetadataAreRefused() {
        let g = DestinationGuard.open
        XCTAssertNotNil(g.refusal(addr("169.254.169.254", 80)))
        XCTAssertNotNil(g.refusal(addr("169.254.0.1", 443)))
        XCTAssertNotNil(g.refusal(addr("fe80::1", 80)))
        XCTAssertNotNil(g.refusal(addr("febf::1", 80)))
        XCTAssertNotNil(g.refusal(addr("fd00:ec2::254", 80)))
        XCTAssertNotNil(g.refusal(addr("::ffff:169.254.169.254", 80)), "IPv4-mapped")
        XCTAssertNil(g.refusal(addr("169.255.0.1", 80)))
        XCTAssertNil(g.refusal(addr("fec0::1", 80)))
        XCTAssertNil(g.refusal(addr("127.0.0.1", 5000)))
    }

    func testOwnPortsOnThisHostAreRefused() {
        let g = DestinationGuard(ownPorts: [65001...65001, 65002...65010], localHosts: ["10.1.2.3"])
        XCTAssertNotNil(g.refusal(addr("127.0.0.1", 65001)))
        XCTAssertNotNil(g.refusal(addr("127.0.0.7", 65005)))
        XCTAssertNotNil(g.refusal(addr("::1", 65001)))
        XCTAssertNotNil(g.refusal(addr("10.1.2.3", 65001)))
        XCTAssertNotNil(g.refusal(addr("0.0.0.0", 65001)))
        XCTAssertNil(g.refusal(addr("10.9.9.9", 65001)), "the same port on another host is someone else")
        XCTAssertNil(g.refusal(addr("127.0.0.1", 5000)))
    }

    func testWhiteListFirstMatchDecides() {
        let w = WhiteList([DaemonConfig.WhiteListEntry(host: "Registry.test", regx: nil, ports: ["443"]),
                           DaemonConfig.WhiteListEntry(host: nil, regx: "^mirror\\.[a-z]+\\.test$", ports: [])])
        XCTAssertTrue(w.allows(host: "registry.test", port: 443))
        XCTAssertFalse(w.allows(host: "registry.test", port: 80))
        XCTAssertTrue(w.allows(host: "mirror.eu.test", port: 8080))
        XCTAssertFalse(w.allows(host: "mirror.eu.test.evil", port: 443))
        XCTAssertFalse(w.allows(host: "other.test", port: 443))
        XCTAssertTrue(WhiteList([]).allows(host: "anything", port: 1))
    }

    func testMirrorIsPullOnly() {
        XCTAssertEqual(MirrorUpstream.admit(method: "GET", target: "/v2/a/manifests/1?ns=x"), .pull)
        XCTAssertEqual(MirrorUpstream.admit(method: "HEAD", target: "/v2/"), .pull)
        XCTAssertEqual(MirrorUpstream.admit(method: "GET", target: "/v2"), .pull)
        for m in ["PUT", "POST", "DELETE", "PATCH", "OPTIONS"] {
            XCTAssertEqual(MirrorUpstream.admit(method: m, target: "/v2/a/blobs/uploads/"), .methodNotAllowed)
        }
        XCTAssertEqual(MirrorUpstream.admit(method: "GET", target: "/small.txt"), .notRegistryAPI)
        XCTAssertEqual(MirrorUpstream.admit(method: "GET", target: "/v2x/"), .notRegistryAPI)
        XCTAssertEqual(MirrorUpstream.admit(method: "GET", target: "/v2/../small.txt"), .notRegistryAPI)
    }

    func testRegistryHeaderIsAnOriginOnly() {
        XCTAssertEqual(MirrorUpstream.registryOrigin("https://registry.test:5444"), UpstreamURL("https://registry.test:5444"))
        XCTAssertEqual(MirrorUpstream.registryOrigin("http://127.0.0.1:5000/"), UpstreamURL("http://127.0.0.1:5000"))
        XCTAssertNil(MirrorUpstream.registryOrigin("http://user@host.test"))
        XCTAssertNil(MirrorUpstream.registryOrigin("http://host.test/path"))
        XCTAssertNil(MirrorUpstream.registryOrigin("http://host.test?x"))
        XCTAssertNil(MirrorUpstream.registryOrigin("http://host.test#f"))
        XCTAssertNil(MirrorUpstream.registryOrigin("http://host.test\\\\@evil"))
        XCTAssertNil(MirrorUpstream.registryOrigin("ftp://host.test"))
    }

    func testNamespaceOfTheConfiguredRegistryKeepsItsScheme() {
        let plain = UpstreamURL("http://127.0.0.1:5000")!
        XCTAssertEqual(MirrorUpstream.registryURL(namespace: "127.0.0.1:5000", configured: plain)?.description, "http://127.0.0.1:5000/")
        XCTAssertEqual(MirrorUpstream.registryURL(namespace: "127.0.0.1:5001", configured: plain)?.description, "https://127.0.0.1:5001/")
        XCTAssertEqual(MirrorUpstream.registryURL(namespace: "reg.test", configured: UpstreamURL("http://reg.test"))?.description, "http://reg.test/")
        XCTAssertEqual(MirrorUpstream.registryURL(namespace: "other.test", configured: plain)?.description, "https://other.test/")
        XCTAssertNil(MirrorUpstream.registryURL(namespace: "a@b.test", configured: plain))
    }
}
