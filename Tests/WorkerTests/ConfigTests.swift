import XCTest
@testable import UV
@testable import Config
@testable import Proxy

final class ConfigTests: XCTestCase {
    func load(_ yaml: String) throws -> ConfigLoader.Loaded { try ConfigLoader.load(text: yaml, file: "dfget.yaml") }

    func error(_ yaml: String) -> ConfigError? {
        do {
            _ = try load(yaml)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            return nil
        }
    }

    // The seed's documented configs (containerd-proxy-and-mirror.md), verbatim.
    static let seedProxy = """
    proxy:
      security:
        insecure: true
      tcpListen:
        listen: 0.0.0.0
        port: 65001
      proxies:
        - regx: blobs/sha256.*
      hijackHTTPS:
        # CA certificate's path used to hijack https requests
        cert: ca.crt
        key: ca.key
        hosts:
          - regx: your.private.registry
    """

    static let seedProxyInsecureHost = """
    proxy:
      security:
        insecure: true
      tcpListen:
        listen: 0.0.0.0
        port: 65001
      proxies:
        - regx: blobs/sha256.*
      hijackHTTPS:
        # CA certificate's path used to hijack https requests
        cert: ca.crt
        key: ca.key
        hosts:
          - regx: your.private.registry
            insecure: true
    """

    static let seedProxyCerts = """
    proxy:
      security:
        insecure: true
      tcpListen:
        listen: 0.0.0.0
        port: 65001
      proxies:
        - regx: blobs/sha256.*
      hijackHTTPS:
        # CA certificate's path used to hijack https requests
        cert: ca.crt
        key: ca.key
        hosts:
          - regx: your.private.registry
            certs: ["server.crt"]
    """

    static let seedMirror = """
    proxy:
      security:
        insecure: true
      tcpListen:
        listen: 0.0.0.0
        port: 65001
      registryMirror:
        # multiple registries support, if only mirror single registry, disable this
        dynamic: true
        url: https://index.docker.io
      proxies:
        - regx: blobs/sha256.*
    """

    func testSeedConfigsLoad() throws {
        for yaml in [Self.seedProxy, Self.seedProxyInsecureHost, Self.seedProxyCerts, Self.seedMirror] {
            let c = try load(yaml).config
            XCTAssertEqual(c.proxy?.tcpListen.listen, "0.0.0.0")
            XCTAssertEqual(c.proxy?.tcpListen.ports, 65001...65001)
            XCTAssertEqual(c.proxy?.proxies.map(\.regx), ["blobs/sha256.*"])
            XCTAssertEqual(c.proxy?.security.insecure, true)
        }
        let p = try load(Self.seedProxyCerts).config.proxy!
        XCTAssertEqual(p.hijackHTTPS?.cert, "ca.crt")
        XCTAssertEqual(p.hijackHTTPS?.hosts.first?.certs, ["server.crt"])
        XCTAssertEqual(try load(Self.seedProxyInsecureHost).config.proxy?.hijackHTTPS?.hosts.first?.insecure, true)
        let m = try load(Self.seedMirror).config.proxy!.registryMirror
        XCTAssertEqual(m.url, "https://index.docker.io")
        XCTAssertTrue(m.dynamic)
    }

    func testEveryReadKeyIsBuiltNoneOnlyWarned() throws {
        let yaml = "aliveTime: 5m\ndownload:\n  totalRateLimit: 1Gi\n  perPeerRateLimit: 64Mi\nupload:\n  rateLimit: 32Mi\n"
            + "health:\n  path: /server/ping\n  tcpListen:\n    port: 40901\n" + Self.seedProxy
        let loaded = try load(yaml)
        XCTAssertFalse(loaded.warnings.contains { $0.message.contains("not built") }, "\(loaded.warnings)")
        let c = loaded.config
        XCTAssertEqual(c.aliveTime, 300)
        XCTAssertEqual(c.download.totalRateLimit, 1 << 30)
        XCTAssertEqual(c.download.perPeerRateLimit, 64 << 20)
        XCTAssertEqual(c.upload.rateLimit, 32 << 20)
        XCTAssertEqual(c.health?.path, "/server/ping")
        XCTAssertEqual(c.health?.tcpListen.ports, 40901...40901)
    }

    func testHealthListenerOnlyWhenConfiguredAndItsPathIsChecked() throws {
        XCTAssertNil(try load(Self.seedProxy).config.health)
        XCTAssertEqual(try load("health: {}\n" + Self.seedProxy).config.health?.tcpListen.ports, 40901...40901)
        XCTAssertEqual(error("health:\n  path: /metrics\n" + Self.seedProxy)?.keyPath, "health.path")
        XCTAssertEqual(error("health:\n  path: ping\n" + Self.seedProxy)?.line, 2)
    }

    func testHijackAndTLSListenerNeedTheirFiles() {
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  hijackHTTPS:\n    cert: ca.crt\n")?.keyPath, "proxy.hijackHTTPS")
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  security:\n    insecure: false\n")?.keyPath, "proxy.security")
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  security:\n    insecure: false\n    cert: a\n    key: b\n    tlsVerify: true\n")?.keyPath,
                       "proxy.security.tlsVerify")
    }

    func testDefaults() throws {
        let c = try load("").config
        XCTAssertNil(c.proxy, "the proxy is off unless a port is set")
        XCTAssertEqual(c.upload.tcpListen.ports, 65002...65002)
        XCTAssertEqual(c.logDir, "/var/log/dragonfly")
        XCTAssertEqual(c.storage.taskExpireTime, 6 * 3600)
        XCTAssertEqual(c.gcInterval, 60)
        XCTAssertNil(try load("proxy:\n  tcpListen:\n    listen: 127.0.0.1\n").config.proxy)
    }

    func testUnknownKeyNamesFileLineAndSuggestion() {
        let e = error("proxy:\n  tcpListen:\n    port: 65001\n  proxiess:\n    - regx: x\n")
        XCTAssertEqual(e?.description, "dfget.yaml:4: proxy.proxiess: unknown key (did you mean proxy.proxies?)")
        let top = error("logdir: /tmp\n")
        XCTAssertEqual(top?.description, "dfget.yaml:1: logdir: unknown key (did you mean logDir?)")
        let deep = error("proxy:\n  tcpListen:\n    port: 1\n  proxies:\n    - regx: a\n      usehttps: true\n")
        XCTAssertEqual(deep?.description, "dfget.yaml:6: proxy.proxies[0].usehttps: unknown key (did you mean proxy.proxies[0].useHTTPS?)")
    }

    func testReferenceKeysWeDoNotUseWarn() throws {
        let l = try load("scheduler:\n  manager:\n    enable: true\nhost:\n  idc: x\ndownload:\n  peerGRPC:\n    timeout: 1s\n")
        XCTAssertEqual(Set(l.warnings.filter { $0.message.contains("not used") }.map(\.keyPath)), ["download.peerGRPC", "scheduler", "host.idc"])
        XCTAssertEqual(l.warnings.first { $0.keyPath == "scheduler" }?.line, 1)
    }

    func testTypedValueErrors() {
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: abc\n")?.description, "dfget.yaml:3: proxy.tcpListen.port: expected an integer, got \"abc\"")
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 70000\n")?.line, 3)
        XCTAssertEqual(error("storage:\n  diskGCThreshold: lots\n")?.description, "dfget.yaml:2: storage.diskGCThreshold: expected a size like 1024Mi or 20Gi, got \"lots\"")
        XCTAssertEqual(error("gcInterval: soon\n")?.keyPath, "gcInterval")
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  registryMirror:\n    dynamic: maybe\n")?.line, 5)
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  proxies:\n    - regx: \"a(\"\n")?.description,
                       "dfget.yaml:5: proxy.proxies[0].regx: invalid regular expression \"a(\"")
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  registryMirror:\n    url: ftp://x\n")?.line, 5)
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    listen: localhost\n    port: 1\n")?.keyPath, "proxy.tcpListen.listen")
        XCTAssertEqual(error("proxy: [1, 2]\n")?.description, "dfget.yaml:1: proxy: expected a mapping of keys")
        XCTAssertNotNil(error("proxy:\n  tcpListen:\n   port: 1\n  bad indent\n"))
    }

    func testInvalidYAMLHasLine() {
        let e = error("proxy:\n  tcpListen:\n    port: [1\n")
        XCTAssertNotNil(e?.line)
        XCTAssertTrue(e?.description.hasPrefix("dfget.yaml:") == true)
    }

    func testPortRangeAndUnits() throws {
        let c = try load("""
        aliveTime: 0s
        gcInterval: 1m30s
        storage:
          taskExpireTime: 6h
          diskGCThreshold: 50Gi
          diskGCThresholdPercent: 80
        download:
          totalRateLimit: 1024Mi
        proxy:
          tcpListen:
            port:
              start: 65001
              end: 65010
        workers: 3
        """).config
        XCTAssertEqual(c.gcInterval, 90)
        XCTAssertEqual(c.storage.diskGCThreshold, 50 << 30)
        XCTAssertEqual(c.storage.diskGCThresholdPercent, 80)
        XCTAssertEqual(c.download.totalRateLimit, 1024 << 20)
        XCTAssertEqual(c.proxy?.tcpListen.ports, 65001...65010)
        XCTAssertEqual(c.workers, 3)
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port:\n      start: 10\n      end: 5\n")?.keyPath, "proxy.tcpListen.port")
    }

    func testUnits() {
        XCTAssertEqual(Units.parseSize("1024Mi"), 1 << 30)
        XCTAssertEqual(Units.parseSize("20Gi"), 20 << 30)
        XCTAssertEqual(Units.parseSize("100M"), 100_000_000)
        XCTAssertEqual(Units.parseSize("512KiB"), 512 * 1024)
        XCTAssertEqual(Units.parseSize("4096"), 4096)
        XCTAssertNil(Units.parseSize("12 parsecs"))
        XCTAssertEqual(Units.parseDuration("6h"), 21600)
        XCTAssertEqual(Units.parseDuration("1m30s"), 90)
        XCTAssertEqual(Units.parseDuration("500ms"), 0.5)
        XCTAssertEqual(Units.parseDuration("2h45m"), 9900)
        XCTAssertEqual(Units.parseDuration("30"), 30)
        XCTAssertNil(Units.parseDuration("5 minutes"))
        XCTAssertNil(Units.parseDuration("h"))
    }

    func testShippedDefaultConfigLoads() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config/dfget.yaml").path
        let l = try ConfigLoader.load(path: path)
        XCTAssertEqual(l.config.proxy?.tcpListen.listen, "127.0.0.1")
        XCTAssertEqual(l.config.proxy?.tcpListen.ports, 65001...65001)
        XCTAssertEqual(l.warnings, [])
    }

    func testWhiteListIsCheckedAndAnOpenListenerIsWarned() throws {
        let open = try load(Self.seedProxy).warnings
        XCTAssertTrue(open.contains { $0.keyPath == "proxy.tcpListen" && $0.message.contains("open to anyone") }, "\(open)")
        let listed = try load(Self.seedProxy + "\n  whiteList:\n    - host: registry.test\n      ports: ['443']\n")
        XCTAssertFalse(listed.warnings.contains { $0.keyPath == "proxy.tcpListen" }, "\(listed.warnings)")
        XCTAssertEqual(listed.config.proxy?.whiteList.first?.ports, ["443"])
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  whiteList:\n    - ports: ['443']\n")?.message, "needs host or regx")
        let badPort = error("proxy:\n  tcpListen:\n    port: 1\n  whiteList:\n    - host: a\n      ports: ['https']\n")
        XCTAssertEqual(badPort?.keyPath, "proxy.whiteList[0].ports")
        XCTAssertEqual(badPort?.line, 6)
        XCTAssertEqual(error("proxy:\n  tcpListen:\n    port: 1\n  whiteList:\n    - regx: '('\n")?.keyPath, "proxy.whiteList[0].regx")
    }

    func testPeersNeedASecretAndNameTheirMembers() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dfget-peers-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = dir.appendingPathComponent("peers.key").path
        try "0123456789abcdef0123456789abcdef\n".write(toFile: key, atomically: true, encoding: .utf8)
        let l = try load("host:\n  advertiseIP: 10.0.0.5\nupload:\n  tcpListen:\n    port: 65002\npeers:\n  members: [10.0.0.5, \"10.0.0.6:7000\", \"[fd00::1]\"]\n  refresh: 10s\n  secretFile: \(key)\n")
        let p = try XCTUnwrap(l.config.peers)
        XCTAssertEqual(p.members.map { "\($0.host):\($0.port)" }, ["10.0.0.5:65002", "10.0.0.6:7000", "fd00::1:65002"])
        XCTAssertEqual(p.refresh, 10)
        XCTAssertEqual([p.maxNeighbours, p.backupSeeds, p.uploadSlots], [8, 2, 4], "the defaults")
        XCTAssertEqual(p.secret.count, 32)
        let tuned = try XCTUnwrap(load("peers:\n  members: [10.0.0.5]\n  maxNeighbours: 12\n  backupSeeds: 0\n  uploadSlots: 9\n  secretFile: \(key)\n").config.peers)
        XCTAssertEqual([tuned.maxNeighbours, tuned.backupSeeds, tuned.uploadSlots], [12, 0, 9])
        XCTAssertEqual(error("peers:\n  members: [10.0.0.5]\n  uploadSlots: 0\n  secretFile: \(key)\n")?.keyPath, "peers.uploadSlots")
        XCTAssertEqual(error("peers:\n  members: [10.0.0.5]\n  maxNeighbours: 0\n  secretFile: \(key)\n")?.keyPath, "peers.maxNeighbours")
        XCTAssertEqual(l.config.advertiseIP, "10.0.0.5")
        XCTAssertEqual(error("peers:\n  members: [10.0.0.5]\n")?.keyPath, "peers")
        XCTAssertTrue(error("peers:\n  members: [10.0.0.5]\n")?.message.contains("secretFile") == true)
        XCTAssertEqual(error("peers:\n  members: ['a b:x']\n  secretFile: \(key)\n")?.keyPath, "peers.members[0]")
        XCTAssertEqual(error("host:\n  advertiseIP: node-1\n")?.keyPath, "host.advertiseIP")
        try "short".write(toFile: key, atomically: true, encoding: .utf8)
        XCTAssertTrue(error("peers:\n  members: [10.0.0.5]\n  secretFile: \(key)\n")?.message.contains("fewer than 16") == true)
        XCTAssertNil(try load("upload:\n  tcpListen:\n    port: 65002\n").config.peers, "no peers section: alone, as before")
    }

    /// `peers.membersFile`: one member per line; a bad line names the file and its line.
    func testAMembersFileIsReadAndABadLineNamesItsLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dfget-members-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = dir.appendingPathComponent("peers.key").path
        try "0123456789abcdef0123456789abcdef\n".write(toFile: key, atomically: true, encoding: .utf8)
        let list = dir.appendingPathComponent("members").path
        try "# the rack\n10.0.0.5\n\n  10.0.0.6:7000  # a comment\n[fd00::1]:7001\nfd00:0:0::2\r\n::ffff:10.0.0.9\n".write(toFile: list, atomically: true, encoding: .utf8)
        let p = try XCTUnwrap(load("upload:\n  tcpListen:\n    port: 65002\npeers:\n  membersFile: \(list)\n  secretFile: \(key)\n").config.peers)
        XCTAssertEqual(p.membersFile, list)
        XCTAssertEqual(p.fileMembers.map { HostPort.format($0.host, $0.port) },
                       ["10.0.0.5:65002", "10.0.0.6:7000", "[fd00::1]:7001", "[fd00::2]:65002", "[::ffff:10.0.0.9]:65002"])
        try "10.0.0.5\n10.0.0.6:x\n".write(toFile: list, atomically: true, encoding: .utf8)
        let bad = try XCTUnwrap(error("peers:\n  membersFile: \(list)\n  secretFile: \(key)\n"))
        XCTAssertEqual([bad.file, String(bad.line ?? 0), bad.keyPath], [list, "2", "peers.membersFile"])
        XCTAssertTrue(bad.description.hasPrefix("\(list):2: peers.membersFile: \"10.0.0.6:x\""), bad.description)
        XCTAssertEqual(error("peers:\n  membersFile: \(dir.path)/absent\n  secretFile: \(key)\n")?.keyPath, "peers.membersFile")
        try "10.0.0.5\n".write(toFile: list, atomically: true, encoding: .utf8)
        XCTAssertEqual(error("peers:\n  membersFile: \(list)\n")?.keyPath, "peers", "a members file needs the secret too")
        XCTAssertEqual(MembersFile.member("::1", defaultPort: 7)?.host, "::1", "a bare IPv6 address is a host, not ':' and port 1")
        XCTAssertNil(MembersFile.member("fe:zz::1", defaultPort: 7))
        let text = MembersFile.render([("10.0.0.5", 1), ("::1", 2)], header: "view")
        XCTAssertEqual(try MembersFile.parse(text, path: "v", defaultPort: 9).map { HostPort.format($0.host, $0.port) }, ["10.0.0.5:1", "[::1]:2"])
    }
}
