internal import CUV
import Foundation
import UV

/// Makes a CA for `hijackHTTPS`, equivalent to the seed's openssl recipe (RSA 2048, CA:TRUE), plus
/// keyCertSign so that strict verifiers accept the leaves it signs.
public enum CAGenerator {
    public static func generate(commonName: String, days: Int) throws -> (cert: String, key: String) {
        var cert: OpaquePointer?
        var key: OpaquePointer?
        guard cuv_make_ca(commonName, Int32(days), &cert, &key) == 0, let cert, let key else {
            throw TLSError.current(nil, handshake: false)
        }
        defer {
            X509_free(cert)
            EVP_PKEY_free(key)
        }
        return (pem { cuv_pem_write_cert(cert, &$0) }, pem { cuv_pem_write_key(key, &$0) })
    }

    private static func pem(_ write: (inout Int) -> UnsafeMutablePointer<CChar>?) -> String {
        var len = 0
        guard let p = write(&len) else { return "" }
        defer { free(p) }
        return String(cString: p)
    }
}
