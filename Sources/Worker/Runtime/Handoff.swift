import Config

/// What the master says about each socket it hands to a worker: the one byte sent along with it.
public enum Handoff: UInt8 {
    /// A client of the proxy port.
    case proxy = 0x50
    /// A peer of the upload (peer-exchange) port.
    case peer = 0x55
}

/// What the master tells a worker on the same channel, a byte with no socket (nginx's channel
/// commands): it waits in the pipe until the worker reads it, so a worker that has just started
/// misses nothing, and no signal handler has to be in place first.
public enum WorkerCommand: UInt8, CaseIterable {
    /// Stop accepting, finish in-flight requests, exit (drain; a reload retires old workers so).
    case stop = 0x51
    /// logrotate moved the log away: open it again.
    case reopenLogs = 0x52
    /// The members changed: read the master's view again (`MemberView`).
    case members = 0x53

    /// What a byte on the channel is: a socket's kind (one pending handle), or a command.
    public enum Message: Equatable {
        case socket(Handoff)
        case command(WorkerCommand)
        case unknown(UInt8)
    }

    public static func decode(_ byte: UInt8) -> Message {
        if let h = Handoff(rawValue: byte) { return .socket(h) }
        if let c = WorkerCommand(rawValue: byte) { return .command(c) }
        return .unknown(byte)
    }
}

/// Environment through which the master gives its workers the config it validated, so that a worker
/// restarted later runs with the same config even if the file changed meanwhile.
public enum WorkerEnvironment {
    public static let configText = "DFGET_CONFIG_YAML"
    public static let configFile = "DFGET_CONFIG_FILE"
    /// The TLS session ticket keys all workers share (hex; see `SessionTickets`).
    public static let ticketKeys = "DFGET_TLS_TICKET_KEYS"
    /// How many workers the daemon runs (what a worker divides daemon-wide bounds by).
    public static let workerCount = "DFGET_WORKERS"
    /// The descriptor at which a worker finds the master's shared region (see `SharedRegion`).
    public static let sharedFd: Int32 = 4
}
