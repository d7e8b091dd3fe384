internal import CUV
import Foundation
import UV

/// The one PEM loader: a certificate or key given as a file path or as inline PEM (dfget.yaml
/// allows both), into OpenSSL objects, and back to PEM text.
public enum PEM {
    public static func isInline(_ s: String) -> Bool { s.contains("-----BEGIN ") }

    /// How a value is named in messages: its path, or "inline PEM".
    static func describe(_ source: String) -> String { isInline(source) ? "inline PEM" : source }

    /// The PEM text, read from the file when it is a path.
    public static func text(_ source: String) throws -> String {
        if isInline(source) { return source }
        guard let data = FileManager.default.contents(atPath: source), let t = String(data: data, encoding: .utf8) else {
            throw TLSError.config("cannot read \(source)")
        }
        return t
    }

    /// Every certificate in the PEM (the caller frees each with `X509_free`).
    static func certificates(_ source: String) throws -> [OpaquePointer] {
        try withBIO(text(source)) { b in
            var out: [OpaquePointer] = []
            while let x = PEM_read_bio_X509(b, nil, nil, nil) { out.append(x) }
            ERR_clear_error()
            return out
        }
    }

    /// The first certificate; `field` names the config key in the error.
    static func certificate(_ source: String, field: String) throws -> OpaquePointer {
        let all = try certificates(source)
        guard let x = all.first else { throw TLSError.config("\(field): no PEM certificate in \(describe(source))") }
        all.dropFirst().forEach { X509_free($0) }
        return x
    }

    /// The private key (the caller frees it with `EVP_PKEY_free`).
    static func privateKey(_ source: String, field: String) throws -> OpaquePointer {
        guard let k = try withBIO(text(source), { PEM_read_bio_PrivateKey($0, nil, nil, nil) }) else {
            ERR_clear_error()
            throw TLSError.config("\(field): no PEM private key in \(describe(source))")
        }
        return k
    }

    static func encode(certificate x: OpaquePointer) -> String {
        toText { PEM_write_bio_X509($0, x) }
    }

    static func encode(privateKey k: OpaquePointer) -> String {
        toText { PEM_write_bio_PrivateKey($0, k, nil, nil, 0, nil, nil) }
    }

    private static func withBIO<T>(_ text: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw in
            guard let b = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { throw TLSError.current(nil, handshake: false) }
            defer { BIO_free(b) }
            return try body(b)
        }
    }

    private static func toText(_ write: (OpaquePointer) -> Int32) -> String {
        guard let b = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(b) }
        guard write(b) == 1 else { return "" }
        var data: UnsafeMutablePointer<CChar>?
        let n = cuv_bio_get_mem_data(b, &data)
        guard let data, n > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
    }
}
