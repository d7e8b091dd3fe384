// Module Config: dfget.yaml in three steps (parse, fill defaults, validate), errors with file:line: key.
// May import: UV, HTTP (URL syntax), Yams.

import UV

/// The daemon's configuration, as `/etc/dragonfly/dfget.yaml` gives it, with the reference daemon's defaults.
public struct DaemonConfig {
    public var aliveTime: Double = 0
    public var gcInterval: Double = 60
    public var workHome = "/usr/local/dragonfly"
    public var cacheDir = "/var/cache/dragonfly"
    public var logDir = "/var/log/dragonfly"
    public var dataDir = "/var/lib/dragonfly"
    public var keepStorage = false
    public var storage = Storage()
    public var download = Download()
    public var upload = Upload()
    /// The health and metrics listener; nil when the file has no `health` section.
    public var health: Health?
    public var peers: Peers?
    /// `host.advertiseIP`: this host's address as the members know it (default: matched against
    /// the local interfaces).
    public var advertiseIP: String?
    /// Nil when the file has no `proxy` section or no port: the proxy is off.
    public var proxy: Proxy?
    /// Worker processes; 0 = one per core. (This daemon's own key.)
    public var workers = 0
    /// Longest wait for in-flight requests on SIGTERM. (This daemon's own key.)
    public var drainTimeout: Double = 30
    /// Longest silence of an origin while a response is due. (This daemon's own key.)
    public var upstreamTimeout: Double = 60
    /// A request head must be complete this long after its first byte (slowloris bound).
    public var headerTimeout: Double = 30
    /// A client that takes none of the bytes queued for it for this long is cut.
    public var writeTimeout: Double = 60
    /// A CONNECT tunnel with no byte either way for this long is closed.
    public var tunnelIdleTimeout: Double = 300

    public init() {}

    public struct Storage {
        public var taskExpireTime: Double = 6 * 3600
        public var diskGCThreshold: UInt64?
        public var diskGCThresholdPercent: Double = 95
    }

    public struct Download {
        public var totalRateLimit: UInt64 = 1024 << 20
        public var perPeerRateLimit: UInt64 = 512 << 20
    }

    public struct Listen {
        public var listen = "0.0.0.0"
        public var ports: ClosedRange<Int>
        /// Where a client on this host reaches it (the loopback for a wildcard address).
        public var localAddress: String { ["0.0.0.0", "::", ""].contains(listen) ? "127.0.0.1" : listen }
    }

    public struct Upload {
        public var rateLimit: UInt64 = 1024 << 20
        /// Piece uploads at once per worker (waiting for `rateLimit` included); past it, 503.
        public var concurrentLimit = 32
        public var tcpListen = Listen(ports: 65002...65002)
    }

    /// Hosts that share pieces over the peer port. Nil: this daemon works alone.
    public struct Peers {
        /// `host[:port]` of each member (the port defaults to `upload.tcpListen.port`).
        public var members: [(host: String, port: Int)] = []
        /// A file of members, one per line, that the master reads again whenever it changes.
        public var membersFile: String?
        /// What `membersFile` held when the config was loaded.
        public var fileMembers: [(host: String, port: Int)] = []
        /// A name whose every A/AAAA record is a member (a Kubernetes headless service).
        public var dns: String?
        /// How often `dns` is resolved again.
        public var refresh: Double = 30
        /// Members one host follows per task besides its owner (their piece news, their pieces),
        /// chosen by hashing: the control traffic per host does not grow with the cluster.
        public var maxNeighbours = 8
        /// Members after the owner, in the task's rendezvous order, that go to the origin when the
        /// peers stall; the others wait for them (`backupSeeds` copies at most, not one per host).
        public var backupSeeds = 2
        /// Piece uploads at once per host (split among its workers); past them a member is told to
        /// ask another source in 100 ms. Few uploads at full speed make sources sooner than many
        /// that share the uplink and all end late.
        public var uploadSlots = 4
        public var secretFile: String?
        /// The shared secret read from `secretFile`: every peer request carries a token made with it.
        public var secret: [UInt8] = []
    }

    public struct Health {
        public var path = "/server/ping"
        public var tcpListen = Listen(ports: 40901...40901)
    }

    public struct Security {
        public var insecure = true
        public var caCert: String?
        public var cert: String?
        public var key: String?
        public var tlsVerify = false
    }

    public struct RegistryMirror {
        public var url: String?
        public var dynamic = false
        public var insecure = false
        public var certs: [String] = []
        public var direct = false
        public var useProxies = false
    }

    public struct Rule {
        public var regx: String
        public var useHTTPS = false
        public var direct = false
        public var redirect: String?
        public var line: Int?
    }

    public struct HijackHost {
        public var regx: String
        public var insecure = false
        public var certs: [String] = []
    }

    public struct Hijack {
        public var cert: String?
        public var key: String?
        public var hosts: [HijackHost] = []
    }

    public struct WhiteListEntry {
        public var host: String?
        public var regx: String?
        public var ports: [String] = []
    }

    public struct Proxy {
        public var security = Security()
        public var tcpListen = Listen(ports: 65001...65001)
        public var registryMirror = RegistryMirror()
        public var proxies: [Rule] = []
        public var hijackHTTPS: Hijack?
        public var whiteList: [WhiteListEntry] = []
        public var basicAuth: (username: String, password: String)?
        public var maxConcurrency = 0
        public var defaultFilter: String?
        public var defaultTag: String?
        /// Before a cached blob goes to a client, ask its registry (HEAD with the client's
        /// credentials) whether it would. (This daemon's key; off only for fully trusted setups.)
        public var confirmAuthorization = true
        public var manifests = Manifests()
    }

    /// `proxy.manifests` (this daemon's keys): tags and manifests kept so pulls go on when the
    /// registry is down or rate-limiting.
    public struct Manifests {
        /// False: tags and manifests pass straight through, as before.
        public var enable = true
        /// A tag validated this recently is answered from the cache; an older one is asked again with a HEAD.
        public var revalidateAfter: Double = 60
        /// When the registry fails, a tag validated this recently (and blobs, and the last grant
        /// of a credential) still serve, marked stale.
        public var staleIfError: Double = 24 * 3600
        /// How long a revalidation or an authorization check waits for the registry before the
        /// cache answers (the registry counts as down from then).
        public var upstreamTimeout: Double = 3
        /// After a failure, the registry is not asked again for this long (doubling while it stays
        /// down, to 8x); then one request probes it.
        public var failFast: Double = 5
    }
}
