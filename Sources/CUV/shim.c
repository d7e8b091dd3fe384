#define _GNU_SOURCE
#include "CUV.h"
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>

int cuv_spawn_with_ipc(uv_loop_t *loop, uv_process_t *process, const char *file, char **args,
                       uv_pipe_t *ipc, int extra_fd, uv_exit_cb exit_cb) {
    uv_stdio_container_t stdio[5];
    stdio[0].flags = UV_INHERIT_FD; stdio[0].data.fd = 0;
    stdio[1].flags = UV_INHERIT_FD; stdio[1].data.fd = 1;
    stdio[2].flags = UV_INHERIT_FD; stdio[2].data.fd = 2;
    stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
    stdio[3].data.stream = (uv_stream_t *)ipc;
    stdio[4].flags = UV_INHERIT_FD; stdio[4].data.fd = extra_fd;
    uv_process_options_t options;
    memset(&options, 0, sizeof options);
    options.file = file;
    options.args = args;
    options.exit_cb = exit_cb;
    options.stdio = stdio;
    options.stdio_count = extra_fd >= 0 ? 5 : 4;
    return uv_spawn(loop, process, &options);
}

int cuv_sockaddr_host_port(const struct sockaddr *sa, char *out, size_t outlen) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (uv_ip4_name(in, out, outlen) != 0) return -1;
        return ntohs(in->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (uv_ip6_name(in6, out, outlen) != 0) return -1;
        return ntohs(in6->sin6_port);
    }
    return -1;
}

const struct sockaddr *cuv_addrinfo_addr(const struct addrinfo *ai) { return ai->ai_addr; }
const struct addrinfo *cuv_addrinfo_next(const struct addrinfo *ai) { return ai->ai_next; }

void cuv_tcp_hints(struct addrinfo *hints) {
    memset(hints, 0, sizeof *hints);
    hints->ai_family = AF_UNSPEC;
    hints->ai_socktype = SOCK_STREAM;
    hints->ai_protocol = IPPROTO_TCP;
}

void cuv_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

int cuv_memfd_create(const char *name) { return memfd_create(name, 0); }

int cuv_start_writeback(int fd, int64_t off, int64_t len) { return sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE); }

ssize_t cuv_splice(int in, int out, size_t len) { return splice(in, NULL, out, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK); }
int cuv_pipe_nonblock(int fds[2]) { return pipe2(fds, O_NONBLOCK | O_CLOEXEC); }
int cuv_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
