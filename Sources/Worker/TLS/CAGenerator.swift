internal import CUV
import UV

/// Makes a CA for `hijackHTTPS` (`dfget gen-ca`): the profile is `Certificates.authority`.
public enum CAGenerator {
    public static func generate(commonName: String, days: Int) throws -> (cert: String, key: String) {
        let (cert, key) = try Certificates.make(Certificates.authority(days: days), commonName: commonName, san: nil, issuer: nil)
        defer {
            X509_free(cert)
            EVP_PKEY_free(key)
        }
        return (PEM.encode(certificate: cert), PEM.encode(privateKey: key))
    }
}
