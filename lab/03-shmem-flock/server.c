/* server.c: publishes a record that changes over time (the seed's example/server.c, in C).
 *
 * Every --interval milliseconds it writes a new struct record (record.h: update number, time,
 * its pid and a line of text) into the segment of KEYFILE with one shmem_write. Any number
 * of clients read it meanwhile, each copy one whole record: shmem_write holds LOCK_EX on
 * KEYFILE while it copies, and a reader's shmem_read waits for it (include/shmem.h).
 *
 * Start order: the server first (it creates the segment); clients any time after.
 * Who removes: this server *created* the segment and owns it, so it calls shmem_delete when
 * it stops, after --count records or on SIGINT/SIGTERM. Running clients notice and exit.
 *
 *     $ cargo build
 *     $ cc -Iinclude lab/03-shmem-flock/server.c target/debug/libipclab.a -lpthread -ldl -lm -o shmem_server_c
 *     $ ./shmem_server_c /tmp/k --count 3 --interval 200
 *     shmem_server_c: /tmp/k: created the segment, 96 bytes
 *     published seq=1 text=tick 1
 *     published seq=2 text=tick 2
 *     published seq=3 text=tick 3
 *     shmem_server_c: removed the segment
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "record.h"
#include "shmem.h"

static const char *prog = "shmem_server_c";

/* Set by the signal handler; the main loop checks it between records. */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

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

/* Sleeps ms milliseconds, or less if a signal arrives (nanosleep returns EINTR: no
 * SA_RESTART below, on purpose). */
static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long interval = 500;
    long long count = -1; /* -1: until a signal */
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

    /* Handlers first, so that a Ctrl-C after shmem_open still reaches shmem_delete below. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1) {
        fprintf(stderr, "%s: sigaction: %s\n", prog, strerror(errno));
        return 1;
    }

    shmem_t *shm = shmem_open(path, sizeof(struct record));
    if (shm == NULL) {
        fprintf(stderr, "%s: %s\n", prog, shmem_error());
        return 1;
    }
    /* Only the creator owns the segment: one that was already there (another server's, or
     * one made with shmem_tool) is not ours to delete. */
    if (shmem_created(&shm) != 1) {
        fprintf(stderr, "%s: %s: a segment already exists for this key (another server?); "
                        "remove it with `shmem_tool delete %s`\n", prog, path, path);
        shmem_close(&shm);
        return 1;
    }
    fprintf(stderr, "%s: %s: created the segment, %zu bytes\n", prog, path, sizeof(struct record));

    int status = 0;
    for (unsigned long long seq = 1; !stop && (count < 0 || seq <= (unsigned long long)count); seq++) {
        struct record rec;
        memset(&rec, 0, sizeof rec); /* reserved and the unused text must be zeros */
        memcpy(rec.magic, RECORD_MAGIC, sizeof rec.magic);
        rec.version = RECORD_VERSION;
        rec.seq = seq;
        rec.time_ms = now_ms();
        rec.pid = (uint32_t)getpid();
        int n = snprintf(rec.text, sizeof rec.text, "tick %llu", seq);
        rec.text_len = (uint16_t)n;
        /* One write of the whole record: a reader sees all of it or none of it. */
        if (shmem_write(&shm, &rec, sizeof rec) == -1) {
            fprintf(stderr, "%s: %s\n", prog, shmem_error());
            status = 1;
            break;
        }
        printf("published seq=%llu text=%s\n", seq, rec.text);
        fflush(stdout); /* a pipe would otherwise hold the lines until exit */
        if (count < 0 || seq < (unsigned long long)count)
            pause_ms(interval);
    }

    /* We created it, we remove it: whichever way the loop ended. */
    if (shmem_delete(&shm) == -1) {
        fprintf(stderr, "%s: %s\n", prog, shmem_error());
        shmem_close(&shm);
        return 1;
    }
    fprintf(stderr, "%s: removed the segment\n", prog);
    return status;
}
