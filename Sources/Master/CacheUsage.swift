import Foundation

/// `dfget_cache_bytes`: the size of the blob data files under `<dataDir>/cache`, read at each scrape
/// (a directory listing and a stat per task; a scrape comes every few seconds at most).
enum CacheUsage {
    static func bytes(dataDir: String) -> UInt64 {
        let dir = (dataDir as NSString).appendingPathComponent("cache")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var total: UInt64 = 0
        for n in names where n.hasSuffix(".data") {
            var st = stat()
            if stat((dir as NSString).appendingPathComponent(n), &st) == 0 { total += UInt64(max(0, st.st_size)) }
        }
        return total
    }
}
