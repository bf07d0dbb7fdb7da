/* shmem.h: the shmem library for C, one System V segment locked with flock (ipclab, seed 004).
 *
 * The seed's five calls, with the seed's names, implemented in Rust (src/shmem.rs, with the C
 * boundary in src/ffi/shmem.rs) and exported by the static library
 * target/{debug,release}/libipclab.a:
 *
 *     cc -Iinclude server.c target/debug/libipclab.a -lpthread -ldl -lm -o server_c
 *
 * A key file names the segment: shmem_open(fname, size) creates the file if it is missing,
 * and gets the segment keyed by ftok(fname, 'M'). Everybody who opens the same path reaches
 * the same segment, and takes turns through an flock on that same file:
 *
 *     shmem_read   flock(LOCK_SH), copy the whole segment out, unlock: readers run together
 *     shmem_write  flock(LOCK_EX), copy in at offset 0, unlock: nobody reads or writes meanwhile
 *     shmem_update flock(LOCK_EX), copy out, your fn changes the copy, copy back in, unlock
 *
 * Errors: every call that fails returns NULL or -1 with errno set, and shmem_error() returns
 * the message, which names the call and what failed, e.g.
 *     "shmem open /tmp/k: the segment of key 0x4d0113a2 has 96 bytes, not 64"   (EINVAL)
 *     "shmem_read: the handle is NULL (closed or deleted already, ...): Bad file descriptor"
 * The message lives in a buffer of the calling thread, like strerror's: it stays valid until
 * the same thread's next failing call, or until the thread ends. Copy it to keep it longer.
 * A call that succeeds leaves the message alone (and may change errno, as libc calls do).
 *
 * Who creates and who removes: the first shmem_open of a path creates the segment (zeroed,
 * mode 0600); when many open a new path at once, exactly one creates it (IPC_CREAT|IPC_EXCL)
 * and shmem_created() says which one you were. Nothing is removed by closing: the segment
 * outlives the programs that use it until somebody calls shmem_delete, as in the seed.
 *
 * Where the signatures differ from the seed, and why:
 *   - shmem_read returns int, not void *: the seed documents 0 and -1, and a void * cannot be
 *     -1 without a cast at every call. Its buffer must hold the whole segment (size >= the
 *     segment's size), as the seed says; a smaller one is EINVAL, never an overflow.
 *   - The pointers to data the library only reads are const: fname, and shmem_write's data.
 *   - shmem_close and shmem_delete take shmem_t ** (as in the seed) and set *shmem to NULL:
 *     a second close, or a read after close, finds NULL and fails with EBADF instead of using
 *     freed memory. A NULL shmem_t ** is EINVAL.
 *   - shmem_delete fails (ENOENT) if the segment was already deleted, by you or anyone: the
 *     kernel would "succeed" a second time while we are attached, and hide the mistake. If it
 *     fails, the handle stays open: shmem_close it.
 *   - shmem_open(fname, 0) opens an existing segment, whatever its size, and creates nothing
 *     (ENOENT if there is none), as shmget does without IPC_CREAT. With a size, an existing
 *     segment of another size is an error (EINVAL), not a surprise.
 *   - Threads: the seed calls them undefined, because it locks one file descriptor per
 *     process, and threads sharing one open file description share one flock. Here every
 *     read, write or update takes its own open file description, so threads sharing a handle
 *     exclude each other exactly as processes do. Only shmem_close and shmem_delete must wait
 *     until no other thread uses the handle (as with close(fd)).
 *   - fork: a child inherits the handle, but its descriptors are the parent's open file
 *     descriptions, so its locks would be the parent's. In the child every call on an
 *     inherited handle fails with EBADF, except shmem_close (which frees the child's copy and
 *     detaches it): call shmem_open in the child. After exec nothing is inherited.
 *   - shmem_update, shmem_size, shmem_created, shmem_deleted and shmem_error are beyond the
 *     seed.
 */
#ifndef IPCLAB_SHMEM_H
#define IPCLAB_SHMEM_H

#include <stddef.h>    /* size_t */
#include <sys/types.h> /* ssize_t */

#ifdef __cplusplus
extern "C" {
#endif

/* One opened segment. Opaque: reach it only through these calls. */
typedef struct shmem shmem_t;

/* Opens the segment of the key file fname (creating the file if it is missing), and creates a
 * zeroed memory_size-byte segment if there is none. memory_size 0: open an existing one only.
 * The handle, or NULL (errno EINVAL for a size mismatch, 0 or beyond the kernel's limits;
 * ENOENT, EACCES, ... for the file). */
shmem_t *shmem_open(const char *fname, size_t memory_size);

/* Detaches the segment and frees the handle; *shmem becomes NULL. The segment stays. 0 or -1. */
int shmem_close(shmem_t **shmem);

/* Copies the whole segment into data, under a shared lock. size is data's size, at least the
 * segment's (shmem_size). 0 or -1. */
int shmem_read(shmem_t **shmem, void *data, size_t size);

/* Copies size bytes from data to the start of the segment, under an exclusive lock. size must
 * be at most the segment's size; the bytes after them keep their values, as in the seed. 0 or
 * -1. */
int shmem_write(shmem_t **shmem, const void *data, size_t size);

/* Read-modify-write under one exclusive lock: fn(copy, size, arg) gets a copy of the whole
 * segment (size bytes) to change, and the copy is written back before the lock is released.
 * A shmem_read then a shmem_write would take the lock twice, and another writer could slip in
 * between (a lost update). fn runs while every other reader and writer waits, so keep it
 * short; it must return normally (no longjmp, no C++ exception), and must not call shmem_*
 * on the same segment (EDEADLK: it would wait for itself). 0 or -1. */
int shmem_update(shmem_t **shmem, void (*fn)(void *data, size_t size, void *arg), void *arg);

/* Removes the segment, then detaches and frees the handle; *shmem becomes NULL. Processes
 * still attached keep using the old memory until they detach; the next shmem_open of the
 * path makes a new, zeroed segment. 0 or -1 (the handle then stays open). */
int shmem_delete(shmem_t **shmem);

/* The segment's size in bytes, or -1. */
ssize_t shmem_size(shmem_t **shmem);

/* 1 if this handle's shmem_open created the segment, 0 if it opened an existing one; -1. */
int shmem_created(shmem_t **shmem);

/* 1 if somebody deleted the segment since this handle opened it (nobody new will see your
 * writes), 0 if not; -1. */
int shmem_deleted(shmem_t **shmem);

/* The message of this thread's last failed call ("" if none); see "Errors" above. */
const char *shmem_error(void);

#ifdef __cplusplus
}
#endif

#endif /* IPCLAB_SHMEM_H */
