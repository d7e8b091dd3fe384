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

/* Spawns `file` with `args` (NULL-terminated), stdin/stdout/stderr inherited, fd 3 a libuv IPC
 * pipe (`ipc` must be initialised with ipc=1 and not yet opened) and, when `extra_fd` >= 0, that
 * descriptor as the child's fd 4. */
int cuv_spawn_with_ipc(uv_loop_t *loop, uv_process_t *process, const char *file, char **args,
                       uv_pipe_t *ipc, int extra_fd, uv_exit_cb exit_cb);

/* memfd_create(2) (glibc declares it only under _GNU_SOURCE); flags 0: inherited across exec. */
int cuv_memfd_create(const char *name);

/* sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE): starts writing those dirty pages back
 * without waiting (also _GNU_SOURCE only). */
int cuv_start_writeback(int fd, int64_t off, int64_t len);

/* splice(2) between a socket and a pipe, non-blocking, pages moved where the kernel can
 * (_GNU_SOURCE only); pipe2(2) with O_NONBLOCK | O_CLOEXEC; a pipe's capacity (F_SETPIPE_SZ). */
ssize_t cuv_splice(int in, int out, size_t len);
int cuv_pipe_nonblock(int fds[2]);
int cuv_set_pipe_size(int fd, int size);

/* Atomic operations on 64-bit words that several processes map (relaxed where a counter needs no
 * ordering; the compare-and-swap is sequentially consistent). */
static inline void cuv_atomic_add_u64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline uint64_t cuv_atomic_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void cuv_atomic_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int cuv_atomic_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

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

/* ---- OpenSSL: wrappers for macros (and one variadic call) Swift cannot import. No policy here:
 * protocol versions, ALPN, verification, certificate profiles and error wording are in Sources/Worker/TLS. */
#include <openssl/x509.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>

int cuv_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version);
long cuv_ssl_ctx_set_mode(SSL_CTX *ctx, long mode);
/* Installs `cb` as the server name callback with `arg` as its argument (SSL_CTX_set_tlsext_servername_*). */
void cuv_ssl_ctx_set_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *), void *arg);
int cuv_ssl_set_tlsext_host_name(SSL *ssl, const char *name);
void cuv_bio_set_mem_eof_return(BIO *b, int v);
long cuv_bio_pending(BIO *b);
long cuv_bio_get_mem_data(BIO *b, char **data);
int cuv_err_get_reason(unsigned long e);
/* EVP_EC_gen / EVP_RSA_gen (variadic EVP_PKEY_Q_keygen underneath). */
EVP_PKEY *cuv_evp_ec_gen(const char *curve);
EVP_PKEY *cuv_evp_rsa_gen(unsigned int bits);
/* sk_GENERAL_NAME_push: on success the stack owns `name`. */
int cuv_general_names_push(GENERAL_NAMES *names, GENERAL_NAME *name);
void cuv_x509v3_set_ctx_nodb(X509V3_CTX *ctx);
/* SSL_CTX_set_tlsext_ticket_keys: `keys` is 80 bytes (name, HMAC secret, AES key). */
long cuv_ssl_ctx_set_ticket_keys(SSL_CTX *ctx, unsigned char *keys, long len);
