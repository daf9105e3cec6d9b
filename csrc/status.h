#ifndef CSFAST_STATUS_H
#define CSFAST_STATUS_H

/* What the kernels need beyond C11:
 * - GNU C builtins and attributes (GCC and Clang have them):
 *   __builtin_prefetch (hash probes, indexed gathers), __atomic_* (the
 *   partition counter and failure flags shared by worker threads),
 *   unsigned __int128 (the keyed hash) and always_inline (hash.c,
 *   partition.c);
 * - POSIX threads (threads.c), and mmap/mprotect/fstat (filemap.c);
 * - _GNU_SOURCE (meson.build), only so that -std=c11 still declares the
 *   POSIX functions above and sysconf(_SC_NPROCESSORS_ONLN) (threads.c).
 * lz4block.c needs none of these: plain C11. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Status codes every kernel returns; the Cython layer maps them to exceptions. */
enum {
    CSF_OK = 0,
    CSF_ENOMEM = 1,  /* a scratch allocation failed */
    CSF_EINDEX = 2,  /* a row index out of range */
    CSF_EINVAL = 3,  /* inconsistent arguments */
    CSF_ESYS = 4,    /* a system call failed; the function's err argument holds errno */
    CSF_ESHORT = 5,  /* a file is shorter than the bytes asked for */
};

/* A strided 1-D column of fixed-size items; data need not be aligned. */
typedef struct {
    const char *data;
    int64_t n;
    ptrdiff_t stride;
} csf_column;

/* Unaligned loads: mapped .cs columns sit at any byte offset. */
static inline uint64_t csf_load_u64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* How many rows ahead a kernel hashes or looks up a row and prefetches
 * the memory it will touch: far enough to hide a cache miss (~100 ns) behind
 * the work on the rows between. */
#define CSF_PREFETCH_ROWS 16

/* malloc for n items of size bytes, NULL on failure or overflow. The 8
 * spare bytes make a zero-row request (malloc(0) may return NULL) succeed,
 * so that NULL always means out of memory. */
static inline void *csf_alloc(size_t n, size_t size)
{
    if (size != 0 && n > (SIZE_MAX - 8) / size) {
        return NULL;
    }
    return malloc(n * size + 8);
}

#endif
