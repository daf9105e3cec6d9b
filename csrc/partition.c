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

static void count_task(void *ctx, int tid, int nthreads)
{
    partition_ctx *P = ctx;
    int64_t lo, hi;
    csf_slice(P->uids->n, tid, nthreads, &lo, &hi);
    int64_t *hist = P->cursor + (int64_t)tid * P->nparts;
    const char *p = P->uids->data + lo * P->uids->stride;
    for (int64_t r = lo; r < hi; r++, p += P->uids->stride) {
        hist[csf_partition_of(csf_load_u64(p), P->seed, P->bits)]++;
    }
}

static void scatter_task(void *ctx, int tid, int nthreads)
{
    partition_ctx *P = ctx;
    int64_t lo, hi;
    csf_slice(P->uids->n, tid, nthreads, &lo, &hi);
    int64_t *cur = P->cursor + (int64_t)tid * P->nparts;
    const char *p = P->uids->data + lo * P->uids->stride;
    for (int64_t r = lo; r < hi; r++, p += P->uids->stride) {
        uint64_t uid = csf_load_u64(p);
        /* Hashed again rather than kept: a few multiplications cost less
         * than a second array written and read back. */
        csf_record *rec = &P->out[cur[csf_partition_of(uid, P->seed, P->bits)]++];
        rec->uid = uid;
        rec->row = P->first_row + r;
    }
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
