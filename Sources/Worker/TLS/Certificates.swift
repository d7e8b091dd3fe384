internal import CUV
import Foundation
import UV

/// The certificates the daemon makes, as profiles, and the one builder that signs them. Every field
/// is set through OpenSSL's API: a host name from the network (SNI) never passes through an X509v3
/// config string, so `a.example,DNS:*.bank.com` stays one literal DNS name.
enum Certificates {
    struct Profile {
        enum Key { case ecP256, rsa2048 }
        var key: Key
        var isCA: Bool
        var keyUsage: String
        var extendedKeyUsage: String?
        var notBeforeOffset: Int
        var validitySeconds: Int
        var authorityKeyID: Bool
    }

    /// A hijack leaf: a fresh P-256 key per host (never the CA's), server auth only, valid from an
    /// hour ago (clock skew) for `validitySeconds`.
    static func leaf(validitySeconds: Int) -> Profile {
        Profile(key: .ecP256, isCA: false, keyUsage: "critical,digitalSignature", extendedKeyUsage: "serverAuth",
                notBeforeOffset: -3600, validitySeconds: validitySeconds, authorityKeyID: true)
    }

    /// The seed's openssl recipe for a hijack CA (RSA 2048, CA:TRUE) plus keyCertSign and cRLSign, so
    /// that strict verifiers accept the leaves it signs.
    static func authority(days: Int) -> Profile {
        Profile(key: .rsa2048, isCA: true, keyUsage: "critical,keyCertSign,cRLSign", extendedKeyUsage: nil,
                notBeforeOffset: 0, validitySeconds: days * 86400, authorityKeyID: false)
    }

    enum SubjectAltName: Equatable {
        case dns(String)
        case ip(String)

        /// An IP literal is an IP SAN, anything else one DNS name.
        init(host: String) { self = SocketAddress.isIPLiteral(host) ? .ip(host) : .dns(host) }
    }

    /// A certificate for `commonName` (and `san`) with a new key, signed by `issuer` or by itself.
    /// Returns the certificate and its key; the caller frees both.
    static func make(_ profile: Profile, commonName: String, san: SubjectAltName?,
                     issuer: (cert: OpaquePointer, key: OpaquePointer)?) throws -> (cert: OpaquePointer, key: OpaquePointer) {
        let newKey: OpaquePointer? = switch profile.key {
        case .ecP256: cuv_evp_ec_gen("P-256")
        case .rsa2048: cuv_evp_rsa_gen(2048)
        }
        guard let key = newKey else { throw TLSError.current(nil, handshake: false) }
        guard let cert = X509_new() else {
            EVP_PKEY_free(key)
            throw TLSError.current(nil, handshake: false)
        }
        let signerCert = issuer?.cert ?? cert
        let signerKey = issuer?.key ?? key
        let cn = Array(commonName.utf8.prefix(64))
        var ok = X509_set_version(cert, 2) == 1 && setRandomSerial(cert)
            && X509_gmtime_adj(X509_getm_notBefore(cert), profile.notBeforeOffset) != nil
            && X509_gmtime_adj(X509_getm_notAfter(cert), profile.validitySeconds) != nil
            && X509_set_pubkey(cert, key) == 1
            && X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8, cn, Int32(cn.count), -1, 0) == 1
            && X509_set_issuer_name(cert, X509_get_subject_name(signerCert)) == 1
        ok = ok && addExtension(cert, signerCert, NID_basic_constraints, profile.isCA ? "critical,CA:TRUE" : "critical,CA:FALSE")
            && addExtension(cert, signerCert, NID_key_usage, profile.keyUsage)
            && (profile.extendedKeyUsage.map { addExtension(cert, signerCert, NID_ext_key_usage, $0) } ?? true)
            && (san.map { addSubjectAltName(cert, $0) } ?? true)
            && addExtension(cert, signerCert, NID_subject_key_identifier, "hash")
            && (!profile.authorityKeyID || addExtension(cert, signerCert, NID_authority_key_identifier, "keyid:always"))
            && X509_sign(cert, signerKey, EVP_sha256()) > 0
        guard ok else {
            let e = TLSError.current(nil, handshake: false)
            X509_free(cert)
            EVP_PKEY_free(key)
            throw e
        }
        return (cert, key)
    }

    /// A fixed extension of the profile (never text from the network).
    private static func addExtension(_ cert: OpaquePointer, _ issuer: OpaquePointer, _ nid: Int32, _ value: String) -> Bool {
        var ctx = X509V3_CTX()
        cuv_x509v3_set_ctx_nodb(&ctx)
        X509V3_set_ctx(&ctx, issuer, cert, nil, nil, 0)
        guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else { return false }
        defer { X509_EXTENSION_free(ext) }
        return X509_add_ext(cert, ext, -1) == 1
    }

    /// One SAN entry, built as a GENERAL_NAME: the host is data, not syntax.
    private static func addSubjectAltName(_ cert: OpaquePointer, _ san: SubjectAltName) -> Bool {
        guard let names = GENERAL_NAMES_new() else { return false }
        defer { GENERAL_NAMES_free(names) }
        guard let name = GENERAL_NAME_new() else { return false }
        switch san {
        case .dns(let host):
            guard let s = ASN1_IA5STRING_new() else {
                GENERAL_NAME_free(name)
                return false
            }
            let bytes = Array(host.utf8)
            guard ASN1_STRING_set(s, bytes, Int32(bytes.count)) == 1 else {
                ASN1_IA5STRING_free(s)
                GENERAL_NAME_free(name)
                return false
            }
            GENERAL_NAME_set0_value(name, GEN_DNS, UnsafeMutableRawPointer(s))
        case .ip(let host):
            guard let octets = a2i_IPADDRESS(host) else {
                GENERAL_NAME_free(name)
                return false
            }
            GENERAL_NAME_set0_value(name, GEN_IPADD, UnsafeMutableRawPointer(octets))
        }
        guard cuv_general_names_push(names, name) > 0 else {
            GENERAL_NAME_free(name)
            return false
        }
        return X509_add1_ext_i2d(cert, NID_subject_alt_name, UnsafeMutableRawPointer(names), 0, UInt(X509V3_ADD_DEFAULT)) == 1
    }

    private static func setRandomSerial(_ cert: OpaquePointer) -> Bool {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else { return false }
        bytes[0] &= 0x7f
        guard let bn = BN_bin2bn(bytes, Int32(bytes.count), nil) else { return false }
        defer { BN_free(bn) }
        guard let serial = BN_to_ASN1_INTEGER(bn, nil) else { return false }
        defer { ASN1_INTEGER_free(serial) }
        return X509_set_serialNumber(cert, serial) == 1
    }

    static func isCA(_ cert: OpaquePointer) -> Bool { X509_check_ca(cert) >= 1 }

    /// Seconds from now until the certificate's notAfter (negative when expired).
    static func secondsLeft(_ cert: OpaquePointer) -> Int {
        var days: Int32 = 0
        var secs: Int32 = 0
        guard ASN1_TIME_diff(&days, &secs, nil, X509_get0_notAfter(cert)) == 1 else { return -1 }
        return Int(days) * 86400 + Int(secs)
    }
}

extension Certificates {
    /// The subject alternative names of a certificate, as they are encoded (diagnostics and tests).
    static func subjectAltNames(_ cert: OpaquePointer) -> [SubjectAltName] {
        guard let raw = X509_get_ext_d2i(cert, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        var out: [SubjectAltName] = []
        for i in 0..<OPENSSL_sk_num(names) {
            guard let name = OPENSSL_sk_value(names, i) else { continue }
            var type: Int32 = 0
            guard let value = GENERAL_NAME_get0_value(name.assumingMemoryBound(to: GENERAL_NAME.self), &type) else { continue }
            let s = value.assumingMemoryBound(to: ASN1_STRING.self)
            let bytes = UnsafeRawBufferPointer(start: ASN1_STRING_get0_data(s), count: Int(ASN1_STRING_length(s)))
            switch type {
            case GEN_DNS: out.append(.dns(String(decoding: bytes, as: UTF8.self)))
            case GEN_IPADD where bytes.count == 4: out.append(.ip(bytes.map(String.init).joined(separator: ".")))
            case GEN_IPADD: out.append(.ip(bytes.map { String($0, radix: 16) }.joined(separator: ":")))
            default: break
            }
        }
        return out
    }
}
