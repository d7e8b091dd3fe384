import XCTest
@testable import UV
@testable import HTTP
@testable import Config
@testable import Cache
@testable import Proxy

/// The pieces of `proxy.manifests` that decide without a network: tag keys, the registry's health
/// windows, grants, the tag store, the config keys, and which requests go where.
final class ManifestCacheTests: XCTestCase {
    var root = ""

    override func setUp() {
        root = NSTemporaryDirectory() + "dfget-manifests-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func testAnAcceptSetIsTheSameWhateverItsOrderSpacesAndRepeatsAndDiffersFromAnotherSet() {
        let a = TagRef(authority: "Reg:5000", repository: "lib/x", tag: "1", accept: "b/c, a/b;q=0.5 ,b/c")
        let b = TagRef(authority: "reg:5000", repository: "lib/x", tag: "1", accept: "A/B;q=0.5,B/C")
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.accept, "a/b;q=0.5,b/c")
        let other = TagRef(authority: "reg:5000", repository: "lib/x", tag: "1", accept: "b/c")
        XCTAssertNotEqual(a.file, other.file)
        XCTAssertEqual(a.folder, other.folder, "one folder per tag: what a purge removes")
    }

    func testATagRecordIsReadBackPerAcceptSetAndAPurgeRemovesEverySet() {
        let store = TagStore(root: root)
        let one = TagRef(authority: "reg:5000", repository: "lib/x", tag: "1", accept: "a")
        let two = TagRef(authority: "reg:5000", repository: "lib/x", tag: "1", accept: "b")
        let r = TagRecord(digest: "sha256:" + String(repeating: "a", count: 64), contentType: "application/vnd.oci.image.index.v1+json",
                          length: 10, validatedMs: 5, registry: "reg:5000", repository: "lib/x", tag: "1", accept: "a")
        store.write(one, r)
        XCTAssertEqual(store.read(one), r)
        XCTAssertNil(store.read(two), "never served for another Accept set")
        store.write(two, r)
        let other = TagRef(authority: "reg:5000", repository: "lib/x", tag: "2", accept: "a")
        store.write(other, r)
        XCTAssertEqual(TagStore.purge(root: root, authority: "REG:5000", repository: "lib/x", tag: "1"), 2)
        XCTAssertNil(store.read(one))
        XCTAssertNotNil(store.read(other))
        XCTAssertEqual(TagStore.purge(root: root, authority: "reg:5000", repository: "lib/x", tag: nil), 1, "every tag of the repository")
    }

    func testOneRequestAtATimeHoldsATagsLockAcrossOpenFiles() {
        let store = TagStore(root: root)
        let ref = TagRef(authority: "reg", repository: "x", tag: "1", accept: nil)
        let held = store.lock(ref)
        XCTAssertNotNil(held)
        XCTAssertNil(TagStore(root: root).lock(ref), "another worker (another open file) waits")
        held?.release()
        XCTAssertNotNil(store.lock(ref))
    }

    func testAFailureMarksTheRegistryDownForEveryWorkerDoublingToEightTimesThenOneProbe() {
        let a = RegistryHealth(root: root, failFastMs: 1000, probeWindowMs: 3000)
        let b = RegistryHealth(root: root, failFastMs: 1000, probeWindowMs: 3000)
        let o = "http://reg:5000"
        XCTAssertEqual(a.check(o, now: 0), .ask)
        a.failed(o, reason: "refused", now: 0)
        XCTAssertEqual(b.check(o, now: 999), .down(untilMs: 1000, reason: "refused"), "another worker sees it")
        XCTAssertEqual(b.check(o, now: 1000), .probe)
        XCTAssertEqual(a.check(o, now: 1001), .down(untilMs: 4000, reason: "probing after: refused"), "the others leave the probe alone")
        b.failed(o, reason: "refused", now: 1500)
        XCTAssertEqual(a.check(o, now: 1500), .down(untilMs: 3500, reason: "refused"), "twice the window")
        for t in [3500, 7500, 15500] as [UInt64] { b.failed(o, reason: "refused", now: t) }
        XCTAssertEqual(a.check(o, now: 15500), .down(untilMs: 23500, reason: "refused"), "at most 8x failFast")
        b.succeeded(o)
        XCTAssertEqual(a.check(o, now: 15501), .ask)
    }

    func testRetryAfterHoldsTheRegistryDownForAsLongAsItSays() {
        let h = RegistryHealth(root: root, failFastMs: 1000, probeWindowMs: 3000)
        h.failed("http://r", reason: "answered 429", retryAfterMs: RegistryHealth.retryAfterMs("30"), now: 0)
        XCTAssertEqual(h.check("http://r", now: 29_999), .down(untilMs: 30_000, reason: "answered 429"))
        XCTAssertEqual(RegistryHealth.retryAfterMs(nil), nil)
        XCTAssertEqual(RegistryHealth.retryAfterMs("soon"), nil)
        let now = Date(timeIntervalSince1970: 1_000_000)
        XCTAssertEqual(RegistryHealth.retryAfterMs("Mon, 12 Jan 1970 14:03:20 GMT", now: now), 1_000 * 1000)
        XCTAssertTrue(RegistryHealth.isOutage(status: 429))
        XCTAssertTrue(RegistryHealth.isOutage(status: 503))
        XCTAssertFalse(RegistryHealth.isOutage(status: 401))
        XCTAssertFalse(RegistryHealth.isOutage(status: 404))
    }

    func testAGrantIsPerRegistryRepositoryAndCredentialAndARefusalRevokesIt() {
        let g = GrantStore(root: root)
        g.grant(origin: "http://r", repository: "a", authorization: "Bearer t1")
        XCTAssertNotNil(g.age(origin: "http://r", repository: "a", authorization: "Bearer t1"))
        XCTAssertNil(g.age(origin: "http://r", repository: "a", authorization: "Bearer t2"), "another credential")
        XCTAssertNil(g.age(origin: "http://r", repository: "a", authorization: nil), "no credential")
        XCTAssertNil(g.age(origin: "http://r", repository: "b", authorization: "Bearer t1"), "another repository")
        XCTAssertNil(g.age(origin: "http://q", repository: "a", authorization: "Bearer t1"), "another registry")
        XCTAssertNil(GrantStore(root: root).age(origin: "http://r", repository: "a", authorization: "Bearer t2"))
        XCTAssertNotNil(GrantStore(root: root).age(origin: "http://r", repository: "a", authorization: "Bearer t1"), "every worker")
        g.revoke(origin: "http://r", repository: "a", authorization: "Bearer t1")
        XCTAssertNil(g.age(origin: "http://r", repository: "a", authorization: "Bearer t1"))
        let files = (try? FileManager.default.contentsOfDirectory(atPath: root + "/grants")) ?? []
        XCTAssertFalse(files.contains { $0.contains("t1") }, "the credential is never stored")
        g.rememberChallenge(origin: "http://r", repository: "a", "Bearer realm=\"x\"")
        XCTAssertEqual(g.challenge(origin: "http://r", repository: "a"), "Bearer realm=\"x\"")
        XCTAssertNil(g.challenge(origin: "http://r", repository: "b"))
    }

    func testManifestPathsAreParsedAndAManifestByDigestIsKeyedApartFromItsBlob() {
        let hex = String(repeating: "ab", count: 32)
        XCTAssertEqual(RequestTarget("/v2/lib/x/manifests/1.0").manifestReference, "1.0")
        XCTAssertEqual(RequestTarget("/v2/lib/x/manifests/sha256:\(hex.uppercased())").manifestDigest, hex)
        XCTAssertNil(RequestTarget("/v2/lib/x/manifests/sha256:abc").manifestDigest)
        XCTAssertNil(RequestTarget("/v2/manifests/1").manifestReference, "no repository")
        XCTAssertNil(RequestTarget("/v2/lib/x/manifests/").manifestReference)
        XCTAssertNil(RequestTarget("/v2/lib/x/blobs/sha256:\(hex)").manifestReference)
        let m = TaskKey.forURL(UpstreamURL("http://r/v2/x/manifests/sha256:\(hex)")!)
        let b = TaskKey.forURL(UpstreamURL("http://r/v2/x/blobs/sha256:\(hex)")!)
        XCTAssertEqual(m.expectedDigest, b.expectedDigest)
        XCTAssertNotEqual(m.id, b.id)
        XCTAssertTrue(m.isManifest)
        XCTAssertFalse(b.isManifest)
    }

    func testTheMirrorSendsManifestsByDigestToTheCacheAndTagsToTheTagCacheUnlessDisabled() throws {
        let hex = String(repeating: "cd", count: 32)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/x/manifests/sha256:\(hex)", manifests: true), .cache)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/x/manifests/sha256:\(hex)", manifests: false), .direct)
        XCTAssertEqual(ProxyRules.mirrorDefault(method: "GET", path: "/v2/x/manifests/latest", manifests: true), .direct)
        var c = DaemonConfig.Proxy()
        c.proxies = [DaemonConfig.Rule(regx: "blobs/sha256.*"), DaemonConfig.Rule(regx: "private\\.example", direct: true)]
        let on = Router(c)
        XCTAssertTrue(on.tagCacheApplies(mirror: true, url: UpstreamURL("http://r/v2/")!))
        XCTAssertTrue(on.tagCacheApplies(mirror: false, url: UpstreamURL("https://reg.example/v2/x/manifests/1")!))
        XCTAssertFalse(on.tagCacheApplies(mirror: false, url: UpstreamURL("https://reg.example/v2/")!), "/v2/ only on the mirror")
        XCTAssertFalse(on.tagCacheApplies(mirror: false, url: UpstreamURL("https://private.example/v2/x/manifests/1")!), "a direct rule")
        XCTAssertEqual(on.forward(method: "GET", url: UpstreamURL("https://reg.example/v2/x/manifests/sha256:\(hex)")!).decision, .cache)
        c.manifests.enable = false
        let off = Router(c)
        XCTAssertFalse(off.tagCacheApplies(mirror: true, url: UpstreamURL("http://r/v2/x/manifests/1")!))
        XCTAssertEqual(off.forward(method: "GET", url: UpstreamURL("https://reg.example/v2/x/manifests/sha256:\(hex)")!).decision, .direct)
    }

    func testTheManifestsKeysAreReadWithDefaultsAndABadOneNamesItsLine() throws {
        let d = try ConfigLoader.load(text: "proxy:\n  tcpListen:\n    port: 65001\n", file: "dfget.yaml").config.proxy!.manifests
        XCTAssertTrue(d.enable)
        XCTAssertEqual(d.revalidateAfter, 60)
        XCTAssertEqual(d.staleIfError, 86400)
        XCTAssertEqual(d.upstreamTimeout, 3)
        let yaml = "proxy:\n  tcpListen:\n    port: 65001\n  manifests:\n    enable: false\n    revalidateAfter: 5m\n    staleIfError: 1h\n"
        let m = try ConfigLoader.load(text: yaml, file: "dfget.yaml").config.proxy!.manifests
        XCTAssertFalse(m.enable)
        XCTAssertEqual(m.revalidateAfter, 300)
        XCTAssertEqual(m.staleIfError, 3600)
        do {
            _ = try ConfigLoader.load(text: "proxy:\n  tcpListen:\n    port: 65001\n  manifests:\n    staleIfErorr: 1h\n", file: "dfget.yaml")
            XCTFail("an unknown key")
        } catch let e as ConfigError {
            XCTAssertEqual(e.line, 5)
            XCTAssertTrue(e.description.contains("proxy.manifests.staleIfErorr"), e.description)
        }
        do {
            _ = try ConfigLoader.load(text: "proxy:\n  tcpListen:\n    port: 65001\n  manifests:\n    upstreamTimeout: soon\n", file: "dfget.yaml")
            XCTFail("a bad duration")
        } catch let e as ConfigError {
            XCTAssertEqual(e.line, 5)
        }
    }
}
