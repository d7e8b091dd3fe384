import Foundation
import UV
import HTTP
import Metrics

/// The `health` listener, served by the master itself (it is the one that knows whether the
/// workers are up): `GET <health.path>` answers 200 `ok` while every worker is up, else 503 with
/// the reason; `GET /metrics` answers the Prometheus text of every worker's counters;
/// `GET /debug/tasks[/<digest>]` the fills in progress and the last ones (`DebugTasks`).
final class OpsServer {
    let path: String
    let status: () -> (healthy: Bool, reason: String)
    let metrics: () -> String
    /// `/debug/tasks[/<digest>]`: the JSON body, or nil for 404.
    let debug: (String) -> [UInt8]?
    private var listener: TCP?
    private var connections: [ObjectIdentifier: ServerConnection] = [:]

    init(path: String, status: @escaping () -> (healthy: Bool, reason: String), metrics: @escaping () -> String,
         debug: @escaping (String) -> [UInt8]? = { _ in nil }) {
        self.path = path
        self.status = status
        self.metrics = metrics
        self.debug = debug
    }

    /// Listens on the first free port of `ports`; returns the port.
    func listen(on address: String, ports: ClosedRange<Int>) throws -> Int {
        let (tcp, port) = try Supervisor.listenOnFirstFree(address, ports, backlog: 128) { [weak self] client in
            guard let self else { return client.close() }
            serve(client)
        }
        listener = tcp
        return port
    }

    func close() {
        listener?.close()
        listener = nil
        for c in connections.values { c.close() }
        connections = [:]
    }

    private func serve(_ sock: TCP) {
        let conn = ServerConnection(socket: sock) { [weak self] ex in self?.handle(ex) }
        let id = ObjectIdentifier(conn)
        connections[id] = conn
        conn.onClosed = { [weak self] in self?.connections[id] = nil }
        conn.start()
    }

    private func handle(_ ex: Exchange) {
        let method = ex.request.method
        let target = String(ex.request.target.prefix { $0 != "?" })
        guard method == "GET" || method == "HEAD" else {
            var h = HTTPHeaders()
            h.add("Allow", "GET, HEAD")
            return ex.respond(status: 405, headers: h, body: "GET or HEAD only\n")
        }
        var h = HTTPHeaders()
        switch target {
        case path:
            let s = status()
            h.add("Content-Type", "text/plain; charset=utf-8")
            h.add("Cache-Control", "no-store")
            ex.respond(status: s.healthy ? 200 : 503, headers: h, body: s.healthy ? "ok" : s.reason + "\n")
        case "/metrics":
            h.add("Content-Type", Exposition.contentType)
            ex.respond(status: 200, headers: h, body: metrics())
        case _ where target == "/debug/tasks" || target.hasPrefix("/debug/tasks/"):
            guard let body = debug(target) else { return ex.respond(status: 404, body: "no such task here\n") }
            h.add("Content-Type", "application/json")
            h.add("Cache-Control", "no-store")
            ex.respond(status: 200, headers: h, body: String(decoding: body, as: UTF8.self))
        default:
            ex.respond(status: 404, body: "not found: \(path), /metrics and /debug/tasks are served here\n")
        }
    }
}
