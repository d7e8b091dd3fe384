import ArgumentParser
import Foundation
import UV
import Worker

/// `dfget gen-containerd-hosts REGISTRY...`: per-registry hosts.toml with the daemon as mirror and the
/// origin as fallback. Idempotent; files it did not write are kept unless `--force`.
struct GenContainerdHosts: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gen-containerd-hosts",
                                                    abstract: "Write containerd hosts.toml files that use this daemon as registry mirror.")

    @Option(name: .long, help: "containerd's config_path.")
    var configPath = "/etc/containerd/certs.d"

    @Option(name: .long, help: "The daemon's address as containerd reaches it.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "The daemon's proxy port.")
    var port = 65001

    @Flag(name: .long, help: "Overwrite hosts.toml files this command did not write.")
    var force = false

    @Argument(help: "host[:port] (https), an http:// or https:// URL, docker.io, or _default (every registry without a folder of its own).")
    var registries: [String]

    func run() throws {
        var failed = false
        for r in registries {
            guard let e = ContainerdHosts.entry(r) else {
                printError("dfget gen-containerd-hosts: not a registry host or URL: \(r)\n")
                failed = true
                continue
            }
            let (file, outcome) = try HostsFiles.put(e, configPath: configPath, host: host, port: port, foreign: force ? .replace : .keep)
            switch outcome {
            case .unchanged:
                print("\(file): unchanged")
            case .kept:
                printError("dfget gen-containerd-hosts: \(file) was not written by dfget; kept (use --force to replace it)\n")
                failed = true
            case .wouldWrite:
                break  // no --dry-run here
            case .written:
                if let server = e.server {
                    print("\(file): written (server \(server), mirror http://\(host):\(port))")
                } else {
                    print("\(file): written (every registry without its own folder, mirror http://\(host):\(port); "
                          + "the daemon needs proxy.registryMirror.dynamic: true to take the registry from containerd's ?ns=)")
                }
            }
        }
        if failed { throw ExitCode(1) }
    }
}
