// Module Worker: one worker process, composing the layers on one loop; its entry point; what the
// master and workers agree on (socket handoff tags, the config in the environment).
// May import: every module above it (UV, Metrics, TLS, HTTP, Config, Cache, Proxy, Peer).

import Foundation
import UV
import TLS
import HTTP
import Config
import Cache
import Registry
import Proxy
import Peer
import Metrics

/// A worker: one libuv loop serving the sockets the master hands over fd 3, until told to drain.
public final class WorkerProcess {
    let config: DaemonConfig
    let index: Int
    let proxy: ProxyHandler?
    /// Health checks only until the cache (and, with members, the exchange) is up.
    private(set) var peer = PeerHandler()
    private var membership: Membership?
    private let ipc = Pipe(ipc: true)
    private var connections: [ObjectIdentifier: ServerConnection] = [:]
    private var draining = false
    private var signals: [SignalWatcher] = []
    private let concurrency: ConcurrencyLimit
    /// This host's own addresses, read once at start.
    private let localHosts = SocketAddress.localInterfaceHosts()

    public init(config: DaemonConfig, index: Int) {
        self.config = config
        self.index = index
        concurrency = ConcurrencyLimit(limit: config.proxy?.maxConcurrency ?? 0)
        proxy = config.proxy.map { [localHosts] in ProxyHandler(config: $0, destinations: WorkerProcess.destinations(config, localHosts: localHosts)) }
    }

    /// The daemon's own ports (proxy and peer) on any of this host's addresses are never a destination.
    static func destinations(_ config: DaemonConfig, localHosts: Set<String>) -> DestinationGuard {
        var ports = [config.upload.tcpListen.ports]
        if let p = config.proxy { ports.append(p.tcpListen.ports) }
        return DestinationGuard(ownPorts: ports, localHosts: localHosts)
    }

    public func run() throws {
        EventLoop.ignoreSIGPIPE()
        EventLoop.raiseFileLimit()
        Limits.upstreamIdleMs = UInt64(max(0.1, config.upstreamTimeout) * 1000)
        Limits.headerTimeoutMs = UInt64(max(0.1, config.headerTimeout) * 1000)
        Limits.writeTimeoutMs = UInt64(max(0.1, config.writeTimeout) * 1000)
        Limits.tunnelIdleMs = UInt64(max(0.1, config.tunnelIdleTimeout) * 1000)
        try ipc.open(fd: 3)
        ipc.startReading { [self] ev in
            switch ev {
            case .data(let bytes):
                // In order: sockets sent before a stop are served, and nothing comes after one.
                for byte in bytes where !draining {
                    switch WorkerCommand.decode(byte) {
                    case .socket(let kind):
                        guard let sock = ipc.acceptPendingTCP() else { continue }
                        serve(sock, kind)
                    case .command(.stop):
                        drain()
                    case .command(.reopenLogs):
                        reopenLogs()
                    case .command(.members):
                        readMembers()
                    case .unknown(let b):
                        Log.shared.warn("unknown message from the master", ["worker": index, "byte": Int(b)])
                    }
                }
            case .eof, .error:
                Log.shared.info("master is gone: draining", ["worker": index])
                drain()
            }
        }
        openCache()
        // The master's commands come on the channel (stop, reopen the log). A SIGTERM sent to the
        // worker itself still drains it; Ctrl-C, SIGHUP and SIGUSR1 reach the whole process group
        // and are the master's to act on, so a worker ignores them.
        signals.append(SignalWatcher(signal: SIGTERM) { [self] _ in drain() })
        signals.append(SignalWatcher(signal: SIGINT) { _ in })
        signals.append(SignalWatcher(signal: SIGUSR1) { _ in })
        signals.append(SignalWatcher(signal: SIGHUP) { _ in })
        for s in signals { s.unref() }
        Log.shared.info("worker started", ["worker": index])
        EventLoop.run()
        exitWorker()
    }

    private func reopenLogs() {
        if let e = Log.shared.reopen() {
            Log.shared.error("cannot reopen the log", ["worker": index, "error": e])
        } else {
            Log.shared.info("log reopened", ["worker": index])
        }
    }

    /// The piece cache under `<dataDir>/cache`, shared by all workers; worker 0 collects garbage.
    private func openCache() {
        guard let proxy, let p = config.proxy else { return }
        do {
            let cache = try PieceCache(root: PieceCache.root(dataDir: config.dataDir))
            let service = CacheService(cache: cache, pool: proxy.pool, config: p, peerID: "\(ProcessInfo.processInfo.hostName)-\(getpid())")
            if p.manifests.enable { service.manifests = ManifestService(cache: cache, pool: proxy.pool, proxy: p) }
            if p.confirmAuthorization {
                let access = RegistryAccess(pool: proxy.pool)
                if let m = service.manifests {
                    access.outage = .init(health: m.health, grants: m.grants, staleMs: UInt64(p.manifests.staleIfError * 1000),
                                          deadlineMs: UInt64(p.manifests.upstreamTimeout * 1000))
                }
                service.access = access
            }
            proxy.cache = service
            joinPeers(service, pool: proxy.pool)
            if index == 0 {
                let t = LoopTimer()
                t.unref()
                let ms = UInt64(max(1, config.gcInterval) * 1000)
                t.start(ms: ms, repeatMs: ms) { [config] in service.collectGarbage(config.storage) }
            }
            // Evicted tasks this worker still holds open give their space back within seconds.
            let sweep = LoopTimer()
            sweep.unref()
            sweep.start(ms: 2000, repeatMs: 2000) { cache.dropEvicted() }
        } catch {
            Log.shared.error("piece cache unavailable: requests stream through uncached", ["worker": index, "error": "\(error)"])
        }
    }

    /// With members, the cache fills blobs from the peers and the peer port serves this host's pieces.
    private func joinPeers(_ service: CacheService, pool: UpstreamPool) {
        guard let peers = config.peers, !peers.secret.isEmpty else { return }
        let token = PeerToken(secret: peers.secret)
        let membership = Membership(peers: peers, advertiseIP: config.advertiseIP, peerPort: config.upload.tcpListen.ports.lowerBound,
                                    localHosts: localHosts)
        self.membership = membership
        readMembers()
        let network = PeerNetwork(membership: membership, token: token, pool: pool, perPeerRate: config.download.perPeerRateLimit,
                                  maxNeighbours: peers.maxNeighbours, backupSeeds: peers.backupSeeds)
        service.peers = network
        // A tag's revalidation goes to the member that owns it: one registry request per cluster.
        service.manifests?.tagOwner = { key, method, url, headers in network.tagRequest(key: key, method: method, url: url, headers: headers) }
        peer = PeerHandler(token: token, service: service, membership: membership,
                           uploads: config.upload.rateLimit > 0 ? Metrics.region?.uploadRate(config.upload.rateLimit) : nil,
                           maxUploads: UploadAdmission.perWorker(peers.uploadSlots, concurrentLimit: config.upload.concurrentLimit,
                                                                 workers: ProcessInfo.processInfo.environment[WorkerEnvironment.workerCount].flatMap { Int($0) }))
        if index == 0 {
            Log.shared.info("peer exchange on", ["members": membership.members.map(\.description).joined(separator: ","),
                                                  "me": membership.me?.description ?? "-"])
        }
    }

    /// The master's view of the members (the members file, `peers.dns`): at start, and each time
    /// the master says it changed.
    private func readMembers() {
        guard let membership else { return }
        guard let view = MemberView.read(dataDir: config.dataDir, peerPort: membership.peerPort) else {
            Log.shared.warn("no members view from the master: the static members only", ["worker": index])
            return
        }
        let before = membership.me
        membership.take(view: view)
        if index == 0, before == nil, let me = membership.me {
            Log.shared.info("this host found itself among the members", ["me": me.description, "members": membership.members.count])
        }
    }

    private func serve(_ sock: TCP, _ kind: Handoff) {
        let handler: (Exchange) -> Void
        switch kind {
        case .proxy:
            guard let proxy else { sock.close(); return }
            handler = { [concurrency] ex in concurrency.admit(ex, proxy.handle) }
            if let tls = ListenerTLS.shared {
                tls.accept(sock) { [self] stream in
                    if let stream, !draining { track(ServerConnection(socket: stream, handler: handler)) } else { stream?.close() }
                }
                return
            }
        case .peer:
            handler = peer.handle
        }
        track(ServerConnection(socket: sock, handler: handler))
    }

    private func track(_ conn: ServerConnection) {
        let id = ObjectIdentifier(conn)
        connections[id] = conn
        conn.onClosed = { [self] in
            connections[id] = nil
            if draining && connections.isEmpty { exitWorker() }
        }
        conn.start()
        if draining { conn.drain() }
    }

    /// Stop taking sockets, let in-flight requests finish (bounded by `drainTimeout`), then exit 0.
    func drain() {
        guard !draining else { return }
        draining = true
        ipc.close()
        proxy?.drain()
        Log.shared.info("worker draining", ["worker": index, "connections": connections.count])
        for c in Array(connections.values) { c.drain() }
        if connections.isEmpty {
            exitWorker()
            return
        }
        let t = LoopTimer()
        t.unref()
        t.start(ms: UInt64(config.drainTimeout * 1000)) { [self] in
            Log.shared.warn("drain timeout: closing connections", ["worker": index, "connections": connections.count])
            exitWorker()
        }
    }

    private func exitWorker() {
        Log.shared.info("worker exiting", ["worker": index])  // flushes the buffered access lines too
        exit(0)
    }
}
