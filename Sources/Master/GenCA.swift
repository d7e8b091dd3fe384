import ArgumentParser
import Foundation
import UV
import TLS

/// `dfget gen-ca --out DIR`: a CA for `proxy.hijackHTTPS`, and how to make containerd trust it.
struct GenCA: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gen-ca", abstract: "Write ca.crt and ca.key for proxy.hijackHTTPS.")

    @Option(name: .long, help: "Folder to write ca.crt and ca.key into.")
    var out: String

    @Option(name: .long, help: "The CA's common name.")
    var cn = "dfget hijack CA"

    @Option(name: .long, help: "Validity in days.")
    var days = 3650

    @Flag(name: .long, help: "Overwrite existing files.")
    var force = false

    func run() throws {
        let dir = URL(fileURLWithPath: out)
        let certPath = dir.appendingPathComponent("ca.crt").path
        let keyPath = dir.appendingPathComponent("ca.key").path
        for p in [certPath, keyPath] where FileManager.default.fileExists(atPath: p) && !force {
            printError("dfget gen-ca: \(p) exists (use --force to replace it)\n")
            throw ExitCode(1)
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let (cert, key) = try CAGenerator.generate(commonName: cn, days: days)
        // The key is created 0600 before any byte is written.
        _ = FileManager.default.createFile(atPath: keyPath, contents: nil, attributes: [.posixPermissions: 0o600])
        try Data(key.utf8).write(to: URL(fileURLWithPath: keyPath))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyPath)
        try Data(cert.utf8).write(to: URL(fileURLWithPath: certPath))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: certPath)
        print("""
        wrote \(certPath) and \(keyPath) (mode 0600)

        dfget.yaml:
          proxy:
            hijackHTTPS:
              cert: \(certPath)
              key: \(keyPath)
              hosts:
                - regx: your.private.registry

        Make containerd and ctr trust it (Debian):
          cp \(certPath) /usr/local/share/ca-certificates/dfget-hijack-ca.crt && update-ca-certificates
          systemctl restart containerd
        or, for one ctr command, a bundle of the system CAs plus this CA:
          cat /etc/ssl/certs/ca-certificates.crt \(certPath) > /tmp/bundle.crt
          SSL_CERT_FILE=/tmp/bundle.crt HTTPS_PROXY=http://127.0.0.1:65001 ctr image pull your.private.registry/ns/image:tag
        """)
    }
}
