import UV
import HTTP

/// Sizes (`1024Mi`, `20Gi`, `100M`, `4096`) and Go-style durations (`6h`, `1m30s`, `500ms`).
public enum Units {
    public static func parseSize(_ s: String) -> UInt64? {
        let t = s.trimmingSpaces()
        guard let split = t.firstIndex(where: { !($0.isNumber || $0 == ".") }) else {
            return UInt64(t)
        }
        guard let value = Double(t[..<split]), value >= 0 else { return nil }
        var unit = String(t[split...]).trimmingSpaces().lowercased()
        if unit.hasSuffix("b") { unit.removeLast() }
        let mult: Double
        switch unit {
        case "": mult = 1
        case "k": mult = 1e3
        case "ki": mult = 1024
        case "m": mult = 1e6
        case "mi": mult = 1024 * 1024
        case "g": mult = 1e9
        case "gi": mult = 1024 * 1024 * 1024
        case "t": mult = 1e12
        case "ti": mult = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let bytes = value * mult
        guard bytes < 1.8e19 else { return nil }
        return UInt64(bytes)
    }

    /// Seconds. A bare number is seconds.
    public static func parseDuration(_ s: String) -> Double? {
        let t = s.trimmingSpaces()
        if let n = Double(t) { return n >= 0 ? n : nil }
        var total = 0.0
        var rest = Substring(t)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            guard let numEnd = rest.firstIndex(where: { !($0.isNumber || $0 == ".") }), numEnd != rest.startIndex,
                  let value = Double(rest[..<numEnd]) else { return nil }
            rest = rest[numEnd...]
            let unitEnd = rest.firstIndex(where: { $0.isNumber || $0 == "." }) ?? rest.endIndex
            let unit = rest[..<unitEnd]
            rest = rest[unitEnd...]
            switch unit {
            case "ns": total += value / 1e9
            case "us", "µs": total += value / 1e6
            case "ms": total += value / 1e3
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            case "d": total += value * 86400
            default: return nil
            }
        }
        return total
    }
}
