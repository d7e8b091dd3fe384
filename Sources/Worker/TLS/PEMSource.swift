import Foundation
import UV

/// A certificate or key given as a file path or as inline PEM, as dfget.yaml allows.
public enum PEMSource {
    public static func isInline(_ s: String) -> Bool { s.contains("-----BEGIN ") }

    /// The PEM text, read from the file when it is a path.
    public static func text(_ s: String) throws -> String {
        if isInline(s) { return s }
        guard let data = FileManager.default.contents(atPath: s), let t = String(data: data, encoding: .utf8) else {
            throw TLSError.config("cannot read \(s)")
        }
        return t
    }
}
