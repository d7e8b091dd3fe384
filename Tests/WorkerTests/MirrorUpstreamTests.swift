import Foundation
import XCTest
@testable import UV
@testable import HTTP
@testable import Config
@testable import Proxy
@testable import Worker

final class MirrorUpstreamTests: XCTestCase {
    let configured = UpstreamURL("http://127.0.0.1:5000")!

    func testHeaderWinsWhenDynamic() {
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: "https://reg.test:5443", target: "/v2/?ns=other.test", configured: configured),
                       .upstream(UpstreamURL("https://reg.test:5443")!, source: "header"))
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: "reg.test", target: "/v2/", configured: configured), .badHeader("reg.test"))
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: "https://reg.test/v2/", target: "/v2/", configured: configured),
                       .badHeader("https://reg.test/v2/"))
    }

    func testNamespaceWhenDynamicAndNoHeader() {
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: nil, target: "/v2/a/manifests/1?ns=reg.test%3A5443", configured: configured),
                       .upstream(UpstreamURL("https://reg.test:5443")!, source: "ns"))
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: nil, target: "/v2/library/x/blobs/sha256:00?ns=docker.io", configured: nil),
                       .upstream(UpstreamURL("https://registry-1.docker.io")!, source: "ns"))
    }

    func testConfiguredURLOtherwise() {
        XCTAssertEqual(MirrorUpstream.choose(dynamic: false, header: "https://reg.test", target: "/v2/?ns=reg.test", configured: configured),
                       .upstream(configured, source: "config"))
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: nil, target: "/v2/", configured: configured), .upstream(configured, source: "config"))
        XCTAssertEqual(MirrorUpstream.choose(dynamic: true, header: nil, target: "/v2/", configured: nil), .disabled)
        XCTAssertEqual(MirrorUpstream.choose(dynamic: false, header: nil, target: "/v2/?ns=x.test", configured: nil), .disabled)
    }

    func testRedirectLocationResolution() {
        let base = UpstreamURL("https://reg.test:5443/v2/a/blobs/sha256:00?x=1")!
        XCTAssertEqual(OriginFetch.resolve("https://s3.test/bucket/obj?sig=abc", against: base)?.description, "https://s3.test/bucket/obj?sig=abc")
        XCTAssertEqual(OriginFetch.resolve("/other/path", against: base)?.description, "https://reg.test:5443/other/path")
        XCTAssertEqual(OriginFetch.resolve("//cdn.test/x", against: base)?.description, "https://cdn.test/x")
        XCTAssertEqual(OriginFetch.resolve("sibling", against: base)?.description, "https://reg.test:5443/v2/a/blobs/sibling")
    }
}

final class ContainerdHostsTests: XCTestCase {
    func testEntries() {
        XCTAssertEqual(ContainerdHosts.entry("example.com"), .init(directory: "example.com", server: "https://example.com"))
        XCTAssertEqual(ContainerdHosts.entry("reg.test:5443"), .init(directory: "reg.test:5443", server: "https://reg.test:5443"))
        XCTAssertEqual(ContainerdHosts.entry("http://reg.test:5000"), .init(directory: "reg.test:5000", server: "http://reg.test:5000"))
        XCTAssertEqual(ContainerdHosts.entry("docker.io"), .init(directory: "docker.io", server: "https://registry-1.docker.io"))
        XCTAssertNil(ContainerdHosts.entry("http://reg.test/path"))
        XCTAssertNil(ContainerdHosts.entry(""))
        XCTAssertEqual(ContainerdHosts.entry("_default"), .init(directory: "_default", server: nil))
    }

    func testInitReadsContainerdsVersionAndSaysWhatItsConfigNeeds() {
        XCTAssertTrue(ContainerdHosts.parseVersion("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")! == (1, 6, "1.6.20~ds1"))
        XCTAssertTrue(ContainerdHosts.parseVersion("containerd containerd.io v1.7.12 71909c1")! == (1, 7, "1.7.12"))
        XCTAssertNil(ContainerdHosts.parseVersion("command not found"))
        let dir = NSTemporaryDirectory() + "dfget-init-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let without = dir + "/plain.toml", with = dir + "/set.toml"
        try? "version = 2\n".write(toFile: without, atomically: true, encoding: .utf8)
        try? "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n".write(toFile: with, atomically: true, encoding: .utf8)
        let old = ContainerdHosts.checks(containerdConfig: with, configPath: "/c", version: (1, 6, "1.6.20"))
        XCTAssertEqual(old.count, 1)
        XCTAssertTrue(old[0].contains("1.6.20") && old[0].contains("1.7"), old[0])
        XCTAssertEqual(ContainerdHosts.checks(containerdConfig: with, configPath: "/c", version: (1, 7, "1.7.0")), [])
        let missing = ContainerdHosts.checks(containerdConfig: without, configPath: "/c", version: (2, 0, "2.0.0"))
        XCTAssertEqual(missing.count, 1)
        XCTAssertTrue(missing[0].contains("config_path = \"/c\""), missing[0])
        XCTAssertEqual(ContainerdHosts.diff("a\nb", "a\nc"), "- b\n+ c")
    }

    /// `_default` names no registry: no `server` (containerd falls back to each registry itself)
    /// and no header (the daemon takes the registry from `?ns=`), never `https://_default`.
    func testTheDefaultFolderNamesNoServer() {
        let text = ContainerdHosts.render(ContainerdHosts.entry("_default")!, daemonHost: "127.0.0.1", daemonPort: 65001)
        XCTAssertTrue(text.hasPrefix(ContainerdHosts.marker))
        XCTAssertFalse(text.contains("server ="), text)
        XCTAssertFalse(text.contains("_default\""), text)
        XCTAssertFalse(text.contains("X-Dragonfly-Registry"), text)
        XCTAssertTrue(text.contains("[host.\"http://127.0.0.1:65001\"]\n  capabilities = [\"pull\", \"resolve\"]"), text)
    }

    func testRenderMatchesTheSeedLayout() {
        let text = ContainerdHosts.render(.init(directory: "example.com", server: "https://example.com"), daemonHost: "127.0.0.1", daemonPort: 65001)
        XCTAssertTrue(text.hasPrefix(ContainerdHosts.marker))
        XCTAssertTrue(text.contains("""
        server = "https://example.com"

        [host."http://127.0.0.1:65001"]
          capabilities = ["pull", "resolve"]
          [host."http://127.0.0.1:65001".header]
            X-Dragonfly-Registry = ["https://example.com"]
        """))
    }
}
