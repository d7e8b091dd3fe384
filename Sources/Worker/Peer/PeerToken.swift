import TLS

/// The peer port's credential: every request carries `Dfget-Peer-Token: <unix seconds>.<hex
/// HMAC-SHA256(secret, "<METHOD> <target> <seconds>")>`. A request without a valid token (wrong
/// secret, other method or target, more than `skewSeconds` off) gets 401 before any routing.
public struct PeerToken: Sendable {
    // Not X-Dragonfly-*: requests to origins drop those.
    public static let header = "Dfget-Peer-Token"
    static let skewSeconds: Int64 = 300
    let secret: [UInt8]

    public init(secret: [UInt8]) { self.secret = secret }

    public func sign(method: String, target: String, now: Int64) -> String {
        "\(now)." + Hex.encode(mac(method, target, now))
    }

    public func verify(_ value: String?, method: String, target: String, now: Int64) -> Bool {
        guard let (ts, mac) = PeerToken.parts(value), abs(ts - now) <= PeerToken.skewSeconds, let given = Hex.decode(mac) else { return false }
        return HMACSHA256.equal(given, self.mac(method, target, ts))
    }

    /// A token's time and hex MAC.
    private static func parts(_ value: String?) -> (Int64, Substring)? {
        guard let value, let dot = value.firstIndex(of: "."), let ts = Int64(value[..<dot]) else { return nil }
        return (ts, value[value.index(after: dot)...])
    }

    /// What a token signs: "<METHOD> <target> <seconds>" (a sealed body is bound to it too).
    private static func signed(_ method: String, _ target: String, _ ts: Int64) -> [UInt8] { Array("\(method) \(target) \(ts)".utf8) }

    /// A request body that carries secrets (a client's registry credentials, in `POST .../origin`)
    /// goes sealed: AES-256-GCM under a key drawn from the secret, bound to the request's method,
    /// target and token time, so it can be neither read nor moved to another request.
    public static let sealedType = "application/vnd.dfget.sealed"

    public func seal(_ body: [UInt8], method: String, target: String, now: Int64) -> [UInt8]? {
        SealedBox.seal(body, key: bodyKey, aad: PeerToken.signed(method, target, now))
    }

    /// The body of a request whose token is `value` (already verified), or nil if it does not open.
    public func open(_ box: [UInt8], token value: String?, method: String, target: String) -> [UInt8]? {
        guard let (ts, _) = PeerToken.parts(value) else { return nil }
        return SealedBox.open(box, key: bodyKey, aad: PeerToken.signed(method, target, ts))
    }

    private var bodyKey: [UInt8] { HMACSHA256.mac(key: secret, Array("dfget peer body key v1".utf8)) }

    private func mac(_ method: String, _ target: String, _ ts: Int64) -> [UInt8] {
        HMACSHA256.mac(key: secret, PeerToken.signed(method, target, ts))
    }
}
