import Yams
import UV

/// Reads one YAML mapping of the config with typed accessors that report errors by file, line and
/// key path. `finish` rejects keys nobody asked for, with a suggestion, and warns about keys of the
/// reference daemon this one does not use.
final class YAMLContext {
    let file: String
    var warnings: [ConfigWarning] = []
    init(file: String) { self.file = file }

    func error(_ node: Node?, _ path: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node?.mark?.line, keyPath: path, message: message)
    }

    func warn(_ node: Node?, _ path: String, _ message: String) {
        warnings.append(ConfigWarning(file: file, line: node?.mark?.line, keyPath: path, message: message))
    }
}

final class MappingReader {
    let ctx: YAMLContext
    let path: String
    let node: Node
    private var entries: [(key: String, keyNode: Node, value: Node)] = []
    private var used: Set<String> = []

    init(_ node: Node, path: String, ctx: YAMLContext) throws {
        self.ctx = ctx
        self.path = path
        self.node = node
        guard case .mapping(let m) = node else {
            throw ctx.error(node, path, "expected a mapping of keys")
        }
        for (k, v) in m {
            guard let ks = k.string else { throw ctx.error(k, path, "keys must be strings") }
            if entries.contains(where: { $0.key == ks }) { throw ctx.error(k, sub(ks), "duplicate key") }
            entries.append((ks, k, v))
        }
    }

    func sub(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value node of `key`, marking it used. A null value counts as absent.
    func value(_ key: String) -> Node? {
        used.insert(key)
        guard let e = entries.first(where: { $0.key == key }) else { return nil }
        if case .scalar(let s) = e.value, s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) { return nil }
        return e.value
    }

    func line(_ key: String) -> Int? { entries.first { $0.key == key }?.keyNode.mark?.line }
    func has(_ key: String) -> Bool { value(key) != nil }
    func keyNode(_ key: String) -> Node? { entries.first { $0.key == key }?.keyNode }

    private func scalar(_ key: String, _ what: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s) = v else { throw ctx.error(v, sub(key), "expected \(what)") }
        return s.string
    }

    func string(_ key: String) throws -> String? { try scalar(key, "a string") }

    func bool(_ key: String) throws -> Bool? {
        guard let s = try scalar(key, "true or false") else { return nil }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ctx.error(value(key), sub(key), "expected true or false, got \"\(s)\"")
        }
    }

    func int(_ key: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let s = try scalar(key, "an integer") else { return nil }
        guard let n = Int(s) else { throw ctx.error(value(key), sub(key), "expected an integer, got \"\(s)\"") }
        if let range, !range.contains(n) {
            throw ctx.error(value(key), sub(key), "\(n) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    func double(_ key: String, range: ClosedRange<Double>) throws -> Double? {
        guard let s = try scalar(key, "a number") else { return nil }
        guard let n = Double(s), range.contains(n) else {
            throw ctx.error(value(key), sub(key), "expected a number in \(range.lowerBound)...\(range.upperBound), got \"\(s)\"")
        }
        return n
    }

    func size(_ key: String) throws -> UInt64? {
        guard let s = try scalar(key, "a size") else { return nil }
        guard let n = Units.parseSize(s) else {
            throw ctx.error(value(key), sub(key), "expected a size like 1024Mi or 20Gi, got \"\(s)\"")
        }
        return n
    }

    func duration(_ key: String) throws -> Double? {
        guard let s = try scalar(key, "a duration") else { return nil }
        guard let n = Units.parseDuration(s) else {
            throw ctx.error(value(key), sub(key), "expected a duration like 6h or 1m30s, got \"\(s)\"")
        }
        return n
    }

    func mapping(_ key: String) throws -> MappingReader? {
        guard let v = value(key) else { return nil }
        return try MappingReader(v, path: sub(key), ctx: ctx)
    }

    func sequence(_ key: String) throws -> [Node]? {
        guard let v = value(key) else { return nil }
        guard case .sequence(let s) = v else { throw ctx.error(v, sub(key), "expected a list") }
        return Array(s)
    }

    func strings(_ key: String) throws -> [String]? {
        guard let items = try sequence(key) else { return nil }
        return try items.enumerated().map { i, n in
            guard case .scalar(let s) = n else { throw ctx.error(n, "\(sub(key))[\(i)]", "expected a string") }
            return s.string
        }
    }

    /// Mappings of a list, each read by `body`.
    func list<T>(_ key: String, _ body: (MappingReader) throws -> T) throws -> [T]? {
        guard let items = try sequence(key) else { return nil }
        return try items.enumerated().map { i, n in
            let r = try MappingReader(n, path: "\(sub(key))[\(i)]", ctx: ctx)
            let v = try body(r)
            try r.finish()
            return v
        }
    }

    /// Keys not read: a warning for the reference daemon's keys this one ignores, an error otherwise.
    func finish(ignored: Set<String> = []) throws {
        for e in entries where !used.contains(e.key) {
            if ignored.contains(e.key) {
                ctx.warn(e.keyNode, sub(e.key), "not used by this daemon (ignored)")
                continue
            }
            var msg = "unknown key"
            if let guess = MappingReader.closest(e.key, in: used.union(ignored)) {
                msg += " (did you mean \(sub(guess))?)"
            }
            throw ctx.error(e.keyNode, sub(e.key), msg)
        }
    }

    static func closest(_ key: String, in candidates: Set<String>) -> String? {
        let k = key.lowercased()
        let scored = candidates.map { ($0, editDistance(k, $0.lowercased())) }.filter { $0.1 <= max(2, k.count / 4) }
        return scored.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var prev = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var cur = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return a.isEmpty ? b.count : prev[b.count]
    }
}
