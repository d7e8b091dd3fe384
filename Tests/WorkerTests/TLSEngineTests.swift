import XCTest
@testable import UV
@testable import TLS
@testable import Config

/// Full TLS handshakes between two engines in memory: no sockets, no loop.
final class TLSEngineTests: XCTestCase {
    static let ca = try! CAGenerator.generate(commonName: "dfget test CA", days: 2)

    override class func setUp() {
        HijackAuthority.shared = try! HijackAuthority.load(cert: ca.cert, key: ca.key)
    }

    /// Moves bytes between the engines until both handshakes end; returns the client's result.
    func handshake(_ client: TLSEngine, _ server: TLSEngine) -> (TLSEngine.Step, TLSEngine.Step) {
        var c = TLSEngine.Step.needMore, s = TLSEngine.Step.needMore
        for _ in 0..<20 {
            if c == .needMore { c = client.handshake() }
            client.drainOutput { server.feed($0) }
            if s == .needMore { s = server.handshake() }
            server.drainOutput { client.feed($0) }
            if c != .needMore && s != .needMore { break }
        }
        return (c, s)
    }

    func pair(host: String, connectHost: String? = nil, policy: TLSContexts.ClientPolicy,
              mintsFor: @escaping (String) -> Bool = { _ in true }) throws -> (TLSEngine, TLSEngine) {
        let client = TLSEngine(ssl: try TLSContexts.clientSSL(host: host, policy: policy), server: false)
        let server = TLSEngine(ssl: HijackAuthority.shared!.newSSL(connectHost: connectHost ?? host, mintsFor: mintsFor)!, server: true)
        return (client, server)
    }

    func testHandshakeAndDataBothWays() throws {
        let (client, server) = try pair(host: "registry.test", policy: .init(certs: [Self.ca.cert]))
        let (c, s) = handshake(client, server)
        XCTAssertEqual(c, .done)
        XCTAssertEqual(s, .done)
        XCTAssertEqual(client.alpn, "http/1.1")
        XCTAssertEqual(server.alpn, "http/1.1")
        let payload = Array(repeating: UInt8(ascii: "x"), count: 100_000)
        XCTAssertNil(payload.withUnsafeBytes { client.write($0) })
        client.drainOutput { server.feed($0) }
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while case .data(let n) = buf.withUnsafeMutableBytes({ server.read(into: $0) }) { got += buf[0..<n] }
        XCTAssertEqual(got, payload)
        server.shutdown()
        server.drainOutput { client.feed($0) }
        XCTAssertEqual(buf.withUnsafeMutableBytes { client.read(into: $0) }, .closed)
    }

    func testUntrustedCAFailsVerification() throws {
        let (client, server) = try pair(host: "registry.test", policy: .standard)
        guard case .failed(.verifyFailed(let why)) = handshake(client, server).0 else { return XCTFail() }
        XCTAssertEqual(why, "certificate verify failed: unable to get local issuer certificate")
    }

    func testHostnameMismatchFails() throws {
        // The server mints for the CONNECT host; the client expects another name and sends no matching SNI.
        let (client, server) = try pair(host: "10.0.0.1", connectHost: "registry.test", policy: .init(certs: [Self.ca.cert]))
        guard case .failed(.verifyFailed(let why)) = handshake(client, server).0 else { return XCTFail() }
        XCTAssertTrue(why.contains("IP address mismatch"), why)
    }

    func testSNIPicksTheLeafAndIPLeavesWork() throws {
        let (client, server) = try pair(host: "other.test", connectHost: "registry.test", policy: .init(certs: [Self.ca.cert]))
        XCTAssertEqual(handshake(client, server).0, .done, "SNI other.test chose that host's leaf")
        let (c2, s2) = try pair(host: "127.0.0.1", policy: .init(certs: [Self.ca.cert]))
        XCTAssertEqual(handshake(c2, s2).0, .done, "an IP target gets a SAN IP leaf")
    }

    func testNoLeafForANameTheRuleDoesNotAccept() throws {
        let (client, server) = try pair(host: "bank.test", connectHost: "registry.test", policy: .init(certs: [Self.ca.cert]),
                                        mintsFor: { $0 == "registry.test" })
        XCTAssertNotEqual(handshake(client, server).0, .done, "a foreign SNI gets an alert, not a leaf")
        XCTAssertFalse(Certificates.subjectAltNames(HijackAuthority.shared!.leaf(for: "registry.test")!.0).isEmpty)
        let (c2, s2) = try pair(host: "registry.test", policy: .init(certs: [Self.ca.cert]), mintsFor: { $0 == "registry.test" })
        XCTAssertEqual(handshake(c2, s2).0, .done)
    }

    func testServerCertificateItselfAsTrustAnchor() throws {
        let leaf = HijackAuthority.shared!.leaf(for: "registry.test")!
        let pem = HijackAuthority.pem(leaf.0)
        let (client, server) = try pair(host: "registry.test", policy: .init(certs: [pem]))
        XCTAssertEqual(handshake(client, server).0, .done, "partial-chain trust: the server's own certificate verifies")
    }

    func testInsecureSkipsVerification() throws {
        let (client, server) = try pair(host: "whatever.test", connectHost: "registry.test", policy: .init(insecure: true))
        XCTAssertEqual(handshake(client, server).0, .done)
    }

    func testLeavesAreCachedPerHostAndNeverTheCAKey() throws {
        let a = HijackAuthority.shared!.leaf(for: "cache.test")!
        let b = HijackAuthority.shared!.leaf(for: "CACHE.test")!
        XCTAssertEqual(a.0, b.0, "the same host reuses its leaf")
        XCTAssertNotEqual(a.1, HijackAuthority.shared!.caKey)
        let c = HijackAuthority.shared!.leaf(for: "other-cache.test")!
        XCTAssertNotEqual(a.0, c.0)
        XCTAssertNotEqual(a.1, c.1, "a fresh key per host")
    }

    func testLeafSANIsOneLiteralNameEvenForHostileSNI() throws {
        let (leaf, _) = HijackAuthority.shared!.leaf(for: "a.example,DNS:*.bank.com")!
        XCTAssertEqual(Certificates.subjectAltNames(leaf), [.dns("a.example,dns:*.bank.com")])
        let (ipLeaf, _) = HijackAuthority.shared!.leaf(for: "127.0.0.9")!
        XCTAssertEqual(Certificates.subjectAltNames(ipLeaf), [.ip("127.0.0.9")])
    }

    func testLeafAndCAProfiles() throws {
        let ca = try PEM.certificate(Self.ca.cert, field: "ca")
        XCTAssertTrue(Certificates.isCA(ca))
        XCTAssertEqual(Certificates.subjectAltNames(ca), [])
        let (leaf, _) = HijackAuthority.shared!.leaf(for: "profile.test")!
        XCTAssertFalse(Certificates.isCA(leaf))
        let left = Certificates.secondsLeft(leaf)
        XCTAssertGreaterThan(left, HijackAuthority.validitySeconds - 60)
        XCTAssertLessThanOrEqual(left, HijackAuthority.validitySeconds)
        XCTAssertTrue(PEM.encode(certificate: leaf).hasPrefix("-----BEGIN CERTIFICATE-----"))
    }

    func testErrorClassification() {
        XCTAssertEqual(TLSError.classify(verifyResult: 20, queuedReason: 134, reasonText: "certificate verify failed", handshake: true),
                       .verifyFailed("certificate verify failed: unable to get local issuer certificate"))
        XCTAssertEqual(TLSError.classify(verifyResult: 0, queuedReason: 1, reasonText: "wrong version number", handshake: true),
                       .handshake("wrong version number"))
        XCTAssertEqual(TLSError.classify(verifyResult: 0, queuedReason: nil, reasonText: nil, handshake: false),
                       .protocolError("unknown error"))
        XCTAssertEqual(TLSError.classify(verifyResult: 62, queuedReason: nil, reasonText: nil, handshake: true),
                       .verifyFailed("certificate verify failed: hostname mismatch"))
    }

    func testBadCARefused() {
        XCTAssertThrowsError(try HijackAuthority.load(cert: "/nonexistent/ca.crt", key: Self.ca.key))
        let other = try! CAGenerator.generate(commonName: "other", days: 1)
        XCTAssertThrowsError(try HijackAuthority.load(cert: Self.ca.cert, key: other.key)) { e in
            XCTAssertEqual("\(e)", "hijackHTTPS.key does not match hijackHTTPS.cert")
        }
        XCTAssertThrowsError(try HijackAuthority.load(cert: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", key: Self.ca.key))
    }

    func testSessionTicketKeysRoundTripThroughTheEnvironmentForm() {
        let a = SessionTickets.make(), b = SessionTickets.make()
        XCTAssertNotEqual(a, b, "fresh keys each daemon")
        XCTAssertEqual(SessionTickets.parse(a)?.count, 80)
        XCTAssertEqual(SessionTickets.parse(a).map(Hex.encode), a)
        XCTAssertNil(SessionTickets.parse(String(a.dropLast())))
        XCTAssertNil(SessionTickets.parse(String(repeating: "zz", count: 80)))
    }
}
