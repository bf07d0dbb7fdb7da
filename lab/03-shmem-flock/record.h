/* record.h: what the example server.c publishes and client.c reads (the contract between them).
 *
 * The same 96 bytes as ipclab's Rust Record (src/wire/shmem.rs), so that the C server can be
 * read by the Rust shmem_client and the Rust shmem_server by the C client:
 *
 *     [ magic | version | text_len | seq | time_ms | pid | reserved | text ........ ]
 *       0       4         6          8     16        24    28         32         96
 *
 * The wire format is little-endian; this struct is in the host's byte order, which is why
 * the header refuses to compile elsewhere (a big-endian port would swap every field).
 * Every field is naturally aligned, so the struct has no padding: sizeof is exactly 96.
 */
#ifndef IPCLAB_RECORD_H
#define IPCLAB_RECORD_H

#include <stdint.h>

#define RECORD_MAGIC "SHMR"  /* the first 4 bytes, no NUL */
#define RECORD_VERSION 1
#define RECORD_TEXT_MAX 64   /* the longest text, in bytes */

struct record {
    char magic[4];            /* RECORD_MAGIC */
    uint16_t version;         /* RECORD_VERSION */
    uint16_t text_len;        /* bytes of text used, at most RECORD_TEXT_MAX */
    uint64_t seq;             /* the server's update number, from 1 */
    uint64_t time_ms;         /* Unix time of the update, in milliseconds */
    uint32_t pid;             /* the server's pid */
    uint32_t reserved;        /* zero */
    char text[RECORD_TEXT_MAX]; /* text_len bytes of UTF-8, then zeros (no NUL if full) */
};

_Static_assert(sizeof(struct record) == 96, "struct record must be the 96-byte wire record");
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "struct record is the little-endian wire record: this host is not little-endian"
#endif

#endif /* IPCLAB_RECORD_H */
