/* shmem_api.c: every rule of include/shmem.h, checked from C (run by tests/shmem_c.rs).
 *
 *     shmem_api_c check DIR           the rules, one "ok NAME" line each, in a private DIR
 *     shmem_api_c incr KEYFILE T N    T threads each add 1 to the u64 counter N times
 *     shmem_api_c get KEYFILE         prints the counter
 *
 * A failed rule prints "FAIL NAME: ..." and exits 1. check deletes every segment it makes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmem.h"

#define CHECK(name, cond)                                                                    \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            printf("FAIL %s: %s (errno %d, shmem_error \"%s\")\n", name, #cond, errno,       \
                   shmem_error());                                                           \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static void ok(const char *name)
{
    printf("ok %s\n", name);
    fflush(stdout);
}

static char dir[512];

static const char *path(const char *name)
{
    static char buf[8][640];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void add_one(void *data, size_t size, void *arg)
{
    uint64_t n;
    (void)arg;
    if (size < sizeof n)
        return;
    memcpy(&n, data, sizeof n);
    n++;
    memcpy(data, &n, sizeof n);
}

/* Inside an update: calls on the same segment must fail with EDEADLK, not hang. */
struct reentry {
    shmem_t **shm;
    shmem_t **other; /* a second handle of the same segment */
    int read_errno, other_errno, close_errno, close_rc;
};

static void reenter(void *data, size_t size, void *arg)
{
    struct reentry *r = arg;
    char buf[64];
    (void)data;
    (void)size;
    r->read_errno = shmem_read(r->shm, buf, sizeof buf) == -1 ? errno : 0;
    r->other_errno = shmem_write(r->other, "x", 1) == -1 ? errno : 0;
    r->close_rc = shmem_close(r->shm);
    r->close_errno = errno;
}

static shmem_t *race_shm[8];
static int race_created[8];
static pthread_barrier_t race_start;
static const char *race_path;

static void *race_open(void *arg)
{
    int i = (int)(intptr_t)arg;
    pthread_barrier_wait(&race_start);
    race_shm[i] = shmem_open(race_path, 64);
    race_created[i] = race_shm[i] ? shmem_created(&race_shm[i]) : -1;
    return NULL;
}

static int check(void)
{
    char buf[128];
    shmem_t *shm = shmem_open(path("a"), 64);
    CHECK("open", shm != NULL && shmem_created(&shm) == 1 && shmem_size(&shm) == 64);
    CHECK("open/zeroed", shmem_read(&shm, buf, 64) == 0 && buf[0] == 0 && buf[63] == 0);
    CHECK("write", shmem_write(&shm, "hello world", 11) == 0);
    CHECK("write/short", shmem_write(&shm, "HELP", 4) == 0);
    memset(buf, 0xaa, sizeof buf);
    CHECK("read", shmem_read(&shm, buf, sizeof buf) == 0);
    CHECK("read/bytes", memcmp(buf, "HELPo world\0", 12) == 0 && (unsigned char)buf[64] == 0xaa);
    ok("round_trip_keeps_the_tail");

    shmem_t *second = shmem_open(path("a"), 64);
    CHECK("reopen", second != NULL && shmem_created(&second) == 0);
    errno = 0;
    CHECK("mismatch", shmem_open(path("a"), 128) == NULL && errno == EINVAL);
    CHECK("mismatch/text", strstr(shmem_error(), "has 64 bytes, not 128") != NULL);
    /* The message outlives successful calls. */
    const char *msg = shmem_error();
    CHECK("text/lifetime", shmem_read(&shm, buf, 64) == 0 && strstr(msg, "not 128") != NULL);
    shmem_t *any = shmem_open(path("a"), 0);
    CHECK("open0", any != NULL && shmem_size(&any) == 64 && shmem_close(&any) == 0);
    errno = 0;
    CHECK("open0/missing", shmem_open(path("none"), 0) == NULL && errno == ENOENT);
    ok("sizes_and_open_existing");

    errno = 0;
    CHECK("read/small", shmem_read(&shm, buf, 63) == -1 && errno == EINVAL);
    CHECK("read/small/text", strstr(shmem_error(), "63-byte buffer") != NULL);
    errno = 0;
    CHECK("write/big", shmem_write(&shm, buf, 65) == -1 && errno == EINVAL);
    errno = 0;
    CHECK("read/null", shmem_read(&shm, NULL, 64) == -1 && errno == EINVAL);
    errno = 0;
    CHECK("write/null", shmem_write(&shm, NULL, 4) == -1 && errno == EINVAL);
    CHECK("write/empty", shmem_write(&shm, NULL, 0) == 0);
    errno = 0;
    CHECK("null/pp", shmem_read(NULL, buf, 64) == -1 && errno == EINVAL);
    errno = 0;
    CHECK("open/null", shmem_open(NULL, 64) == NULL && errno == EINVAL);
    errno = 0;
    CHECK("open/zero-new", shmem_open(path("zero"), 0) == NULL && errno == ENOENT);
    errno = 0;
    CHECK("update/nullfn", shmem_update(&shm, NULL, NULL) == -1 && errno == EINVAL);
    ok("bad_arguments_are_errors_with_errno");

    /* An update whose fn calls back into the library on the same segment. */
    struct reentry r = { &shm, &second, 0, 0, 0, 0 };
    CHECK("update/reenter", shmem_update(&shm, reenter, &r) == 0);
    CHECK("update/reenter/read", r.read_errno == EDEADLK);
    CHECK("update/reenter/other", r.other_errno == EDEADLK);
    CHECK("update/reenter/close", r.close_rc == -1 && r.close_errno == EDEADLK && shm != NULL);
    CHECK("update/after", shmem_update(&shm, add_one, NULL) == 0);
    ok("a_call_inside_update_is_edeadlk_not_a_hang");

    /* fork: the inherited handle is refused in the child, except for closing it. */
    fflush(stdout);
    pid_t pid = fork();
    CHECK("fork", pid != -1);
    if (pid == 0) {
        int bad = shmem_read(&shm, buf, 64) == -1 && errno == EBADF
                  && strstr(shmem_error(), "after fork") != NULL;
        int closed = shmem_close(&shm) == 0 && shm == NULL;
        shmem_t *mine = shmem_open(path("a"), 64);
        int own = mine != NULL && shmem_write(&mine, "CHILD", 5) == 0 && shmem_close(&mine) == 0;
        _exit(bad && closed && own ? 0 : 1);
    }
    int status;
    CHECK("fork/wait", waitpid(pid, &status, 0) == pid);
    CHECK("fork/child", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK("fork/parent", shmem_read(&shm, buf, 64) == 0 && memcmp(buf, "CHILD", 5) == 0);
    ok("fork_child_must_open_its_own");

    /* close and delete NULL the handle; a second call is a clean EBADF. */
    CHECK("close", shmem_close(&second) == 0 && second == NULL);
    errno = 0;
    CHECK("close/twice", shmem_close(&second) == -1 && errno == EBADF);
    errno = 0;
    CHECK("read/closed", shmem_read(&second, buf, 64) == -1 && errno == EBADF);
    shmem_t *watcher = shmem_open(path("a"), 64);
    CHECK("watcher", watcher != NULL && shmem_deleted(&watcher) == 0);
    CHECK("delete", shmem_delete(&shm) == 0 && shm == NULL);
    errno = 0;
    CHECK("delete/twice", shmem_delete(&shm) == -1 && errno == EBADF);
    CHECK("deleted", shmem_deleted(&watcher) == 1);
    /* Still attached: the old memory still works, but it is nobody else's any more. */
    CHECK("deleted/read", shmem_read(&watcher, buf, 64) == 0 && memcmp(buf, "CHILD", 5) == 0);
    errno = 0;
    CHECK("delete/again", shmem_delete(&watcher) == -1 && errno == ENOENT && watcher != NULL);
    CHECK("delete/again/close", shmem_close(&watcher) == 0);
    shmem_t *fresh = shmem_open(path("a"), 32);
    CHECK("fresh", fresh != NULL && shmem_created(&fresh) == 1 && shmem_delete(&fresh) == 0);
    ok("close_and_delete_null_the_handle");

    /* Eight threads open one new path at once: exactly one creates. */
    race_path = path("race");
    pthread_barrier_init(&race_start, NULL, 8);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, race_open, (void *)(intptr_t)i);
    int creators = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK("race/open", race_shm[i] != NULL);
        creators += race_created[i];
    }
    CHECK("race/one", creators == 1);
    CHECK("race/delete", shmem_delete(&race_shm[0]) == 0);
    for (int i = 1; i < 8; i++)
        CHECK("race/close", shmem_close(&race_shm[i]) == 0);
    ok("one_creator_among_racing_threads");
    return 0;
}

static shmem_t *incr_shm;
static long incr_n;

static void *incr_thread(void *arg)
{
    (void)arg;
    for (long i = 0; i < incr_n; i++) {
        if (shmem_update(&incr_shm, add_one, NULL) == -1) {
            fprintf(stderr, "shmem_api_c: shmem_update: %s\n", shmem_error());
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
        return check();
    }
    if (argc == 5 && strcmp(argv[1], "incr") == 0) {
        int threads = atoi(argv[3]);
        incr_n = atol(argv[4]);
        if (threads < 1 || threads > 32)
            return 2;
        incr_shm = shmem_open(argv[2], 8);
        if (incr_shm == NULL) {
            fprintf(stderr, "shmem_api_c: %s\n", shmem_error());
            return 1;
        }
        pthread_t t[32];
        for (int i = 0; i < threads; i++)
            pthread_create(&t[i], NULL, incr_thread, NULL);
        for (int i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
        return shmem_close(&incr_shm) == 0 ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "get") == 0) {
        uint64_t n;
        shmem_t *shm = shmem_open(argv[2], 8);
        if (shm == NULL || shmem_read(&shm, &n, sizeof n) == -1) {
            fprintf(stderr, "shmem_api_c: %s\n", shmem_error());
            return 1;
        }
        printf("%llu\n", (unsigned long long)n);
        return shmem_close(&shm) == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: shmem_api_c check DIR | incr KEYFILE THREADS N | get KEYFILE\n");
    return 2;
}
