/* The fuzz driver. Built by scripts/fuzz.sh with -fsanitize=fuzzer (and DFGET_LIBFUZZER), libFuzzer's
 * own main runs. In a plain build this main replays the files and folders named on the command
 * line through the target in DFGET_FUZZ_TARGET, which is how a crash found once stays a test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef DFGET_LIBFUZZER
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) { cap = cap ? cap * 2 : 4096; buf = realloc(buf, cap); if (!buf) { fclose(f); return -1; } }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 1;
}

static int replay(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) { perror(path); return -1; }
    if (!S_ISDIR(st.st_mode)) return replay_file(path);
    DIR *d = opendir(path);
    if (!d) { perror(path); return -1; }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        int r = replay(child);
        if (r < 0) { closedir(d); return -1; }
        n += r;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int r = replay(argv[i]);
        if (r < 0) return 1;
        total += r;
    }
    printf("replayed %d inputs\n", total);
    return 0;
}
#endif
