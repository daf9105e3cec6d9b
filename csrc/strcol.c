#include "strcol.h"

#include "threads.h"

typedef struct {
    const char *data;
    int64_t src_n;
    const char *index;
    ptrdiff_t index_stride;
    int64_t n;
    ptrdiff_t stride;
    int64_t nelem;
    int64_t el;
    int unit;
    int64_t best[CSF_MAX_THREADS]; /* one per thread */
    int failed[CSF_MAX_THREADS];
} maxlen_job;

/* Only the units past the longest value so far need looking at, and most
 * of them are zero padding: a row usually costs a few word compares. */
static int64_t longest(const char *p, int64_t el, int unit, int64_t best)
{
    int64_t units = el / unit;
    for (int64_t u = units - 1; u >= best; u--) {
        const char *q = p + u * unit;
        int nonzero = unit == 1 ? q[0] != 0 : (q[0] | q[1] | q[2] | q[3]) != 0;
        if (nonzero) {
            return u + 1;
        }
    }
    return best;
}

static void maxlen_task(void *ctx, int tid, int nthreads)
{
    maxlen_job *job = ctx;
    int64_t lo, hi, best = 0;
    csf_slice(job->n, tid, nthreads, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        int64_t r = i;
        if (job->index != NULL) {
            r = (int64_t)csf_load_u64(job->index + i * job->index_stride);
            if ((uint64_t)r >= (uint64_t)job->src_n) {
                r += job->src_n;
                if ((uint64_t)r >= (uint64_t)job->src_n) {
                    job->failed[tid] = 1;
                    return;
                }
            }
        }
        const char *row = job->data + r * job->stride;
        for (int64_t e = 0; e < job->nelem; e++) {
            best = longest(row + e * job->el, job->el, job->unit, best);
        }
    }
    job->best[tid] = best;
}

int csf_str_maxlen(const char *data, int64_t src_n, ptrdiff_t stride, int64_t nelem, int64_t el,
                   int unit, const char *index, ptrdiff_t index_stride, int64_t n, int64_t *out,
                   int nthreads)
{
    if (unit != 1 && unit != 4) {
        return CSF_EINVAL;
    }
    maxlen_job job = {data, src_n, index, index_stride, n, stride, nelem, el, unit, {0}, {0}};
    int threads = csf_threads_for(nthreads, n * nelem * el, CSF_GRAIN_BYTES);
    threads = threads > CSF_MAX_THREADS ? CSF_MAX_THREADS : threads;
    csf_parallel(threads, maxlen_task, &job);
    int64_t best = 0;
    for (int t = 0; t < threads; t++) {
        if (job.failed[t]) {
            return CSF_EINDEX;
        }
        best = job.best[t] > best ? job.best[t] : best;
    }
    *out = best;
    return CSF_OK;
}
