#include "partition.h"

#include <stdlib.h>

#include "threads.h"

/* Each thread counts its slice of rows per partition, then writes them from
 * its own start in each partition (after the earlier threads' rows): the
 * output keeps row order within a partition without a sort. */
typedef struct {
    const csf_column *uids;
    int64_t first_row;
    uint64_t seed;
    int bits;
    int64_t nparts;
    csf_record *out;
    int64_t *cursor; /* nthreads x nparts */
} partition_ctx;

/* One pass over a thread's slice of rows: count each row in its partition,
 * or (scatter, a constant at each call: two loops, no per-row branch) write
 * its record at its partition's cursor. The scatter pass hashes each uid
 * again: a few multiplications cost less than a partition array written
 * and read back. */
static inline __attribute__((always_inline)) void
partition_pass(const partition_ctx *P, int tid, int nthreads, int scatter)
{
    int64_t lo, hi;
    csf_slice(P->uids->n, tid, nthreads, &lo, &hi);
    int64_t *cur = P->cursor + (int64_t)tid * P->nparts;
    const char *p = P->uids->data + lo * P->uids->stride;
    for (int64_t r = lo; r < hi; r++, p += P->uids->stride) {
        uint64_t uid = csf_load_u64(p);
        int64_t *at = &cur[csf_partition_of(uid, P->seed, P->bits)];
        if (scatter) {
            P->out[*at] = (csf_record){uid, P->first_row + r};
        }
        (*at)++;
    }
}

static void count_task(void *ctx, int tid, int nthreads)
{
    partition_pass(ctx, tid, nthreads, 0);
}

static void scatter_task(void *ctx, int tid, int nthreads)
{
    partition_pass(ctx, tid, nthreads, 1);
}

int csf_partition(const csf_column *uids, int64_t first_row, uint64_t seed, int bits,
                  csf_record *out, int64_t *counts, int nthreads)
{
    if (bits < 1 || bits > 16) {
        return CSF_EINVAL;
    }
    int64_t nparts = (int64_t)1 << bits;
    int threads = csf_threads_for(nthreads, uids->n, CSF_GRAIN_ROWS);
    partition_ctx P = {uids, first_row, seed, bits, nparts, out, NULL};
    P.cursor = calloc((size_t)threads * (size_t)nparts, sizeof(int64_t));
    if (P.cursor == NULL) {
        return CSF_ENOMEM;
    }
    csf_parallel(threads, count_task, &P);
    int64_t at = 0;
    for (int64_t p = 0; p < nparts; p++) {
        int64_t start = at;
        for (int t = 0; t < threads; t++) {
            int64_t n = P.cursor[t * nparts + p];
            P.cursor[t * nparts + p] = at;
            at += n;
        }
        counts[p] = at - start;
    }
    csf_parallel(threads, scatter_task, &P);
    free(P.cursor);
    return CSF_OK;
}
