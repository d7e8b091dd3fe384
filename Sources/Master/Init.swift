import ArgumentParser
import Foundation
import Config
import UV
import Worker

/// `dfget init --runtime containerd`: containerd's hosts.toml for `_default` and the well-known
/// registries, each with the daemon as mirror and the registry as fallback. Files it did not write
/// are backed up first; re-running it changes nothing; `--dry-run` prints what would change. It
/// says whether this containerd reads `_default` (1.7 on) and whether its config has `config_path`.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set a container runtime up to pull through this daemon (containerd).")

    @Option(name: .long, help: "containerd (crio, podman and docker are not done yet).")
    var runtime: String

    @Option(name: .long, help: "The daemon's config file (where it listens).")
    var config = "/etc/dragonfly/dfget.yaml"

    @Option(name: .long, parsing: .upToNextOption, help: "Registries to write a folder for (besides _default).")
    var registries: [String] = Init.wellKnown

    @Option(name: .long, help: "containerd's config_path.")
    var configPath = "/etc/containerd/certs.d"

    @Option(name: .long, help: "containerd's config file, checked for config_path.")
    var containerdConfig = "/etc/containerd/config.toml"

    @Flag(name: .long, help: "Print what would change; write nothing.")
    var dryRun = false

    static let wellKnown = ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "mcr.microsoft.com", "public.ecr.aws"]

    func run() throws {
        guard runtime == "containerd" else {
            printError("dfget init: --runtime \(runtime): only containerd is done yet (crio, podman and docker are not)\n")
            throw ExitCode(2)
        }
        let loaded = try loadConfig(config, for: "init")
        let listen = loaded.config.proxy?.tcpListen
        let host = listen?.localAddress ?? "127.0.0.1"
        let port = listen?.ports.lowerBound ?? 65001
        var failed = false
        for r in [ContainerdHosts.anyRegistry] + registries {
            guard let e = ContainerdHosts.entry(r) else {
                printError("dfget init: not a registry host or URL: \(r)\n")
                failed = true
                continue
            }
            let (file, outcome) = try HostsFiles.put(e, configPath: configPath, host: host, port: port, foreign: .backUp, dryRun: dryRun)
            switch outcome {
            case .unchanged:
                print("\(file): unchanged")
            case .wouldWrite(let diff, let replacing):
                print("\(file): would be \(replacing ? "replaced" : "written")")
                print(diff)
            case .written(let backup):
                if let backup { print("\(file): backed up to \(backup)") }
                print("\(file): written (mirror http://\(HostPort.format(host, port)))")
            case .kept:
                break  // never with .backUp
            }
        }
        for line in ContainerdHosts.checks(containerdConfig: containerdConfig, configPath: configPath, version: Init.containerdVersion()) { print(line) }
        if failed { throw ExitCode(1) }
    }

    /// `containerd --version`: (major, minor, as printed), or nil when it is not installed.
    static func containerdVersion() -> (Int, Int, String)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["containerd", "--version"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return ContainerdHosts.parseVersion(out)
    }

}
