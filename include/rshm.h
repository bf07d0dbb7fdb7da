/* rshm.h: the RSHM API for C, shared memory across nodes (ipclab, seed 000).
 *
 * The seed's five calls, with the seed's names, implemented in Rust (src/rshm/api.rs) and
 * exported by the static library target/{debug,release}/libipclab.a:
 *
 *     cc -Iinclude client.c target/debug/libipclab.a -lpthread -ldl -lm -o client_c
 *
 * Every call talks to the rshm_server of this machine's node, chosen by the environment
 * variable RSHM_PORT (default 7070; a value that is not a port 1-65535 is EINVAL). Errors
 * are reported as in System V: -1 (or (void *)-1 for rshmat) with errno set; rshm_error()
 * returns the message, which names what failed
 * (e.g. "rshmChanged: peer 127.0.0.1:7002 did not acknowledge within 2000 ms").
 *
 * Where the signatures differ from the seed, and why:
 *   - rshmat returns the address (void *) instead of void. The seed has the *server* call
 *     shmat and hand back its address, but an address only means something in the process
 *     that attached: the server's 0x7f...000 is nothing, or something else, in yours. So the
 *     server returns its local replica's shmid and rshmat calls shmat in *your* process.
 *     addr must be NULL (the kernel chooses where to map), as with shmat(id, NULL, 0).
 *   - rshmChanged returns int (0, or -1 if a peer did not acknowledge in time) instead of
 *     void: a write that did not reach every node must not pass silently.
 *   - rshmget(key, 0) opens an existing segment only (ENOENT if the group has none), as
 *     shmget does without IPC_CREAT; with size > 0 it creates the segment if needed.
 *   - rshmChanged_range, rshm_wait_changed and rshm_error are beyond the seed.
 *
 * Errors and rshm_error(). Every call may be made from any thread, from an atexit handler
 * and from a thread-exit destructor (pthread_key_create): none of them aborts or unwinds
 * into your program; an internal bug is reported as -1 with errno EIO. rshm_error() is like
 * strerror(): the string belongs to the library, in a fixed buffer of the calling thread
 * (256 bytes, longer messages are cut). It stays valid, and unchanged, until the same
 * thread's next *failing* rshm call (a successful call leaves it alone), and until the
 * thread ends; after that, copy it if you need it. Another thread's failures never touch it.
 *
 * Signals and timers. To sleep in msgrcv until a reply or a deadline, the library installs,
 * on first use, a do-nothing handler for SIGRTMAX-1 (without SA_RESTART) and creates, during
 * each wait, a POSIX timer (timer_create, CLOCK_MONOTONIC, SIGEV_THREAD_ID) that sends that
 * signal to the waiting thread; the timer is deleted before the call returns. The signal
 * goes only to the thread waiting inside the library; your other threads never get it. One
 * already on its way when the wait ends can still arrive just after the call returns, so the
 * next blocking call of that thread (read, sleep...) may fail once with EINTR: retry on
 * EINTR, as usual. If your program has its own handler for SIGRTMAX-1, or blocks it in the
 * calling thread, the library leaves it alone and polls instead (slower, never wrong).
 *
 * fork(). A child inherits its parent's attachments as mappings, not as attachments of its
 * own: in the child, rshmdt of an address the parent attached fails with EINVAL (the count
 * belongs to the parent, which still holds it), and the mapping stays readable until the
 * child exits or execs. The child may call every rshm function for itself (rshmget, its own
 * rshmat/rshmdt, rshmChanged, rshm_wait_changed, rshmctl); its first call forgets the
 * parent's attachment table and this thread's record of changes seen (the child's first
 * wait counts from nothing seen, as a new thread's does). The library's own lock is
 * released in the child (pthread_atfork), even if another thread of the parent was inside
 * a call at the fork. POSIX still limits a child of a *threaded* parent to async-signal-safe
 * functions; the rshm calls allocate memory, which glibc makes safe after fork, but do not
 * call them in a child while another parent thread may have held a lock of your own.
 */
#ifndef IPCLAB_RSHM_H
#define IPCLAB_RSHM_H

#include <stddef.h>
#include <sys/ipc.h> /* key_t, IPC_RMID */

#ifdef __cplusplus
extern "C" {
#endif

/* The rshmid of the segment with this key anywhere in the group (> 0); if none, this node
 * creates it with `size` bytes and becomes its owner. -1 on error. */
int rshmget(key_t key, size_t size);

/* Attaches the segment in the calling process; counted on every node. Returns its address
 * here, or (void *)-1. addr must be NULL. */
void *rshmat(int rshmid, const void *addr);

/* Detaches what rshmat returned; counted down on every node. 0 or -1. */
int rshmdt(int rshmid, void *addr);

/* cmd must be IPC_RMID: marks the segment (the request goes to its owner node); it is
 * destroyed on every node when the cluster-wide attach count reaches zero. 0 or -1. */
int rshmctl(int rshmid, int cmd);

/* Sends this node's contents of the segment to every other node, and returns once every
 * connected node has applied them: a read on another node after this returns sees them.
 * 0, or -1 (errno ETIMEDOUT) naming the peer(s) that did not acknowledge. */
int rshmChanged(int rshmid);

/* As rshmChanged, for the bytes [offset, offset + len) only (rounded out to 8-byte words):
 * the server compares and sends just that range, so the call costs what the range holds,
 * not what the segment holds (a 1-byte change in 1 GiB costs about what it costs in 4 KiB).
 * Bytes you wrote *outside* the range are not looked at: they stay unpublished (the other
 * nodes keep the old bytes) until a later rshmChanged, or a rshmChanged_range covering them.
 * 0, or -1: EINVAL (rshm_error() says which) if len is 0, if offset + len is past the end of
 * the segment, or if it overflows; ETIMEDOUT as for rshmChanged. */
int rshmChanged_range(int rshmid, size_t offset, size_t len);

/* Waits up to timeout_ms for the segment to change on this node (since this thread last saw
 * it), asleep on the segment's change gate, a semaphore. 1 changed, 0 timed out, -1 error
 * (EIDRM: removed). As with poll(): timeout_ms 0 returns at once, and a negative timeout_ms
 * waits for ever (a server that dies meanwhile still ends the wait, with -1, within about a
 * minute). */
int rshm_wait_changed(int rshmid, int timeout_ms);

/* The message of this thread's last failed call ("" if none): valid until this thread's
 * next failing call or its end (see "Errors and rshm_error()" above). */
const char *rshm_error(void);

#ifdef __cplusplus
}
#endif

#endif /* IPCLAB_RSHM_H */
