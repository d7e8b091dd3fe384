#include "CUV.h"
#include <string.h>
#include <stdlib.h>
#include <time.h>

static const unsigned char alpn_http11[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };

SSL_CTX *cuv_tls_client_ctx(int insecure) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_default_verify_paths(ctx);
        X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    }
    return ctx;
}

static int select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof alpn_http11, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *cuv_tls_server_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_select_cb(ctx, select_http11, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

static BIO *pem_bio(const char *path_or_pem, int is_text) {
    return is_text ? BIO_new_mem_buf(path_or_pem, -1) : BIO_new_file(path_or_pem, "r");
}

int cuv_tls_ctx_trust_pem(SSL_CTX *ctx, const char *path_or_pem, int is_text) {
    BIO *b = pem_bio(path_or_pem, is_text);
    if (!b) return -1;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1) n++;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(b);
    return n > 0 ? n : -1;
}

int cuv_tls_ctx_require_client_certs(SSL_CTX *ctx, const char *path_or_pem, int is_text) {
    if (cuv_tls_ctx_trust_pem(ctx, path_or_pem, is_text) < 0) return -1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

int cuv_ssl_set_peer_host(SSL *ssl, const char *host) {
    unsigned char buf[16];
    int is_ip = inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
    if (is_ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, host) != 1) return -1;
    return SSL_set1_host(ssl, host) == 1 ? 0 : -1;
}

void cuv_ssl_use_memory_bios(SSL *ssl, BIO **rbio, BIO **wbio) {
    *rbio = BIO_new(BIO_s_mem());
    *wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(*rbio, -1);
    SSL_set_bio(ssl, *rbio, *wbio);
}

long cuv_bio_pending(BIO *b) { return (long)BIO_pending(b); }

struct servername_thunk { int (*cb)(SSL *, void *); void *arg; };

static int servername_cb(SSL *ssl, int *al, void *arg) {
    (void)al;
    struct servername_thunk *t = arg;
    return t->cb(ssl, t->arg) == 0 ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

void cuv_tls_ctx_set_servername_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *), void *arg) {
    /* Lives as long as the context, which lives as long as the process. */
    struct servername_thunk *t = malloc(sizeof *t);
    t->cb = cb;
    t->arg = arg;
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
}

const char *cuv_ssl_servername(const SSL *ssl) { return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); }

long cuv_ssl_verify_result(const SSL *ssl) { return SSL_get_verify_result(ssl); }

void cuv_tls_error_text(const SSL *ssl, char *buf, size_t len) {
    buf[0] = 0;
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = ERR_peek_error();
    if (v != X509_V_OK && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        snprintf(buf, len, "%s", reason ? reason : "TLS error");
    } else if (v != X509_V_OK) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    }
    ERR_clear_error();
}

X509 *cuv_pem_read_cert(const char *pem, size_t len) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

EVP_PKEY *cuv_pem_read_key(const char *pem, size_t len) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    return k;
}

static char *bio_to_malloc(BIO *b, size_t *len) {
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = 0;
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

char *cuv_pem_write_cert(X509 *cert, size_t *len) {
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, cert);
    return bio_to_malloc(b, len);
}

char *cuv_pem_write_key(EVP_PKEY *key, size_t *len) {
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    return bio_to_malloc(b, len);
}

int cuv_cert_is_ca(X509 *cert) { return X509_check_ca(cert) >= 1; }

long cuv_cert_seconds_left(X509 *cert) {
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert))) return -1;
    return (long)days * 86400 + secs;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext) return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int random_serial(X509 *cert) {
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) return -1;
    bytes[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    int ok = X509_set_serialNumber(cert, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok == 1 ? 0 : -1;
}

int cuv_mint_leaf(X509 *ca, EVP_PKEY *ca_key, const char *host, int is_ip, long valid_secs,
                  X509 **out_cert, EVP_PKEY **out_key) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key) return -1;
    X509 *cert = X509_new();
    char san[300];
    snprintf(san, sizeof san, "%s:%s", is_ip ? "IP" : "DNS", host);
    int ok = cert && X509_set_version(cert, 2) == 1 && random_serial(cert) == 0
        && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) && X509_gmtime_adj(X509_getm_notAfter(cert), valid_secs)
        && X509_set_pubkey(cert, key) == 1
        && X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8,
                                      (const unsigned char *)host, (int)(strlen(host) > 64 ? 64 : strlen(host)), -1, 0) == 1
        && X509_set_issuer_name(cert, X509_get_subject_name(ca)) == 1
        && add_ext(cert, ca, NID_basic_constraints, "critical,CA:FALSE") == 0
        && add_ext(cert, ca, NID_key_usage, "critical,digitalSignature") == 0
        && add_ext(cert, ca, NID_ext_key_usage, "serverAuth") == 0
        && add_ext(cert, ca, NID_subject_alt_name, san) == 0
        && add_ext(cert, ca, NID_subject_key_identifier, "hash") == 0
        && add_ext(cert, ca, NID_authority_key_identifier, "keyid:always") == 0
        && X509_sign(cert, ca_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return -1;
    }
    *out_cert = cert;
    *out_key = key;
    return 0;
}

int cuv_make_ca(const char *cn, int days, X509 **out_cert, EVP_PKEY **out_key) {
    EVP_PKEY *key = EVP_RSA_gen(2048);
    if (!key) return -1;
    X509 *cert = X509_new();
    int ok = cert && X509_set_version(cert, 2) == 1 && random_serial(cert) == 0
        && X509_gmtime_adj(X509_getm_notBefore(cert), 0) && X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400)
        && X509_set_pubkey(cert, key) == 1
        && X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1
        && X509_set_issuer_name(cert, X509_get_subject_name(cert)) == 1
        && add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") == 0
        && add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") == 0
        && add_ext(cert, cert, NID_subject_key_identifier, "hash") == 0
        && X509_sign(cert, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return -1;
    }
    *out_cert = cert;
    *out_key = key;
    return 0;
}
