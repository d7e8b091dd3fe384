import ArgumentParser
import Config

/// The daemon's config for a command that only reads it (`init`, `status`); an error names the
/// file, line and key and exits 2, as the daemon does.
func loadConfig(_ path: String, for command: String) throws -> ConfigLoader.Loaded {
    do { return try ConfigLoader.load(path: path) } catch {
        printError("dfget \(command): \(error)\n")
        throw ExitCode(2)
    }
}
