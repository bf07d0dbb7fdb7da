/* client.c: reads the server's record and prints it (the seed's example/client.c, in C).
 *
 * Every --interval milliseconds it copies the whole segment out with one shmem_read, which
 * holds LOCK_SH while it copies, so the copy is one whole record, never half of two. It opens
 * with shmem_open(path, 0): an existing segment only, so a client started before the server
 * says "no segment" instead of creating one.
 *
 * Start order: server.c (or the Rust shmem_server) first. Who removes: not the client; it
 * only attaches. It stops after --count reads, or when it sees that the server deleted the
 * segment.
 *
 *     $ cc -Iinclude lab/03-shmem-flock/client.c target/debug/libipclab.a -lpthread -ldl -lm -o shmem_client_c
 *     $ ./shmem_client_c /tmp/k --count 2 --interval 100
 *     seq=2 pid=31063 age_ms=51 text=tick 2
 *     seq=2 pid=31063 age_ms=151 text=tick 2
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "record.h"
#include "shmem.h"

static const char *prog = "shmem_client_c";

static int usage(const char *why)
{
    fprintf(stderr, "%s: %s\nusage: %s KEYFILE [--interval MS] [--count N]\n", prog, why, prog);
    return 2;
}

static unsigned long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Prints the record at the front of buf (a copy of the whole segment); 0, or 1 for bytes
 * that are not a record. */
static int print_record(const unsigned char *buf)
{
    static const unsigned char zeros[sizeof(struct record)];
    struct record rec;
    if (memcmp(buf, zeros, sizeof rec) == 0) {
        printf("(no record yet)\n"); /* created, nothing published yet */
        return 0;
    }
    memcpy(&rec, buf, sizeof rec); /* buf has no alignment promise: copy, do not cast */
    if (memcmp(rec.magic, RECORD_MAGIC, sizeof rec.magic) != 0 || rec.version != RECORD_VERSION
        || rec.text_len > RECORD_TEXT_MAX) {
        fprintf(stderr, "%s: the segment does not hold a version %d record\n", prog, RECORD_VERSION);
        return 1;
    }
    unsigned long long now = now_ms();
    printf("seq=%llu pid=%u age_ms=%llu text=%.*s\n", (unsigned long long)rec.seq, rec.pid,
           now > rec.time_ms ? now - rec.time_ms : 0, (int)rec.text_len, rec.text);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long interval = 500;
    long long count = -1; /* -1: until the server deletes the segment */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
            interval = atol(argv[++i]);
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = atoll(argv[++i]);
        else if (argv[i][0] == '-')
            return usage("unknown flag or missing value");
        else if (path == NULL)
            path = argv[i];
        else
            return usage("unexpected argument");
    }
    if (path == NULL)
        return usage("missing KEYFILE");
    if (interval < 0)
        return usage("--interval must be at least 0");

    shmem_t *shm = shmem_open(path, 0); /* 0: open only, the server creates */
    if (shm == NULL) {
        fprintf(stderr, "%s: %s\n", prog, shmem_error());
        return 1;
    }
    /* shmem_read copies the whole segment: the buffer must be as big as the segment. */
    ssize_t size = shmem_size(&shm);
    if (size < (ssize_t)sizeof(struct record)) {
        fprintf(stderr, "%s: %s: the segment has %zd bytes, a record needs %zu\n", prog, path,
                size, sizeof(struct record));
        shmem_close(&shm);
        return 1;
    }
    unsigned char *buf = malloc((size_t)size);
    if (buf == NULL) {
        fprintf(stderr, "%s: malloc(%zd): out of memory\n", prog, size);
        shmem_close(&shm);
        return 1;
    }

    int status = 0;
    for (long long reads = 0; count < 0 || reads < count; reads++) {
        if (reads > 0) {
            struct timespec ts = { interval / 1000, (interval % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
        /* Deleted by the server: our mapping still works, but nobody writes to it any more. */
        if (shmem_deleted(&shm) == 1) {
            printf("the server removed the segment\n");
            break;
        }
        if (shmem_read(&shm, buf, (size_t)size) == -1) {
            fprintf(stderr, "%s: %s\n", prog, shmem_error());
            status = 1;
            break;
        }
        if (print_record(buf) != 0) {
            status = 1;
            break;
        }
        fflush(stdout);
    }
    free(buf);
    if (shmem_close(&shm) == -1) {
        fprintf(stderr, "%s: %s\n", prog, shmem_error());
        return 1;
    }
    return status;
}
