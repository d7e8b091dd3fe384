import Foundation
import Yams
import UV
import HTTP

/// Loads a config in three steps: parse (YAML with positions), fill defaults, validate.
public enum ConfigLoader {
    public struct Loaded {
        public var config: DaemonConfig
        public var warnings: [ConfigWarning]
        public var text: String
    }

    public static func load(path: String) throws -> Loaded {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: nil, keyPath: "", message: "cannot read file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, keyPath: "", message: "not UTF-8 text")
        }
        return try load(text: text, file: path)
    }

    public static func load(text: String, file: String) throws -> Loaded {
        let ctx = YAMLContext(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw ConfigError(file: file, line: yamlErrorLine(e), keyPath: "", message: "invalid YAML: \(yamlErrorText(e))")
        }
        var cfg = DaemonConfig()
        if let root {
            let r = try MappingReader(root, path: "", ctx: ctx)
            try readTop(r, &cfg)
        }
        try validate(cfg, ctx)
        addWarnings(cfg, root, ctx)
        return Loaded(config: cfg, warnings: ctx.warnings, text: text)
    }

    // MARK: Parse and fill defaults

    static let ignoredTop: Set<String> = [
        "scheduler", "manager", "objectStorage", "security", "certSpec", "network", "announcer",
        "networkTopology", "console", "verbose", "pprof-port", "pprofPort", "jaeger", "tracing", "pluginDir",
        "metrics", "reload", "concurrent", "schedulerManager", "seedPeer", "logLevel", "logMaxSize",
        "logMaxAge", "logMaxBackups", "stats", "server", "peerExchange",
    ]

    static func readTop(_ r: MappingReader, _ c: inout DaemonConfig) throws {
        c.aliveTime = try r.duration("aliveTime") ?? c.aliveTime
        c.gcInterval = try r.duration("gcInterval") ?? c.gcInterval
        c.workHome = try r.string("workHome") ?? c.workHome
        c.cacheDir = try r.string("cacheDir") ?? c.cacheDir
        c.logDir = try r.string("logDir") ?? c.logDir
        c.dataDir = try r.string("dataDir") ?? c.dataDir
        c.keepStorage = try r.bool("keepStorage") ?? c.keepStorage
        c.workers = try r.int("workers", range: 0...256) ?? c.workers
        c.drainTimeout = try r.duration("drainTimeout") ?? c.drainTimeout
        c.upstreamTimeout = try r.duration("upstreamTimeout") ?? c.upstreamTimeout
        c.headerTimeout = try r.duration("headerTimeout") ?? c.headerTimeout
        c.writeTimeout = try r.duration("writeTimeout") ?? c.writeTimeout
        c.tunnelIdleTimeout = try r.duration("tunnelIdleTimeout") ?? c.tunnelIdleTimeout
        if let s = try r.mapping("storage") {
            c.storage.taskExpireTime = try s.duration("taskExpireTime") ?? c.storage.taskExpireTime
            c.storage.diskGCThreshold = try s.size("diskGCThreshold")
            c.storage.diskGCThresholdPercent = try s.double("diskGCThresholdPercent", range: 0...100) ?? c.storage.diskGCThresholdPercent
            try s.finish(ignored: ["strategy", "multiplex"])
        }
        if let d = try r.mapping("download") {
            c.download.totalRateLimit = try d.size("totalRateLimit") ?? c.download.totalRateLimit
            c.download.perPeerRateLimit = try d.size("perPeerRateLimit") ?? c.download.perPeerRateLimit
            try d.finish(ignored: [
                "peerGRPC", "downloadGRPC", "calculateDigest", "prefetch", "getPiecesMaxRetry", "concurrent",
                "splitRunningTasks", "recursiveConcurrent", "cacheRecursiveMetadata", "syncPieceViaHTTPS",
                "trafficShaperType", "watchdogTimeout", "pieceDownloadTimeout", "transportOption", "resourceClients",
                "firstPieceTimeout", "wait", "parallelCount",
            ])
        }
        if let u = try r.mapping("upload") {
            c.upload.rateLimit = try u.size("rateLimit") ?? c.upload.rateLimit
            c.upload.concurrentLimit = try u.int("concurrentLimit", range: 1...100_000) ?? c.upload.concurrentLimit
            if let l = try u.mapping("tcpListen") { c.upload.tcpListen = try readListen(l, defaultPorts: 65002...65002) }
            try u.finish(ignored: ["security", "certSpec", "listen"])
        }
        if let h = try r.mapping("health") {
            var health = DaemonConfig.Health()
            health.path = try h.string("path") ?? health.path
            guard health.path.hasPrefix("/"), health.path != "/metrics" else {
                throw h.ctx.error(h.value("path"), h.sub("path"), "must start with / and not be /metrics")
            }
            if let l = try h.mapping("tcpListen") { health.tcpListen = try readListen(l, defaultPorts: 40901...40901) }
            try h.finish(ignored: ["security"])
            c.health = health
        }
        if let h = try r.mapping("host") {
            c.advertiseIP = try h.string("advertiseIP")
            if let ip = c.advertiseIP, !SocketAddress.isIPLiteral(ip) {
                throw h.ctx.error(h.value("advertiseIP"), h.sub("advertiseIP"), "\"\(ip)\" is not an IP address")
            }
            try h.finish(ignored: ["idc", "location", "hostname", "netTopology", "securityDomain", "advertisePort", "schedulerCluster"])
        }
        if let p = try r.mapping("peers") {
            var peers = DaemonConfig.Peers()
            let defaultPort = c.upload.tcpListen.ports.lowerBound
            for (i, m) in (try p.strings("members") ?? []).enumerated() {
                guard let hp = MembersFile.member(m, defaultPort: defaultPort) else {
                    throw p.ctx.error(p.value("members"), p.sub("members") + "[\(i)]", "\"\(m)\" is not host[:port] (IPv6: [addr]:port)")
                }
                peers.members.append(hp)
            }
            if let file = try p.string("membersFile") {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw p.ctx.error(p.value("membersFile"), p.sub("membersFile"), "cannot read \(file)")
                }
                peers.membersFile = file
                // Read again by the master whenever it changes; at start a bad line is an error.
                peers.fileMembers = try MembersFile.parse(String(decoding: data, as: UTF8.self), path: file, defaultPort: defaultPort, keyPath: "peers.membersFile")
            }
            peers.dns = try p.string("dns")
            peers.refresh = try p.duration("refresh") ?? peers.refresh
            peers.maxNeighbours = try p.int("maxNeighbours", range: 1...1024) ?? peers.maxNeighbours
            peers.backupSeeds = try p.int("backupSeeds", range: 0...64) ?? peers.backupSeeds
            peers.uploadSlots = try p.int("uploadSlots", range: 1...1024) ?? peers.uploadSlots
            peers.secretFile = try p.string("secretFile")
            if !peers.members.isEmpty || peers.dns != nil || peers.membersFile != nil {
                guard let file = peers.secretFile else {
                    throw p.ctx.error(p.node, p.path, "members need secretFile (a secret shared by all members): without it the peer port would serve anyone")
                }
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw p.ctx.error(p.value("secretFile"), p.sub("secretFile"), "cannot read \(file)")
                }
                let secret = Array(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
                guard secret.count >= 16 else {
                    throw p.ctx.error(p.value("secretFile"), p.sub("secretFile"), "\(file) holds fewer than 16 bytes: not a secret")
                }
                peers.secret = secret
            }
            try p.finish()
            c.peers = peers
        }
        if let p = try r.mapping("proxy") { c.proxy = try readProxy(p) }
        try r.finish(ignored: ignoredTop)
    }

    static func readListen(_ l: MappingReader, defaultPorts: ClosedRange<Int>) throws -> DaemonConfig.Listen {
        var out = DaemonConfig.Listen(ports: defaultPorts)
        out.listen = try l.string("listen") ?? out.listen
        if let pnode = l.value("port") {
            if case .mapping = pnode, let pr = try l.mapping("port") {
                let start = try pr.int("start", range: 1...65535)
                let end = try pr.int("end", range: 1...65535)
                try pr.finish()
                guard let start else { throw l.ctx.error(pnode, l.sub("port.start"), "required") }
                let e = end ?? start
                guard start <= e else { throw l.ctx.error(pnode, l.sub("port"), "start \(start) is after end \(e)") }
                out.ports = start...e
            } else {
                let p = try l.int("port", range: 1...65535)!
                out.ports = p...p
            }
        }
        try l.finish(ignored: ["namespace"])
        if (try? SocketAddress(host: out.listen, port: 0)) == nil {
            throw l.ctx.error(l.keyNode("listen"), l.sub("listen"), "not an IP address: \"\(out.listen)\"")
        }
        return out
    }

    static func readProxy(_ p: MappingReader) throws -> DaemonConfig.Proxy? {
        var x = DaemonConfig.Proxy()
        let listen = try p.mapping("tcpListen")
        if let s = try p.mapping("security") {
            x.security.insecure = try s.bool("insecure") ?? x.security.insecure
            x.security.caCert = try s.string("caCert")
            x.security.cert = try s.string("cert")
            x.security.key = try s.string("key")
            x.security.tlsVerify = try s.bool("tlsVerify") ?? false
            try s.finish(ignored: ["tlsConfig"])
        }
        if let m = try p.mapping("registryMirror") {
            x.registryMirror.url = try m.string("url")
            x.registryMirror.dynamic = try m.bool("dynamic") ?? false
            x.registryMirror.insecure = try m.bool("insecure") ?? false
            x.registryMirror.certs = try m.strings("certs") ?? []
            x.registryMirror.direct = try m.bool("direct") ?? false
            x.registryMirror.useProxies = try m.bool("useProxies") ?? false
            if let u = x.registryMirror.url {
                guard UpstreamURL(u) != nil else {
                    throw m.ctx.error(m.value("url"), m.sub("url"), "not an http:// or https:// URL: \"\(u)\"")
                }
            }
            try m.finish()
        }
        x.proxies = try p.list("proxies") { r in
            guard let regx = try r.string("regx") else { throw r.ctx.error(r.node, r.sub("regx"), "required") }
            var rule = DaemonConfig.Rule(regx: regx, line: r.line("regx") ?? r.node.mark?.line)
            do { _ = try NSRegularExpression(pattern: regx) } catch {
                throw r.ctx.error(r.value("regx"), r.sub("regx"), "invalid regular expression \"\(regx)\"")
            }
            rule.useHTTPS = try r.bool("useHTTPS") ?? false
            rule.direct = try r.bool("direct") ?? false
            rule.redirect = try r.string("redirect")
            return rule
        } ?? []
        if let h = try p.mapping("hijackHTTPS") {
            var hj = DaemonConfig.Hijack()
            hj.cert = try h.string("cert")
            hj.key = try h.string("key")
            hj.hosts = try h.list("hosts") { r in
                guard let regx = try r.string("regx") else { throw r.ctx.error(r.node, r.sub("regx"), "required") }
                do { _ = try NSRegularExpression(pattern: regx) } catch {
                    throw r.ctx.error(r.value("regx"), r.sub("regx"), "invalid regular expression \"\(regx)\"")
                }
                return DaemonConfig.HijackHost(regx: regx, insecure: try r.bool("insecure") ?? false, certs: try r.strings("certs") ?? [])
            } ?? []
            try h.finish(ignored: ["sni"])
            x.hijackHTTPS = hj
        }
        x.whiteList = try p.list("whiteList") { r in
            let host = try r.string("host")
            let regx = try r.string("regx")
            guard host != nil || regx != nil else { throw r.ctx.error(r.node, r.path, "needs host or regx") }
            if let regx {
                do { _ = try NSRegularExpression(pattern: regx) } catch {
                    throw r.ctx.error(r.value("regx"), r.sub("regx"), "invalid regular expression \"\(regx)\"")
                }
            }
            let ports = try r.strings("ports") ?? []
            for port in ports where Int(port).map({ !(1...65535).contains($0) }) ?? true {
                throw r.ctx.error(r.value("ports"), r.sub("ports"), "\"\(port)\" is not a port (1-65535)")
            }
            return DaemonConfig.WhiteListEntry(host: host, regx: regx, ports: ports)
        } ?? []
        if let b = try p.mapping("basicAuth") {
            let u = try b.string("username") ?? ""
            let pw = try b.string("password") ?? ""
            try b.finish()
            if !u.isEmpty { x.basicAuth = (u, pw) }
        }
        x.maxConcurrency = try p.int("maxConcurrency", range: 0...1_000_000) ?? 0
        x.defaultFilter = try p.string("defaultFilter")
        x.defaultTag = try p.string("defaultTag")
        x.confirmAuthorization = try p.bool("confirmAuthorization") ?? true
        if let m = try p.mapping("manifests") {
            x.manifests.enable = try m.bool("enable") ?? true
            x.manifests.revalidateAfter = try m.duration("revalidateAfter") ?? x.manifests.revalidateAfter
            x.manifests.staleIfError = try m.duration("staleIfError") ?? x.manifests.staleIfError
            x.manifests.upstreamTimeout = try m.duration("upstreamTimeout") ?? x.manifests.upstreamTimeout
            x.manifests.failFast = try m.duration("failFast") ?? x.manifests.failFast
            if x.manifests.upstreamTimeout <= 0 {
                throw m.ctx.error(m.value("upstreamTimeout"), m.sub("upstreamTimeout"), "must be more than 0")
            }
            try m.finish()
        }
        try p.finish(ignored: ["dumpHTTPContent", "extraRegistryMirrors", "prefetch"])
        // The proxy is on only when a port is set.
        guard let listen, listen.has("port") else {
            if let listen { try listen.finish(ignored: ["namespace", "listen"]) }
            return nil
        }
        x.tcpListen = try readListen(listen, defaultPorts: 65001...65001)
        return x
    }

    // MARK: Validate

    static func validate(_ c: DaemonConfig, _ ctx: YAMLContext) throws {
        if let h = c.proxy?.hijackHTTPS, h.cert == nil || h.key == nil {
            throw ConfigError(file: ctx.file, line: nil, keyPath: "proxy.hijackHTTPS", message: "needs both cert and key (the CA)")
        }
        if let s = c.proxy?.security, !s.insecure, s.cert == nil || s.key == nil {
            throw ConfigError(file: ctx.file, line: nil, keyPath: "proxy.security",
                              message: "insecure: false (a TLS listener) needs cert and key")
        }
        if let s = c.proxy?.security, !s.insecure, s.tlsVerify, s.caCert == nil {
            throw ConfigError(file: ctx.file, line: nil, keyPath: "proxy.security.tlsVerify",
                              message: "needs caCert (the CA that signs client certificates)")
        }
        // Ranges are tried in order, so only two fixed, equal ports are sure to collide.
        if let p = c.proxy, p.tcpListen.ports.count == 1, c.upload.tcpListen.ports == p.tcpListen.ports,
           c.upload.tcpListen.listen == p.tcpListen.listen {
            throw ConfigError(file: ctx.file, line: nil, keyPath: "upload.tcpListen.port",
                              message: "same port as proxy.tcpListen.port (\(p.tcpListen.ports.lowerBound))")
        }
    }

    /// Settings worth a warning at startup (none is "parsed but not built": every key read is honoured).
    static func addWarnings(_ c: DaemonConfig, _ root: Node?, _ ctx: YAMLContext) {
        guard let root, case .mapping = root else { return }
        func at(_ path: [String]) -> Node? {
            var node: Node? = root
            for k in path {
                guard case .mapping(let m)? = node else { return nil }
                node = m.first { $0.key.string == k }?.key
                if k != path.last { node = m.first { $0.key.string == k }?.value }
            }
            return node
        }
        if let p = c.proxy {
            let listen = p.tcpListen.listen
            let loopback = listen.hasPrefix("127.") || listen == "::1" || listen == "localhost"
            if !loopback && p.whiteList.isEmpty && p.basicAuth == nil {
                ctx.warn(at(["proxy", "tcpListen"]), "proxy.tcpListen",
                         "listening on \(listen) with neither whiteList nor basicAuth: the proxy is open to anyone who can reach it")
            }
            if !p.confirmAuthorization {
                ctx.warn(at(["proxy", "confirmAuthorization"]), "proxy.confirmAuthorization",
                         "cached blobs are served without asking their registry: only for fully trusted setups")
            }
            if p.registryMirror.insecure {
                ctx.warn(at(["proxy", "registryMirror", "insecure"]), "proxy.registryMirror.insecure",
                         "the mirror upstream's TLS certificate is not verified")
            }
            for (i, h) in (p.hijackHTTPS?.hosts ?? []).enumerated() where h.insecure {
                ctx.warn(at(["proxy", "hijackHTTPS"]), "proxy.hijackHTTPS.hosts[\(i)].insecure",
                         "the TLS certificate of hosts matching \(h.regx) is not verified")
            }
        }
    }

    private static func yamlErrorLine(_ e: YamlError) -> Int? {
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    private static func yamlErrorText(_ e: YamlError) -> String {
        switch e {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _): return problem
        default: return "\(e)"
        }
    }
}
