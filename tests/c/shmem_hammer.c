/* shmem_hammer.c: threads of one C process hammer one segment through include/shmem.h, and
 * every read is checked for a tear (the C twin of src/shmem/hammer.rs, same stamp pattern).
 *
 * Writer i fills a buffer as large as the segment with one 8-byte stamp repeated (u32 writer
 * number, u32 write number, little-endian: src/wire/shmem.rs) and writes it with one
 * shmem_write. Readers read the whole segment and check that every copy of the stamp agrees:
 * if not, the read was torn. All threads share ONE shmem_t, which is exactly what the seed
 * calls undefined. Writers go on past COUNT until every reader has seen the segment change
 * (or 20 s pass), so that a pass cannot come from readers and writers never overlapping.
 *
 *     $ shmem_hammer_c KEYFILE SIZE WRITERS READERS COUNT FIRST_WRITER
 *     reads=6000 writes=4523 torn=0 changes=812
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmem.h"

static shmem_t *shm;
static size_t size;
static long count;
static pthread_barrier_t start;
static int waiting_readers; /* readers still waiting for a change; atomics below */
static time_t give_up;
static int failed;

struct result {
    unsigned long reads, writes, torn, changes;
};

static void fail(const char *call)
{
    fprintf(stderr, "shmem_hammer_c: %s: %s\n", call, shmem_error());
    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
}

static void stamp(unsigned char *buf, uint32_t writer, uint32_t seq)
{
    unsigned char one[8];
    memcpy(one, &writer, 4); /* little-endian host: the wire's byte order */
    memcpy(one + 4, &seq, 4);
    /* Then double the filled part with each copy: a few memcpys, so that the writers spend
     * their time in shmem_write, overlapping the readers, not in this loop. */
    memcpy(buf, one, 8);
    for (size_t filled = 8; filled < size;) {
        size_t n = filled < size - filled ? filled : size - filled;
        memcpy(buf + filled, buf, n);
        filled += n;
    }
}

static void *writer(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    struct result *r = calloc(1, sizeof *r);
    unsigned char *buf = malloc(size);
    pthread_barrier_wait(&start);
    while (!__atomic_load_n(&failed, __ATOMIC_RELAXED)
           && ((long)r->writes < count
               || (__atomic_load_n(&waiting_readers, __ATOMIC_RELAXED) > 0 && time(NULL) < give_up))) {
        stamp(buf, me, (uint32_t)r->writes);
        if (shmem_write(&shm, buf, size) == -1) {
            fail("shmem_write");
            break;
        }
        r->writes++;
        /* flock wakes a blocked reader but does not hand it the lock: a writer that locks
         * again at once can keep every reader out until it is done, and then no reader ever
         * sees a change. A pause of 20 us after each write lets the woken readers in. */
        nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 20000 }, NULL);
    }
    free(buf);
    return r;
}

static void *reader(void *arg)
{
    (void)arg;
    struct result *r = calloc(1, sizeof *r);
    unsigned char *buf = malloc(size);
    unsigned char last[8];
    int have_last = 0;
    pthread_barrier_wait(&start);
    while (!__atomic_load_n(&failed, __ATOMIC_RELAXED)) {
        if (shmem_read(&shm, buf, size) == -1) {
            fail("shmem_read");
            break;
        }
        r->reads++;
        /* One whole stamp pattern exactly when each byte equals the one 8 before it. */
        if (memcmp(buf + 8, buf, size - 8) != 0) {
            if (r->torn++ == 0)
                fprintf(stderr, "shmem_hammer_c: torn read\n");
        } else {
            if (have_last && memcmp(last, buf, 8) != 0)
                r->changes++;
            memcpy(last, buf, 8);
            have_last = 1;
        }
        if ((long)r->reads >= count && (r->changes > 0 || time(NULL) >= give_up))
            break;
        /* Done with its count, a reader waits for a change; but flock grants a new LOCK_SH
         * while a writer waits, so readers that lock again at once can keep every writer out
         * for good. A pause of 20 us after each read from now on lets a writer in. */
        if ((long)r->reads >= count)
            nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 20000 }, NULL);
    }
    __atomic_fetch_sub(&waiting_readers, 1, __ATOMIC_RELAXED);
    free(buf);
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: shmem_hammer_c KEYFILE SIZE WRITERS READERS COUNT FIRST_WRITER\n");
        return 2;
    }
    size = strtoul(argv[2], NULL, 0);
    int writers = atoi(argv[3]), readers = atoi(argv[4]);
    count = atol(argv[5]);
    uint32_t first = (uint32_t)strtoul(argv[6], NULL, 0);
    if (size < 16 || writers < 1 || readers < 1 || writers + readers > 64) {
        fprintf(stderr, "shmem_hammer_c: SIZE >= 16, 1..64 threads\n");
        return 2;
    }
    shm = shmem_open(argv[1], size);
    if (shm == NULL) {
        fprintf(stderr, "shmem_hammer_c: %s\n", shmem_error());
        return 1;
    }
    waiting_readers = readers;
    give_up = time(NULL) + 20;
    pthread_barrier_init(&start, NULL, (unsigned)(writers + readers));
    pthread_t t[64];
    for (int i = 0; i < writers; i++)
        pthread_create(&t[i], NULL, writer, (void *)(uintptr_t)(first + (uint32_t)i));
    for (int i = 0; i < readers; i++)
        pthread_create(&t[writers + i], NULL, reader, NULL);
    struct result total = { 0, 0, 0, 0 };
    for (int i = 0; i < writers + readers; i++) {
        struct result *r;
        pthread_join(t[i], (void **)&r);
        total.reads += r->reads;
        total.writes += r->writes;
        total.torn += r->torn;
        total.changes += r->changes;
        free(r);
    }
    /* Every thread has been joined: now, and only now, may the handle be closed. */
    if (shmem_close(&shm) == -1) {
        fprintf(stderr, "shmem_hammer_c: %s\n", shmem_error());
        return 1;
    }
    printf("reads=%lu writes=%lu torn=%lu changes=%lu\n", total.reads, total.writes, total.torn,
           total.changes);
    return failed || total.torn > 0;
}
