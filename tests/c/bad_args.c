/* bad_args.c: every RSHM call given bad arguments returns -1 (or (void *)-1) with the errno
 * include/rshm.h promises, and the rshm_error() text lives as long as the header says
 * (run by tests/ffi.rs, under valgrind when it is installed).
 *
 * usage: bad_args KEY      (RSHM_PORT names the node)
 *
 * Checked: RSHM_PORT that is no port (EINVAL); rshmat with addr != NULL (EINVAL); rshmdt of
 * an address not attached, or of NULL (EINVAL); rshmctl with a cmd other than IPC_RMID
 * (EINVAL); rshmChanged_range at the segment's edges and past them (EINVAL, with the reason);
 * calls on an rshmid nobody has; rshm_error()'s pointer, still readable and
 * unchanged after a *successful* call, and readable (with the new text) after the next
 * failure; rshm_wait_changed with timeout 0 (at once) and -1 (for ever, ended by a change
 * that another thread makes). Prints one line per check; exits 0 if all passed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rshm.h"

static int failures;

static void expect(const char *what, int ok)
{
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) {
        printf("  errno %d, rshm_error: %s\n", errno, rshm_error());
        failures++;
    }
    fflush(stdout);
}

static int id;

static void *change_later(void *arg)
{
    (void)arg;
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    if (rshmChanged(id) != 0)
        printf("change_later: rshmChanged: %s\n", rshm_error());
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bad_args KEY\n");
        return 2;
    }
    key_t key = (key_t)strtol(argv[1], NULL, 0);
    const char *port = getenv("RSHM_PORT");

    setenv("RSHM_PORT", "seventy", 1);
    errno = 0;
    expect("RSHM_PORT=seventy is EINVAL", rshmget(key, 64) == -1 && errno == EINVAL);
    expect("... and says so", strstr(rshm_error(), "RSHM_PORT='seventy'") != NULL);
    setenv("RSHM_PORT", "70000", 1);
    expect("RSHM_PORT=70000 is EINVAL", rshmget(key, 64) == -1 && errno == EINVAL);
    setenv("RSHM_PORT", port, 1);

    id = rshmget(key, 64);
    expect("rshmget creates", id > 0);
    char dummy;
    expect("rshmat(addr != NULL) is EINVAL",
           rshmat(id, &dummy) == (void *)-1 && errno == EINVAL);
    expect("rshmdt(not attached) is EINVAL", rshmdt(id, &dummy) == -1 && errno == EINVAL);
    expect("rshmdt(NULL) is EINVAL", rshmdt(id, NULL) == -1 && errno == EINVAL);
    expect("rshmctl(cmd=IPC_STAT) is EINVAL", rshmctl(id, IPC_STAT) == -1 && errno == EINVAL);
    expect("rshmat(unknown id) fails", rshmat(0x7eadbeef, NULL) == (void *)-1 && errno != 0);
    expect("rshmChanged(unknown id) fails", rshmChanged(0x7eadbeef) == -1);
    expect("rshm_wait_changed(unknown id) fails", rshm_wait_changed(0x7eadbeef, 0) == -1);

    /* rshmChanged_range at the segment's edges (64 bytes) and beyond them. */
    expect("rshmChanged_range(0, 64) publishes the whole segment", rshmChanged_range(id, 0, 64) == 0);
    expect("rshmChanged_range(63, 1), the last byte", rshmChanged_range(id, 63, 1) == 0);
    errno = 0;
    expect("rshmChanged_range(64, 1) is EINVAL", rshmChanged_range(id, 64, 1) == -1 && errno == EINVAL);
    expect("... and says why", strstr(rshm_error(), "past the end of the segment (64 bytes)") != NULL);
    expect("rshmChanged_range(63, 2) is EINVAL", rshmChanged_range(id, 63, 2) == -1 && errno == EINVAL);
    expect("rshmChanged_range(0, 0) is EINVAL", rshmChanged_range(id, 0, 0) == -1 && errno == EINVAL);
    expect("... and says why", strstr(rshm_error(), "len 0") != NULL);
    expect("rshmChanged_range(SIZE_MAX, 2) is EINVAL (overflow)",
           rshmChanged_range(id, (size_t)-1, 2) == -1 && errno == EINVAL
               && strstr(rshm_error(), "overflows") != NULL);
    expect("rshmChanged_range(unknown id) fails", rshmChanged_range(0x7eadbeef, 0, 1) == -1);

    /* rshm_error's lifetime: like strerror's, until this thread's next failing call. */
    rshmctl(id, 999);
    const char *kept = rshm_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", kept);
    void *a = rshmat(id, NULL);
    expect("rshmat succeeds", a != (void *)-1);
    expect("rshm_error() unchanged by a successful call", strcmp(kept, copy) == 0);
    rshmdt(id, &dummy);
    expect("after the next failure the pointer is still readable, with the new text",
           strstr(kept, "rshmdt(") != NULL);

    expect("rshm_wait_changed(0) returns at once", rshm_wait_changed(id, 0) == 0);
    pthread_t t;
    pthread_create(&t, NULL, change_later, NULL);
    expect("rshm_wait_changed(-1) waits for ever, until the change", rshm_wait_changed(id, -1) == 1);
    pthread_join(t, NULL);

    expect("rshmdt", rshmdt(id, a) == 0);
    expect("rshmctl(IPC_RMID)", rshmctl(id, IPC_RMID) == 0);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
