import UV

/// A config problem located in its file: `dfget.yaml:4: proxy.proxiess: unknown key (did you mean proxy.proxies?)`.
public struct ConfigError: Error, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let keyPath: String
    public let message: String

    public var description: String { ConfigError.format(file: file, line: line, keyPath: keyPath, message: message) }

    /// `file:line: key.path: message`, the form every config diagnostic takes.
    static func format(file: String, line: Int?, keyPath: String, message: String) -> String {
        let loc = line.map { "\(file):\($0)" } ?? file
        return keyPath.isEmpty ? "\(loc): \(message)" : "\(loc): \(keyPath): \(message)"
    }
}

/// Something accepted but worth telling the user (ignored reference keys, features not built yet).
public struct ConfigWarning: CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let keyPath: String
    public let message: String

    public var description: String { ConfigError.format(file: file, line: line, keyPath: keyPath, message: message) }
}
