import Foundation
import UV
import Config
import TLS
import HTTP
import Metrics

/// A worker's entry point: the config the master validated comes through the environment, so a
/// worker restarted later runs with the same config even if the file changed meanwhile.
public enum WorkerMain {
    public enum StartError: Error, CustomStringConvertible {
        case notSpawnedByDaemon
        public var description: String { "must be started by `dfget daemon`" }
    }

    /// `slab`: this worker's slab of the master's shared region, which it inherits as fd 4.
    public static func run(index: Int, slab: Int? = nil) throws {
        let env = ProcessInfo.processInfo.environment
        guard let text = env[WorkerEnvironment.configText] else { throw StartError.notSpawnedByDaemon }
        let loaded = try ConfigLoader.load(text: text, file: env[WorkerEnvironment.configFile] ?? "dfget.yaml")
        Log.shared = try Log.open(logDir: loaded.config.logDir, role: "worker")
        Log.shared.echoToStderr = false
        Log.shared.bufferAccess = true
        SessionTickets.keys = env[WorkerEnvironment.ticketKeys].flatMap(SessionTickets.parse)
        _ = try TLSSetup.prepare(loaded.config)
        if let slab {
            do {
                Metrics.attach(try SharedRegion.attach(fd: WorkerEnvironment.sharedFd), slab: slab)
            } catch {
                Log.shared.error("no shared region: metrics and daemon-wide limits are this worker's only", ["worker": index, "error": "\(error)"])
            }
        }
        let total = loaded.config.download.totalRateLimit
        if total > 0, let region = Metrics.region { OriginFetch.totalRate = region.downloadRate(total) }
        try WorkerProcess(config: loaded.config, index: index).run()
    }
}
