#ifndef CSFAST_THREADS_H
#define CSFAST_THREADS_H

#include <stdint.h>

/* The most threads csf_parallel starts (it keeps their handles on the
 * stack); CSFAST_NUM_THREADS above this is ignored. */
#define CSF_MAX_THREADS 1024

/* Work a thread should get at least (csf_threads_for's grain): starting a
 * thread costs tens of microseconds, about the time to hash this many rows
 * or copy this many bytes. */
#define CSF_GRAIN_ROWS 65536
#define CSF_GRAIN_BYTES (1 << 20)

/* Number of worker threads the kernels use: CSFAST_NUM_THREADS when set to a
 * positive integer, else the number of online cores. */
int csf_default_threads(void);

/* One piece of parallel work: called once per tid in [0, nthreads). */
typedef void (*csf_task)(void *ctx, int tid, int nthreads);

/* Run task(ctx, tid, nthreads) for every tid, tid 0 on the calling thread,
 * and wait for all. A thread that cannot be started has its share run on
 * the calling thread, so the work is always done. */
void csf_parallel(int nthreads, csf_task task, void *ctx);

/* Threads worth using for `work` units when one thread should get at least
 * `grain` of them (thread start-up costs tens of microseconds). */
int csf_threads_for(int nthreads, long long work, long long grain);

/* [lo, hi) of the tid-th of nthreads near-equal slices of [0, n). */
static inline void csf_slice(int64_t n, int tid, int nthreads, int64_t *lo, int64_t *hi)
{
    *lo = n * tid / nthreads;
    *hi = n * (tid + 1) / nthreads;
}

#endif
