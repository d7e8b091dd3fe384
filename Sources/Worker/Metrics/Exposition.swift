import Foundation

/// The Prometheus text format (0.0.4) of the daemon's numbers, made by the master from every slab.
///
/// Not swift-prometheus: its metrics are in-process atomics that only `increment`/`record` move, its
/// collector protocol is internal, and a histogram's bucket counts cannot be set; here each scrape
/// publishes totals that many processes counted in shared memory. The format for this fixed set of
/// series is a few lines; the e2e tests parse it with prometheus_client's parser.
public struct Exposition {
    public var totals: [UInt64]
    public var workerRestarts: UInt64
    public var cacheBytes: UInt64
    public var version: String
    /// With peers: the members the master knows of, and its failed reads of the members file and
    /// lookups of `peers.dns`.
    public var members: (count: Int, errors: UInt64)?

    public init(region: SharedRegion, cacheBytes: UInt64, version: String) {
        totals = region.totals()
        workerRestarts = region.loadGlobal(.workerRestarts)
        self.cacheBytes = cacheBytes
        self.version = version
    }

    public init(totals: [UInt64], workerRestarts: UInt64, cacheBytes: UInt64, version: String) {
        self.totals = totals
        self.workerRestarts = workerRestarts
        self.cacheBytes = cacheBytes
        self.version = version
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public func render() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ value: String) { sample(name, [], value) }
        func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
            let l = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Exposition.escape($0.1))\"" }.joined(separator: ",") + "}"
            out += "\(name)\(l) \(value)\n"
        }
        func counter(_ k: Int) -> String { String(totals[k]) }
        func gauge(_ s: Scalar) -> String { String(max(0, Int64(bitPattern: totals[s.rawValue]))) }

        family("dfget_requests_total", "counter", "Requests answered, by how they came in and their status code.")
        for mode in RequestMode.allCases {
            for i in 0..<Slot.perMode {
                let k = Slot.requestsBase + mode.rawValue * Slot.perMode + i
                if totals[k] > 0 { sample("dfget_requests_total", [("mode", mode.name), ("code", Slot.codeLabel(i))], counter(k)) }
            }
        }
        family("dfget_request_duration_seconds", "histogram", "Time from a request's head to the end of its response.")
        for mode in RequestMode.allCases {
            for (i, le) in Slot.buckets.enumerated() {
                sample("dfget_request_duration_seconds_bucket", [("mode", mode.name), ("le", Exposition.number(le))], counter(Slot.bucket(mode, i)))
            }
            sample("dfget_request_duration_seconds_bucket", [("mode", mode.name), ("le", "+Inf")], counter(Slot.count(mode)))
            sample("dfget_request_duration_seconds_sum", [("mode", mode.name)], Exposition.number(Double(totals[Slot.sumMicros(mode)]) / 1e6))
            sample("dfget_request_duration_seconds_count", [("mode", mode.name)], counter(Slot.count(mode)))
        }
        family("dfget_response_bytes_total", "counter", "Response body bytes sent to clients, by where they came from.")
        for s in ByteSource.allCases { sample("dfget_response_bytes_total", [("source", s.name)], counter(Slot.bytes(s))) }
        family("dfget_origin_bytes_total", "counter", "Bytes fetched from origins (registries and other upstreams).")
        sample("dfget_origin_bytes_total", counter(Scalar.originBytes.rawValue))
        family("dfget_cache_hits_total", "counter", "Cacheable requests served from a complete cached blob.")
        sample("dfget_cache_hits_total", counter(Scalar.cacheHits.rawValue))
        family("dfget_cache_misses_total", "counter", "Cacheable requests whose blob was not (yet) complete in the cache.")
        sample("dfget_cache_misses_total", counter(Scalar.cacheMisses.rawValue))
        family("dfget_cache_disk_read_bytes_total", "counter", "Cached bytes read from the disk (not in the page cache) on the thread pool before they went out.")
        sample("dfget_cache_disk_read_bytes_total", counter(Scalar.cacheDiskReadBytes.rawValue))
        family("dfget_cache_bytes", "gauge", "Bytes of blob data in the piece cache.")
        sample("dfget_cache_bytes", String(cacheBytes))
        family("dfget_tasks_active", "gauge", "Blobs being downloaded into the cache now.")
        sample("dfget_tasks_active", gauge(.tasksActive))
        family("dfget_peer_bytes_total", "counter", "Piece bytes exchanged with peers.")
        sample("dfget_peer_bytes_total", [("direction", "in")], counter(Scalar.peerBytesIn.rawValue))
        sample("dfget_peer_bytes_total", [("direction", "out")], counter(Scalar.peerBytesOut.rawValue))
        family("dfget_peer_bad_pieces_total", "counter", "Pieces from peers that did not match the seed's digest (the peer is dropped for the task).")
        sample("dfget_peer_bad_pieces_total", counter(Scalar.peerBadPieces.rawValue))
        family("dfget_peer_uploads_refused_total", "counter", "Piece requests refused with 503 over the peer port's upload bound.")
        sample("dfget_peer_uploads_refused_total", counter(Scalar.peerUploadsRefused.rawValue))
        family("dfget_peer_fallbacks_total", "counter", "Fills the peers could not finish: the missing pieces from the origin by range, or (restart) the whole blob again.")
        sample("dfget_peer_fallbacks_total", [("kind", "range")], counter(Scalar.peerRangeFallbacks.rawValue))
        sample("dfget_peer_fallbacks_total", [("kind", "restart")], counter(Scalar.peerRestarts.rawValue))
        family("dfget_peer_cut_through_total", "counter", "Piece uploads that began while the piece was still arriving from the origin (streamed as it landed).")
        sample("dfget_peer_cut_through_total", counter(Scalar.peerCutThrough.rawValue))
        family("dfget_tag_requests_total", "counter", "Tag requests answered from the cache (hit), after a HEAD upstream kept the digest (revalidated), or with a new GET (fetched).")
        sample("dfget_tag_requests_total", [("result", "hit")], counter(Scalar.manifestHits.rawValue))
        sample("dfget_tag_requests_total", [("result", "revalidated")], counter(Scalar.manifestRevalidated.rawValue))
        sample("dfget_tag_requests_total", [("result", "fetched")], counter(Scalar.manifestFetched.rawValue))
        family("dfget_stale_served_total", "counter", "Answers from the cache while the registry failed (stale-if-error): tags, and blobs whose authorization fell back to an earlier grant.")
        sample("dfget_stale_served_total", [("kind", "tag")], counter(Scalar.staleTags.rawValue))
        sample("dfget_stale_served_total", [("kind", "blob")], counter(Scalar.staleBlobs.rawValue))
        family("dfget_registry_failures_total", "counter", "Registry failures (refused, no answer in time, 5xx, 429) that marked it down: the next requests go to the cache at once.")
        sample("dfget_registry_failures_total", counter(Scalar.registryDown.rawValue))
        family("dfget_origin_resumes_total", "counter", "Blob downloads cut by the origin that went on with a Range request from the last whole piece.")
        sample("dfget_origin_resumes_total", counter(Scalar.originResumes.rawValue))
        family("dfget_connections", "gauge", "Client connections: with a request in progress, or idle.")
        sample("dfget_connections", [("state", "active")], gauge(.connectionsActive))
        sample("dfget_connections", [("state", "idle")], gauge(.connectionsIdle))
        family("dfget_concurrency_refused_total", "counter", "Requests refused with 503 over proxy.maxConcurrency.")
        sample("dfget_concurrency_refused_total", counter(Scalar.concurrencyRefused.rawValue))
        family("dfget_worker_restarts_total", "counter", "Workers that died and were started again.")
        sample("dfget_worker_restarts_total", String(workerRestarts))
        if let members {
            family("dfget_peer_members", "gauge", "Members of the peer exchange this host knows of (peers.members, peers.membersFile, peers.dns).")
            sample("dfget_peer_members", String(members.count))
            family("dfget_peer_membership_errors_total", "counter", "Members file reads refused and peers.dns lookups failed (the members known before were kept).")
            sample("dfget_peer_membership_errors_total", String(members.errors))
        }
        family("dfget_build_info", "gauge", "Always 1; the version is in the label.")
        sample("dfget_build_info", [("version", version)], "1")
        return out
    }

    /// A label value with `\`, `"` and newlines escaped.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Go's shortest form, as Prometheus writes numbers: `0.005`, `1`, `300`.
    static func number(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    }
}
