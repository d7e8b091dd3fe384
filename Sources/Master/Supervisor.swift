import Foundation
import UV
import Config
import Cache
import Worker
import Peer
import Metrics

/// The master: owns the listening sockets, hands each accepted socket to a worker over its IPC pipe,
/// replaces workers that die, reloads on SIGHUP (a new generation of workers with the new config;
/// the old one finishes its requests and exits), and drains on SIGTERM/SIGINT.
final class Supervisor {
    final class Slot {
        let index: Int
        /// This worker's slab of the shared region (nil when none was free: it runs without metrics).
        let slab: Int?
        let generation: Int
        var process: ChildProcess?
        var startedMs: UInt64 = 0
        var backoff = RestartBackoff()
        var restartTimer: LoopTimer?
        var retiring = false
        init(index: Int, slab: Int?, generation: Int) {
            self.index = index
            self.slab = slab
            self.generation = generation
        }
    }

    private(set) var config: DaemonConfig
    let configPath: String
    let executable: String
    /// `--workers` from the command line, which a reload keeps.
    let workersOverride: Int?
    let region: SharedRegion?
    private var slots: [Slot] = []
    /// Workers of earlier generations finishing their requests after a reload.
    private var retiring: [Slot] = []
    private var freeSlabs: [Int]
    private var generation = 0
    private var listeners: [(TCP, Handoff)] = []
    private var next = 0
    private var pending: [(TCP, Handoff)] = []
    private(set) var draining = false
    private var signals: [SignalWatcher] = []
    private var killTimer: LoopTimer?
    private var ops: OpsServer?
    /// The members beyond the static list, resolved and watched here once for all workers.
    private var memberView: MemberView?
    private let idle = IdleWatch()
    /// Sockets waiting for a worker while none is alive (a crash loop); beyond this they are closed.
    static let maxPending = 1024

    init(config: DaemonConfig, configPath: String, executable: String, workersOverride: Int?, region: SharedRegion?) {
        self.config = config
        self.configPath = configPath
        self.executable = executable
        self.workersOverride = workersOverride
        self.region = region
        freeSlabs = region == nil ? [] : Array((1..<SharedRegion.slabCount).reversed())
    }

    func workerCount(_ c: DaemonConfig) -> Int {
        workersOverride ?? (c.workers > 0 ? c.workers : ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Listens on the first port of `ports` that is free and hands its connections to workers as
    /// `kind`; returns the port it got.
    func listen(on address: String, ports: ClosedRange<Int>, kind: Handoff) throws -> Int {
        let (tcp, port) = try Supervisor.listenOnFirstFree(address, ports, backlog: 1024) { [weak self] client in
            guard let self else { return client.close() }
            idle.accepted += 1
            dispatch(client, kind)
        }
        listeners.append((tcp, kind))
        return port
    }

    /// Binds the first free port of `ports` on `address` and accepts on it.
    static func listenOnFirstFree(_ address: String, _ ports: ClosedRange<Int>, backlog: Int32,
                                  accepted: @escaping (TCP) -> Void) throws -> (TCP, Int) {
        var lastError: Error = UVError(0)
        for port in ports {
            let tcp = TCP()
            do {
                try tcp.bind(SocketAddress(host: address, port: port))
                // libuv reports an address in use at listen(), so trying a port means listening on it.
                try tcp.listen(backlog: backlog) { [unowned tcp] in
                    if let client = tcp.accept() { accepted(client) }
                }
                return (tcp, tcp.localAddress?.port ?? port)
            } catch {
                lastError = error
                tcp.close()
            }
        }
        throw BindError(listen: address, ports: ports, underlying: "\(lastError)")
    }

    /// The health and metrics listener (`health.tcpListen`).
    func listenOps(_ h: DaemonConfig.Health) throws -> Int {
        let s = OpsServer(path: h.path, status: { [unowned self] in health() }, metrics: { [unowned self] in metricsText() },
                          debug: { [unowned self] in DebugTasks.answer($0, dataDir: config.dataDir) })
        let port = try s.listen(on: h.tcpListen.listen, ports: h.tcpListen.ports)
        ops = s
        return port
    }

    struct BindError: Error, CustomStringConvertible {
        let listen: String
        let ports: ClosedRange<Int>
        let underlying: String
        var description: String {
            let p = ports.count == 1 ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
            return "cannot listen on \(listen):\(p): \(underlying)"
        }
    }

    func start() {
        EventLoop.ignoreSIGPIPE()
        // Handlers first: a signal sent as soon as the workers show up must not find the default action.
        signals = [SIGTERM, SIGINT].map { sig in
            SignalWatcher(signal: sig) { [weak self] n in self?.beginDrain(signal: n) }
        }
        signals.append(SignalWatcher(signal: SIGHUP) { [weak self] _ in self?.reload() })
        signals.append(SignalWatcher(signal: SIGUSR1) { [weak self] _ in self?.reopenLogs() })
        watchMembers()
        startGeneration()
        armIdleExit()
    }

    /// Writes the members view before the workers start (none reads what an earlier run left),
    /// then tells the current workers whenever it changes.
    private func watchMembers() {
        memberView?.stop()
        memberView = nil
        guard let peers = config.peers, !peers.secret.isEmpty else { return }
        let view = MemberView(peers: peers, dataDir: config.dataDir, peerPort: config.upload.tcpListen.ports.lowerBound) { [weak self] in
            guard let self else { return }
            for s in slots { s.process?.ipc.send(byte: WorkerCommand.members.rawValue) }
        }
        memberView = view
        view.start()
    }

    // MARK: Workers

    private func startGeneration() {
        generation += 1
        slots = (0..<workerCount(config)).map { Slot(index: $0, slab: freeSlabs.popLast(), generation: generation) }
        for s in slots { spawn(s) }
    }

    private func spawn(_ slot: Slot) {
        slot.restartTimer?.close()
        slot.restartTimer = nil
        setenv(WorkerEnvironment.workerCount, String(workerCount(config)), 1)
        var args = ["worker", "--index", String(slot.index)]
        if let slab = slot.slab { args += ["--slab", String(slab)] }
        do {
            let p = try ChildProcess(executable: executable, arguments: args, sharedFd: slot.slab == nil ? -1 : region?.fd ?? -1) {
                [weak self] status, signal in self?.exited(slot, status: status, signal: signal)
            }
            slot.process = p
            slot.startedMs = EventLoop.nowMs
            Log.shared.info("worker spawned", ["worker": slot.index, "workerPid": p.pid, "generation": slot.generation])
            flushPending()
        } catch {
            Log.shared.error("cannot spawn worker", ["worker": slot.index, "error": "\(error)"])
            scheduleRestart(slot)
        }
    }

    private func exited(_ slot: Slot, status: Int64, signal: Int32) {
        let pid = slot.process?.pid ?? 0
        slot.process?.ipc.close()
        slot.process?.close()
        slot.process = nil
        // Its counters join the master's; its gauges go with it.
        if let slab = slot.slab { region?.retire(slab: slab) }
        if slot.retiring {
            retiring.removeAll { $0 === slot }
            if let slab = slot.slab { freeSlabs.append(slab) }
            Log.shared.info("old worker exited", ["worker": slot.index, "workerPid": pid, "generation": slot.generation,
                                                   "status": status, "signal": signal])
            if draining && allExited { finish() }
            return
        }
        if draining {
            Log.shared.info("worker exited", ["worker": slot.index, "workerPid": pid, "status": status, "signal": signal])
            if allExited { finish() }
            return
        }
        Log.shared.warn("worker died: restarting", ["worker": slot.index, "workerPid": pid, "status": status, "signal": signal])
        region?.addGlobal(.workerRestarts)
        // A worker that dies within a second of starting is crash-looping: back off up to 5 s.
        _ = slot.backoff.exited(afterLivingMs: EventLoop.nowMs - slot.startedMs)
        scheduleRestart(slot)
    }

    private var allExited: Bool { slots.allSatisfy { $0.process == nil } && retiring.isEmpty }

    private func scheduleRestart(_ slot: Slot) {
        guard slot.backoff.delayMs > 0 else {
            spawn(slot)
            return
        }
        let t = LoopTimer()
        slot.restartTimer = t
        t.start(ms: slot.backoff.delayMs) { [weak self] in self?.spawn(slot) }
    }

    /// Round robin over the live workers of the current generation; the master's copy of the
    /// socket is closed once it is sent.
    private func dispatch(_ client: TCP, _ kind: Handoff) {
        let live = slots.filter { $0.process != nil }
        guard let i = ReloadPlan.dispatch(next, up: live.count) else {
            if pending.count < Supervisor.maxPending { pending.append((client, kind)) } else { client.close() }
            return
        }
        let slot = live[i]
        next &+= 1
        slot.process!.ipc.send(tag: kind.rawValue, handle: client) { _ in client.close() }
    }

    private func flushPending() {
        let queued = pending
        pending = []
        for (c, k) in queued { dispatch(c, k) }
    }

    // MARK: Reload (SIGHUP) and logs (SIGUSR1)

    /// nginx's model: the new config is validated first (a bad one is refused and the running one
    /// stays); then a new generation of workers starts with it and takes every new connection, and
    /// the old workers finish their in-flight requests and exit, bounded by `drainTimeout`. The
    /// master's pid and its listening sockets stay.
    func reload() {
        guard !draining else { return }
        let loaded: ConfigLoader.Loaded
        do {
            loaded = try ConfigLoader.load(path: configPath)
            _ = try TLSSetup.prepare(loaded.config)
        } catch {
            region?.addGlobal(.reloadFailures)
            Log.shared.error("reload refused: the running config stays", ["config": configPath, "error": "\(error)"])
            return
        }
        for w in loaded.warnings { Log.shared.warn("config", ["warning": w.description]) }
        let new = loaded.config
        for kept in ReloadPlan.listenerChanges(from: config, to: new) {
            Log.shared.warn("reload: a listening socket is kept as it was; restart the daemon to change it", ["key": kept])
        }
        setenv(WorkerEnvironment.configText, loaded.text, 1)
        config = new
        watchMembers()
        let old = slots
        for s in old {
            s.retiring = true
            s.restartTimer?.close()
            s.restartTimer = nil
            if let p = s.process {
                retiring.append(s)
                p.ipc.send(byte: WorkerCommand.stop.rawValue)
            } else if let slab = s.slab {
                freeSlabs.append(slab)
            }
        }
        startGeneration()
        region?.addGlobal(.reloads)
        armIdleExit()
        Log.shared.info("reloaded", ["config": configPath, "generation": generation, "workers": slots.count, "retiring": retiring.count])
    }

    /// logrotate moved the files away: the master and every worker open them again. The command
    /// waits in each worker's channel until it reads it, however young the worker is.
    private func reopenLogs() {
        if let e = Log.shared.reopen() { Log.shared.error("cannot reopen the log", ["error": e]) }
        for s in slots + retiring { s.process?.ipc.send(byte: WorkerCommand.reopenLogs.rawValue) }
        Log.shared.info("log reopened", ["workers": slots.count + retiring.count])
    }

    // MARK: Health, metrics, idle exit

    func health() -> (healthy: Bool, reason: String) {
        if draining { return (false, "draining: the daemon is stopping") }
        let up = slots.filter { $0.process != nil }.count
        if up == slots.count { return (true, "ok") }
        if up == 0 { return (false, "no worker is up (\(slots.count) restarting)") }
        return (false, "\(up) of \(slots.count) workers up")
    }

    private func metricsText() -> String {
        guard let region else { return "" }
        var e = Exposition(region: region, cacheBytes: PieceCache.usage(dataDir: config.dataDir).bytes, version: DfgetVersion.string)
        e.members = memberView.map { ($0.members.count, $0.errors) }
        return e.render()
    }

    /// `aliveTime`: a daemon with no request, no connection accepted and no download for that long
    /// exits 0 (after the usual drain). 0 means forever.
    private func armIdleExit() {
        idle.timer?.close()
        idle.timer = nil
        guard config.aliveTime > 0, let region else { return }
        let aliveMs = UInt64(config.aliveTime * 1000)
        let tick = min(1000, max(50, aliveMs / 4))
        idle.lastActivityMs = EventLoop.nowMs
        let t = LoopTimer()
        t.unref()
        idle.timer = t
        t.start(ms: tick, repeatMs: tick) { [weak self] in
            guard let self, !draining else { return }
            let now = EventLoop.nowMs
            if idle.sawActivity(region) { idle.lastActivityMs = now }
            if now - idle.lastActivityMs >= aliveMs {
                Log.shared.info("idle for aliveTime: exiting", ["aliveTime": config.aliveTime])
                beginDrain(signal: 0)
            }
        }
    }

    // MARK: Drain

    private func beginDrain(signal: Int32) {
        guard !draining else { return }
        draining = true
        Log.shared.info("draining: stopped accepting", ["signal": signal, "drainTimeout": config.drainTimeout])
        for (l, _) in listeners { l.close() }
        listeners = []
        for (c, _) in pending { c.close() }
        pending = []
        idle.timer?.close()
        idle.timer = nil
        memberView?.stop()
        for s in slots + retiring {
            s.restartTimer?.close()
            s.restartTimer = nil
            s.process?.ipc.send(byte: WorkerCommand.stop.rawValue)
        }
        if allExited {
            finish()
            return
        }
        // Workers exit by themselves after drainTimeout; this is the backstop for a stuck one.
        let t = LoopTimer()
        killTimer = t
        t.start(ms: UInt64((config.drainTimeout + 5) * 1000)) { [weak self] in
            guard let self else { return }
            for s in slots + retiring { s.process?.kill(SIGKILL) }
        }
    }

    private func finish() {
        Log.shared.info("master exiting")
        killTimer?.close()
        ops?.close()
        ops = nil
        for s in signals { s.close() }
        signals = []
    }
}

/// What `aliveTime` watches: connections accepted, requests answered, and requests or downloads in progress.
final class IdleWatch {
    var timer: LoopTimer?
    var accepted = 0
    var lastActivityMs: UInt64 = 0
    private var seen: (accepted: Int, requests: UInt64) = (0, 0)

    func sawActivity(_ region: SharedRegion) -> Bool {
        let requests = region.requestsAnswered()
        let busy = region.sum(.connectionsActive) > 0 || region.sum(.tasksActive) > 0
        defer { seen = (accepted, requests) }
        return busy || accepted != seen.accepted || requests != seen.requests
    }
}
