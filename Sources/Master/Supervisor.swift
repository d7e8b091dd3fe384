import Foundation
import UV
import Config
import Worker

/// The master: owns the listening sockets, hands each accepted socket to a worker over its IPC pipe,
/// replaces workers that die, and drains on SIGTERM/SIGINT.
final class Supervisor {
    final class Slot {
        let index: Int
        var process: ChildProcess?
        var startedMs: UInt64 = 0
        var backoff = RestartBackoff()
        var restartTimer: LoopTimer?
        init(index: Int) { self.index = index }
    }

    let config: DaemonConfig
    let executable: String
    private var slots: [Slot] = []
    private var listeners: [(TCP, Handoff)] = []
    private var next = 0
    private var pending: [(TCP, Handoff)] = []
    private var draining = false
    private var signals: [SignalWatcher] = []
    private var killTimer: LoopTimer?
    /// Sockets waiting for a worker while none is alive (a crash loop); beyond this they are closed.
    static let maxPending = 1024

    init(config: DaemonConfig, executable: String) {
        self.config = config
        self.executable = executable
    }

    /// Listens on the first port of `ports` that is free and hands its connections to workers as
    /// `kind`; returns the port it got.
    func listen(on address: String, ports: ClosedRange<Int>, kind: Handoff) throws -> Int {
        var lastError: Error = UVError(0)
        for port in ports {
            let tcp = TCP()
            do {
                try tcp.bind(SocketAddress(host: address, port: port))
                // libuv reports an address in use at listen(), so trying a port means listening on it.
                try tcp.listen(backlog: 1024) { [weak self, unowned tcp] in
                    guard let self, let client = tcp.accept() else { return }
                    dispatch(client, kind)
                }
                listeners.append((tcp, kind))
                return tcp.localAddress?.port ?? port
            } catch {
                lastError = error
                tcp.close()
            }
        }
        throw BindError(listen: address, ports: ports, underlying: "\(lastError)")
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

    func start(workers: Int) {
        EventLoop.ignoreSIGPIPE()
        slots = (0..<workers).map(Slot.init)
        for s in slots { spawn(s) }
        signals = [SIGTERM, SIGINT].map { sig in
            SignalWatcher(signal: sig) { [weak self] n in self?.beginDrain(signal: n) }
        }
    }

    private func spawn(_ slot: Slot) {
        slot.restartTimer?.close()
        slot.restartTimer = nil
        do {
            let p = try ChildProcess(executable: executable, arguments: ["worker", "--index", String(slot.index)]) {
                [weak self] status, signal in self?.exited(slot, status: status, signal: signal)
            }
            slot.process = p
            slot.startedMs = EventLoop.nowMs
            Log.shared.info("worker spawned", ["worker": slot.index, "workerPid": p.pid])
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
        if draining {
            Log.shared.info("worker exited", ["worker": slot.index, "workerPid": pid, "status": status, "signal": signal])
            if slots.allSatisfy({ $0.process == nil }) { finish() }
            return
        }
        Log.shared.warn("worker died: restarting", ["worker": slot.index, "workerPid": pid, "status": status, "signal": signal])
        // A worker that dies within a second of starting is crash-looping: back off up to 5 s.
        _ = slot.backoff.exited(afterLivingMs: EventLoop.nowMs - slot.startedMs)
        scheduleRestart(slot)
    }

    private func scheduleRestart(_ slot: Slot) {
        guard slot.backoff.delayMs > 0 else {
            spawn(slot)
            return
        }
        let t = LoopTimer()
        slot.restartTimer = t
        t.start(ms: slot.backoff.delayMs) { [weak self] in self?.spawn(slot) }
    }

    /// Round robin over live workers; the master's copy of the socket is closed once it is sent.
    private func dispatch(_ client: TCP, _ kind: Handoff) {
        let live = slots.filter { $0.process != nil }
        guard !live.isEmpty else {
            if pending.count < Supervisor.maxPending { pending.append((client, kind)) } else { client.close() }
            return
        }
        let slot = live[next % live.count]
        next &+= 1
        slot.process!.ipc.send(tag: kind.rawValue, handle: client) { _ in client.close() }
    }

    private func flushPending() {
        let queued = pending
        pending = []
        for (c, k) in queued { dispatch(c, k) }
    }

    private func beginDrain(signal: Int32) {
        guard !draining else { return }
        draining = true
        Log.shared.info("draining: stopped accepting", ["signal": signal, "drainTimeout": config.drainTimeout])
        for (l, _) in listeners { l.close() }
        listeners = []
        for (c, _) in pending { c.close() }
        pending = []
        for s in slots {
            s.restartTimer?.close()
            s.restartTimer = nil
            s.process?.kill(SIGTERM)
        }
        if slots.allSatisfy({ $0.process == nil }) {
            finish()
            return
        }
        // Workers exit by themselves after drainTimeout; this is the backstop for a stuck one.
        let t = LoopTimer()
        killTimer = t
        t.start(ms: UInt64((config.drainTimeout + 5) * 1000)) { [weak self] in
            guard let self else { return }
            for s in slots { s.process?.kill(SIGKILL) }
        }
    }

    private func finish() {
        Log.shared.info("master exiting")
        killTimer?.close()
        for s in signals { s.close() }
        signals = []
    }
}
