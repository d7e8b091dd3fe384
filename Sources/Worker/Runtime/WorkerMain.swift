import Foundation
import UV
import Config

/// A worker's entry point: the config the master validated comes through the environment, so a
/// worker restarted later runs with the same config even if the file changed meanwhile.
public enum WorkerMain {
    public enum StartError: Error, CustomStringConvertible {
        case notSpawnedByDaemon
        public var description: String { "must be started by `dfget daemon`" }
    }

    public static func run(index: Int) throws {
        let env = ProcessInfo.processInfo.environment
        guard let text = env[WorkerEnvironment.configText] else { throw StartError.notSpawnedByDaemon }
        let loaded = try ConfigLoader.load(text: text, file: env[WorkerEnvironment.configFile] ?? "dfget.yaml")
        Log.shared = try Log.open(logDir: loaded.config.logDir, role: "worker")
        Log.shared.echoToStderr = false
        _ = try TLSSetup.prepare(loaded.config)
        try WorkerProcess(config: loaded.config, index: index).run()
    }
}
