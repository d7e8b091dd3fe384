#include "CUV.h"

int cuv_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
long cuv_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }

void cuv_ssl_ctx_set_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *), void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

int cuv_ssl_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
void cuv_bio_set_mem_eof_return(BIO *b, int v) { BIO_set_mem_eof_return(b, v); }
long cuv_bio_pending(BIO *b) { return (long)BIO_pending(b); }
long cuv_bio_get_mem_data(BIO *b, char **data) { return BIO_get_mem_data(b, data); }
int cuv_err_get_reason(unsigned long e) { return ERR_GET_REASON(e); }
EVP_PKEY *cuv_evp_ec_gen(const char *curve) { return EVP_EC_gen(curve); }
EVP_PKEY *cuv_evp_rsa_gen(unsigned int bits) { return EVP_RSA_gen(bits); }
int cuv_general_names_push(GENERAL_NAMES *names, GENERAL_NAME *name) { return sk_GENERAL_NAME_push(names, name); }
void cuv_x509v3_set_ctx_nodb(X509V3_CTX *ctx) { X509V3_set_ctx_nodb(ctx); }
long cuv_ssl_ctx_set_ticket_keys(SSL_CTX *ctx, unsigned char *keys, long len) { return SSL_CTX_set_tlsext_ticket_keys(ctx, keys, len); }
