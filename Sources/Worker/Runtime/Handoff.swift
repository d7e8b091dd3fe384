import Config

/// What the master says about each socket it hands to a worker: the one byte sent along with it.
public enum Handoff: UInt8 {
    /// A client of the proxy port.
    case proxy = 0x50
    /// A peer of the upload (peer-exchange) port.
    case peer = 0x55
}

/// Environment through which the master gives its workers the config it validated, so that a worker
/// restarted later runs with the same config even if the file changed meanwhile.
public enum WorkerEnvironment {
    public static let configText = "DFGET_CONFIG_YAML"
    public static let configFile = "DFGET_CONFIG_FILE"
    /// The TLS session ticket keys all workers share (hex; see `SessionTickets`).
    public static let ticketKeys = "DFGET_TLS_TICKET_KEYS"
    /// The descriptor at which a worker finds the master's shared region (see `SharedRegion`).
    public static let sharedFd: Int32 = 4
}
