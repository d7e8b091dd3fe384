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
        let loaded: ConfigLoader.Loaded
        do { loaded = try ConfigLoader.load(path: config) } catch {
            printError("dfget init: \(error)\n")
            throw ExitCode(2)
        }
        let listen = loaded.config.proxy?.tcpListen
        let address = listen?.listen ?? "0.0.0.0"
        let host = ["0.0.0.0", "::", ""].contains(address) ? "127.0.0.1" : address
        let port = listen?.ports.lowerBound ?? 65001
        var failed = false
        for r in [ContainerdHosts.anyRegistry] + registries {
            guard let e = ContainerdHosts.entry(r) else {
                printError("dfget init: not a registry host or URL: \(r)\n")
                failed = true
                continue
            }
            let dir = (configPath as NSString).appendingPathComponent(e.directory)
            let file = (dir as NSString).appendingPathComponent("hosts.toml")
            let text = ContainerdHosts.render(e, daemonHost: host, daemonPort: port)
            let existing = try? String(contentsOfFile: file, encoding: .utf8)
            if existing == text {
                print("\(file): unchanged")
                continue
            }
            if dryRun {
                print("\(file): would be \(existing == nil ? "written" : "replaced")")
                print(ContainerdHosts.diff(existing ?? "", text))
                continue
            }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if let existing, !existing.hasPrefix(ContainerdHosts.marker) {
                let backup = file + ".dfget-backup"
                try existing.write(toFile: backup, atomically: true, encoding: .utf8)
                print("\(file): backed up to \(backup)")
            }
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            print("\(file): written (mirror http://\(HostPort.format(host, port)))")
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
