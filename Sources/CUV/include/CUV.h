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
