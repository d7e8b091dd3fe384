#ifndef CUV_H
#define CUV_H

#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>

/* Spawns `file` with `args` (NULL-terminated), stdin/stdout/stderr inherited and fd 3 a libuv IPC
 * pipe (`ipc` must be initialised with ipc=1 and not yet opened). */
int cuv_spawn_with_ipc(uv_loop_t *loop, uv_process_t *process, const char *file, char **args,
                       uv_pipe_t *ipc, uv_exit_cb exit_cb);

/* Numeric host of a sockaddr (IPv4 or IPv6) into `out`; returns the port or -1. */
int cuv_sockaddr_host_port(const struct sockaddr *sa, char *out, size_t outlen);

/* getaddrinfo result accessors (struct addrinfo's fields are plain, but a helper keeps the lifetime local). */
const struct sockaddr *cuv_addrinfo_addr(const struct addrinfo *ai);
const struct addrinfo *cuv_addrinfo_next(const struct addrinfo *ai);

/* Hints for uv_getaddrinfo: TCP, any family. */
void cuv_tcp_hints(struct addrinfo *hints);

/* Ignores SIGPIPE for the process (writes to closed sockets return EPIPE instead). */
void cuv_ignore_sigpipe(void);

#endif

/* ---- OpenSSL: wrappers for macros and multi-step mechanics Swift cannot express cleanly ---- */
#include <openssl/x509.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* A client context: TLS >= 1.2, ALPN "http/1.1" only, peer verification against the system CAs
 * (partial chains allowed, so a configured server certificate is a trust anchor) unless `insecure`. */
SSL_CTX *cuv_tls_client_ctx(int insecure);
/* A server context: TLS >= 1.2, ALPN selects "http/1.1" when offered. */
SSL_CTX *cuv_tls_server_ctx(void);
/* Adds every certificate of a PEM file (or PEM text when `is_text`) to the context's trust store. */
int cuv_tls_ctx_trust_pem(SSL_CTX *ctx, const char *path_or_pem, int is_text);
/* Requires client certificates signed by the CAs in `path_or_pem`. */
int cuv_tls_ctx_require_client_certs(SSL_CTX *ctx, const char *path_or_pem, int is_text);
/* SNI (unless `host` is an IP literal) and hostname/IP verification for a client SSL. */
int cuv_ssl_set_peer_host(SSL *ssl, const char *host);
/* Memory BIOs: `rbio` is what the network gave, `wbio` what it must be sent. */
void cuv_ssl_use_memory_bios(SSL *ssl, BIO **rbio, BIO **wbio);
long cuv_bio_pending(BIO *b);
/* Server name callback: `cb(ssl, arg)` runs during the handshake, before the certificate is chosen. */
void cuv_tls_ctx_set_servername_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *), void *arg);
const char *cuv_ssl_servername(const SSL *ssl);
/* Text of the oldest queued OpenSSL error (emptied), or of the verify result when it failed. */
void cuv_tls_error_text(const SSL *ssl, char *buf, size_t len);
long cuv_ssl_verify_result(const SSL *ssl);

/* PEM text → objects (NULL on error). */
X509 *cuv_pem_read_cert(const char *pem, size_t len);
EVP_PKEY *cuv_pem_read_key(const char *pem, size_t len);
/* Objects → PEM text in a malloc'd buffer the caller frees. */
char *cuv_pem_write_cert(X509 *cert, size_t *len);
char *cuv_pem_write_key(EVP_PKEY *key, size_t *len);
int cuv_cert_is_ca(X509 *cert);
/* Seconds from now until the certificate's notAfter (negative when expired). */
long cuv_cert_seconds_left(X509 *cert);

/* A leaf for `host` (SAN DNS, or SAN IP when `is_ip`) with a fresh ECDSA P-256 key, signed by the CA,
 * valid from an hour ago for `valid_secs`, random serial. */
int cuv_mint_leaf(X509 *ca, EVP_PKEY *ca_key, const char *host, int is_ip, long valid_secs,
                  X509 **out_cert, EVP_PKEY **out_key);
/* A self-signed CA (RSA 2048, CA:TRUE, keyCertSign|cRLSign) named `cn`, valid `days`. */
int cuv_make_ca(const char *cn, int days, X509 **out_cert, EVP_PKEY **out_key);
