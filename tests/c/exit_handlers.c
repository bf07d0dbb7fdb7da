/* exit_handlers.c: the RSHM calls work from an atexit handler and from a thread-exit
 * destructor, when the library's thread-locals are already gone (run by tests/ffi.rs).
 *
 * usage: exit_handlers KEY      (RSHM_PORT names the node)
 *
 * main creates the segment and attaches it; a thread, in its pthread key destructor (which
 * runs as the thread exits), calls rshmget, rshmat, rshm_wait_changed, rshmdt and a failing
 * rshmctl with rshm_error; the atexit handler (which runs after main's thread-locals are
 * destroyed) calls rshmat, rshmChanged, rshm_wait_changed, rshmdt, rshmdt of main's address
 * and rshmctl(IPC_RMID). Each prints "NAME: CALL = VALUE"; a call that fails prints the
 * error. The program exits 0 if every call did what it should; an abort (a panic crossing
 * extern "C") would exit 134.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rshm.h"

static key_t key;
static int id;
static void *main_addr;
static int failures;

static void check(const char *where, const char *call, int ok, long value)
{
    if (ok) {
        printf("%s: %s = %ld\n", where, call, value);
    } else {
        printf("%s: %s FAILED = %ld errno %d: %s\n", where, call, value, errno, rshm_error());
        failures++;
    }
    fflush(stdout);
}

static void calls(const char *where)
{
    void *a = rshmat(id, NULL);
    check(where, "rshmat", a != (void *)-1, a != (void *)-1);
    int r = rshmChanged(id);
    check(where, "rshmChanged", r == 0, r);
    r = rshm_wait_changed(id, 0);
    check(where, "rshm_wait_changed", r == 0 || r == 1, r);
    r = rshmdt(id, a);
    check(where, "rshmdt", r == 0, r);
}

static pthread_key_t tkey;

static void thread_exit(void *arg)
{
    (void)arg;
    int got = rshmget(key, 0);
    check("destructor", "rshmget", got == id, got);
    calls("destructor");
    /* A failure, and its message, from a dying thread. */
    int r = rshmctl(id, 12345);
    const char *msg = rshm_error();
    check("destructor", "rshmctl(bad cmd) is EINVAL", r == -1 && errno == EINVAL, r);
    check("destructor", "rshm_error names rshmctl", strstr(msg, "rshmctl(") != NULL, 0);
}

static void *thread_main(void *arg)
{
    (void)arg;
    pthread_setspecific(tkey, (void *)1); /* so that thread_exit runs */
    return NULL;
}

static void at_exit(void)
{
    calls("atexit");
    int r = rshmdt(id, main_addr);
    check("atexit", "rshmdt(main's)", r == 0, r);
    r = rshmctl(id, IPC_RMID);
    check("atexit", "rshmctl(IPC_RMID)", r == 0, r);
    printf("atexit: %d failures\n", failures);
    fflush(stdout);
    if (failures)
        _exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: exit_handlers KEY\n");
        return 2;
    }
    key = (key_t)strtol(argv[1], NULL, 0);
    id = rshmget(key, 4096);
    if (id == -1) {
        fprintf(stderr, "exit_handlers: rshmget: %s\n", rshm_error());
        return 1;
    }
    main_addr = rshmat(id, NULL);
    if (main_addr == (void *)-1) {
        fprintf(stderr, "exit_handlers: rshmat: %s\n", rshm_error());
        return 1;
    }
    strcpy(main_addr, "written by main");
    pthread_key_create(&tkey, thread_exit);
    pthread_t t;
    pthread_create(&t, NULL, thread_main, NULL);
    pthread_join(t, NULL);
    atexit(at_exit);
    printf("main: done, %d failures\n", failures);
    fflush(stdout);
    return failures ? 1 : 0;
}
