// Module Master (the `dfget` executable): the command line and the supervisor that binds the
// ports, spawns and restarts workers, reloads, serves health and metrics, and drains.
// May import: UV, Metrics, HTTP (the health listener), Config, Worker (and TLS for gen-ca), ArgumentParser.

import ArgumentParser
import Foundation
import UV
import Config
import TLS
import Worker
import Metrics

struct Dfget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dfget",
        abstract: "Node daemon that sits between containerd and container registries.",
        subcommands: [Daemon.self, GenCA.self, GenContainerdHosts.self, Init.self, Status.self, Purge.self, Version.self, WorkerRole.self]
    )
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("dfget \(DfgetVersion.string)") }
}

struct Daemon: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy / registry mirror daemon.")

    @Option(name: .long, help: "Config file.")
    var config = "/etc/dragonfly/dfget.yaml"

    @Flag(name: .long, help: "Validate the config and exit.")
    var check = false

    @Option(name: .long, help: "Worker processes (overrides the config's `workers`; default one per core).")
    var workers: Int?

    func run() throws {
        let loaded: ConfigLoader.Loaded
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch let e as ConfigError {
            printError("dfget: \(e)\n")
            throw ExitCode(2)
        }
        for w in loaded.warnings { printError("dfget: warning: \(w)\n") }
        // CA, certificates and trust files are checked before anything listens (and by --check).
        let tlsWarnings: [String]
        do {
            tlsWarnings = try TLSSetup.prepare(loaded.config)
        } catch {
            printError("dfget: \(config): \(error)\n")
            throw ExitCode(2)
        }
        for w in tlsWarnings { printError("dfget: warning: \(w)\n") }
        if check {
            print("\(config): OK")
            return
        }
        let cfg = loaded.config
        do {
            Log.shared = try Log.open(logDir: cfg.logDir, role: "master")
        } catch {
            printError("dfget: cannot open log under \(cfg.logDir)/daemon: \(error)\n")
            throw ExitCode(1)
        }
        Log.shared.echoToStderr = false
        for w in loaded.warnings { Log.shared.warn("config", ["warning": w.description]) }

        for w in tlsWarnings { Log.shared.warn("tls", ["warning": w]) }

        let count = workers ?? (cfg.workers > 0 ? cfg.workers : ProcessInfo.processInfo.activeProcessorCount)
        guard count >= 1 && count <= 256 else {
            printError("dfget: --workers must be 1...256\n")
            throw ExitCode(2)
        }
        setenv(WorkerEnvironment.configText, loaded.text, 1)
        setenv(WorkerEnvironment.configFile, config, 1)
        // One set of ticket keys for the daemon's life (reloads keep them): sessions resume on any worker.
        setenv(WorkerEnvironment.ticketKeys, SessionTickets.make(), 1)
        let files = EventLoop.raiseFileLimit()
        // Counters and daemon-wide rate limits live in memory every worker maps.
        let region: SharedRegion?
        do { region = try SharedRegion.create() } catch {
            Log.shared.error("no shared region: metrics and daemon-wide limits are per worker", ["error": "\(error)"])
            region = nil
        }

        let supervisor = Supervisor(config: cfg, configPath: URL(fileURLWithPath: config).standardizedFileURL.path, executable: EventLoop.executablePath(), workersOverride: workers,
                                    region: region)
        var endpoints: [String] = []
        do {
            if let p = cfg.proxy {
                let port = try supervisor.listen(on: p.tcpListen.listen, ports: p.tcpListen.ports, kind: .proxy)
                endpoints.append("proxy \(p.tcpListen.listen):\(port)")
                Log.shared.info("proxy listening", ["listen": p.tcpListen.listen, "port": port])
            } else {
                Log.shared.warn("proxy disabled: proxy.tcpListen.port is not set")
            }
            let up = cfg.upload.tcpListen
            let port = try supervisor.listen(on: up.listen, ports: up.ports, kind: .peer)
            endpoints.append("peer \(up.listen):\(port)")
            Log.shared.info("peer port listening", ["listen": up.listen, "port": port])
            if let h = cfg.health {
                let port = try supervisor.listenOps(h)
                endpoints.append("health \(h.tcpListen.listen):\(port)\(h.path) and /metrics")
                Log.shared.info("health listening", ["listen": h.tcpListen.listen, "port": port, "path": h.path])
            }
        } catch {
            Log.shared.error("startup failed", ["error": "\(error)"])
            printError("dfget: \(error)\n")
            throw ExitCode(1)
        }
        Log.shared.info("daemon started", ["version": DfgetVersion.string, "workers": count, "config": config, "openFiles": files])
        printOut("dfget \(DfgetVersion.string): \(endpoints.joined(separator: ", ")), \(count) workers, log \(Log.shared.path ?? "-")\n")
        supervisor.start()
        EventLoop.run()
    }
}

struct WorkerRole: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Internal: a worker process, spawned by the daemon.", shouldDisplay: false)

    @Option(name: .long) var index = 0
    @Option(name: .long) var slab: Int?

    func run() throws {
        do {
            try WorkerMain.run(index: index, slab: slab)
        } catch let e as WorkerMain.StartError {
            printError("dfget worker: \(e)\n")
            throw ExitCode(2)
        }
    }
}

Dfget.main()
