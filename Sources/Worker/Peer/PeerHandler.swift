// Module Peer: the peer-exchange port.
// May import: UV, HTTP (and Config, Cache as the exchange grows).

import HTTP

/// The peer-exchange port. For now it answers health checks; piece exchange between hosts comes here.
public final class PeerHandler {
    public init() {}

    public func handle(_ ex: Exchange) {
        switch (ex.request.method, ex.request.target) {
        case ("GET", "/healthy"), ("HEAD", "/healthy"):
            ex.respond(status: 200, body: "OK\n")
        default:
            ex.respond(status: 404, body: "not found\n")
        }
    }
}
