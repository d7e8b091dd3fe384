import UV
import HTTP

/// A client's `Range` header, as the cache answers it.
public enum ByteRange: Equatable {
    /// No usable range: the whole content (200).
    case whole
    /// `bytes=a-b`, `bytes=a-` or `bytes=-n` (206, resolved against the length).
    case single(first: Int64?, last: Int64?)
    /// Several ranges: not served (416).
    case multiple

    public static func parse(_ header: String?) -> ByteRange {
        guard let h = header?.trimmingSpaces(), h.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = h.dropFirst(6)
        if spec.contains(",") { return .multiple }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingSpaces() }
        guard parts.count == 2 else { return .whole }
        let a = parts[0].isEmpty ? nil : ByteRange.position(parts[0])
        let b = parts[1].isEmpty ? nil : ByteRange.position(parts[1])
        if (!parts[0].isEmpty && a == nil) || (!parts[1].isEmpty && b == nil) || (a == nil && b == nil) { return .whole }
        if let a, let b, b < a { return .whole }
        return .single(first: a, last: b)
    }

    /// A byte position: digits only (no sign, no spaces inside); one too large for Int64 is not a position.
    static func position(_ s: String) -> Int64? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(s)
    }

    /// The bytes `[start, end)` to send for content of `length`, or nil when unsatisfiable (416).
    public func resolve(length: Int64) -> Range<Int64>? {
        switch self {
        case .whole: return 0..<length
        case .multiple: return nil
        case .single(let a?, let b):
            guard a < length else { return nil }
            // `last` may be anything up to Int64.max: clamp before adding one.
            return a..<(min(b ?? length - 1, length - 1) + 1)
        case .single(nil, let n?):
            guard n > 0, length > 0 else { return nil }
            return max(0, length - n)..<length
        case .single(nil, nil): return 0..<length
        }
    }
}
