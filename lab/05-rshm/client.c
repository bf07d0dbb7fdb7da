/* client.c: the seed's P1 and P2 in C, on the RSHM API (include/rshm.h).
 *
 *     P1: rshmget -> rshmat -> strcpy -> rshmChanged -> rshmdt
 *     P2: rshmget -> rshmat -> (wait for a change) -> print -> rshmdt
 *
 * Build and run (two nodes on one machine, each with its own rshm_server):
 *
 *     $ cargo build
 *     $ cc -Iinclude lab/05-rshm/client.c target/debug/libipclab.a -lpthread -ldl -lm -o client_c
 *     $ RSHM_PORT=7001 ./client_c p1 0x10 "hello from C"
 *     p1: rshmid 1702349821: wrote 13 bytes, every node has them
 *     $ RSHM_PORT=7002 ./client_c p2 0x10
 *     hello from C
 *
 * p2 with a third argument waits up to that many ms for the next change before printing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rshm.h"

static int fail(const char *call)
{
    fprintf(stderr, "client_c: %s: %s\n", call, rshm_error());
    return 1;
}

static int p1(key_t key, const char *text)
{
    size_t need = strlen(text) + 1;
    int id = rshmget(key, need < 4096 ? 4096 : need);
    if (id == -1)
        return fail("rshmget");
    char *mem = rshmat(id, NULL);
    if (mem == (void *)-1)
        return fail("rshmat");
    memcpy(mem, text, need); /* our own mapping: a plain store, no call needed */
    if (rshmChanged(id) == -1) {
        rshmdt(id, mem);
        return fail("rshmChanged");
    }
    if (rshmdt(id, mem) == -1)
        return fail("rshmdt");
    printf("p1: rshmid %d: wrote %zu bytes, every node has them\n", id, need);
    return 0;
}

static int p2(key_t key, int wait_ms)
{
    int id = rshmget(key, 0); /* 0: open only, the segment must exist */
    if (id == -1)
        return fail("rshmget");
    char *mem = rshmat(id, NULL);
    if (mem == (void *)-1)
        return fail("rshmat");
    if (wait_ms > 0 && rshm_wait_changed(id, wait_ms) == -1) {
        rshmdt(id, mem);
        return fail("rshm_wait_changed");
    }
    printf("%s\n", mem);
    if (rshmdt(id, mem) == -1)
        return fail("rshmdt");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "p1") == 0)
        return p1((key_t)strtol(argv[2], NULL, 0), argv[3]);
    if (argc >= 3 && strcmp(argv[1], "p2") == 0)
        return p2((key_t)strtol(argv[2], NULL, 0), argc > 3 ? atoi(argv[3]) : 0);
    fprintf(stderr, "usage: client_c p1 KEY TEXT | client_c p2 KEY [WAIT_MS]\n");
    return 2;
}
