#include "gather.h"

#include <stdlib.h>

#include "threads.h"

/* Interleaving works on blocks of rows this large so they stay in cache
 * while every column is written into them. */
#define PACK_BLOCK_BYTES (128 << 10)

/* Calls F(ARGS..., size), with size a compile-time constant for the common
 * field sizes, so that F's memcpy of size bytes (F inlined) becomes a few
 * unaligned loads and stores instead of a library call. F's loop sits
 * inside the switch: one dispatch per call, not per row. */
#define WITH_FIXED_SIZE(SIZE, F, ...)                  \
    switch (SIZE) {                                    \
    case 1: F(__VA_ARGS__, 1); break;                  \
    case 2: F(__VA_ARGS__, 2); break;                  \
    case 4: F(__VA_ARGS__, 4); break;                  \
    case 8: F(__VA_ARGS__, 8); break;                  \
    case 12: F(__VA_ARGS__, 12); break;                \
    case 16: F(__VA_ARGS__, 16); break;                \
    case 24: F(__VA_ARGS__, 24); break;                \
    case 32: F(__VA_ARGS__, 32); break;                \
    default: F(__VA_ARGS__, (size_t)(SIZE)); break;    \
    }

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void copy_rows_sized(const char *src, ptrdiff_t ss, char *dst, ptrdiff_t ds,
                                   int64_t count, size_t size)
{
    for (int64_t i = 0; i < count; i++) {
        memcpy(dst + i * ds, src + i * ss, size);
    }
}

/* Copies count rows of `size` bytes. */
static void copy_rows(const char *src, ptrdiff_t ss, char *dst, ptrdiff_t ds, int64_t count,
                      int64_t size)
{
    if (ss == size && ds == size) {
        memcpy(dst, src, (size_t)(count * size));
        return;
    }
    WITH_FIXED_SIZE(size, copy_rows_sized, src, ss, dst, ds, count)
}

/* Element-wise copy into wider (or narrower) elements, zero-padded. */
static void copy_rows_resized(const char *src, ptrdiff_t ss, char *dst, ptrdiff_t ds,
                              int64_t count, int64_t nelem, int64_t el, int64_t out_el)
{
    int64_t keep = el < out_el ? el : out_el;
    for (int64_t i = 0; i < count; i++) {
        const char *s = src + i * ss;
        char *d = dst + i * ds;
        for (int64_t e = 0; e < nelem; e++) {
            memcpy(d + e * out_el, s + e * el, (size_t)keep);
            memset(d + e * out_el + keep, 0, (size_t)(out_el - keep));
        }
    }
}

/* Indexed copies of rows [lo, hi), prefetching the row to come (gathers
 * from a shuffled join index miss the cache on every row); size is the row
 * size when out_el == src_el. */
ALWAYS_INLINE int gather_rows(const csf_gather_args *g, int64_t lo, int64_t hi, int prefetch,
                              size_t size)
{
    for (int64_t i = lo; i < hi; i++) {
        if (prefetch && i + CSF_PREFETCH_ROWS < hi) {
            int64_t ahead =
                (int64_t)csf_load_u64(g->index + (i + CSF_PREFETCH_ROWS) * g->index_stride);
            if ((uint64_t)ahead < (uint64_t)g->src_n) {
                __builtin_prefetch(g->src + ahead * g->src_stride);
            }
        }
        int64_t r = (int64_t)csf_load_u64(g->index + i * g->index_stride);
        if ((uint64_t)r >= (uint64_t)g->src_n) {
            r += g->src_n;
            if ((uint64_t)r >= (uint64_t)g->src_n) {
                return CSF_EINDEX;
            }
        }
        const char *s = g->src + r * g->src_stride;
        char *d = g->out + i * g->out_stride;
        if (g->out_el == g->src_el) {
            memcpy(d, s, size);
        } else {
            copy_rows_resized(s, 0, d, 0, 1, g->nelem, g->src_el, g->out_el);
        }
    }
    return CSF_OK;
}

static int gather_range(const csf_gather_args *g, int64_t lo, int64_t hi, int prefetch)
{
    int64_t size = g->nelem * g->src_el;
    if (g->index == NULL) {
        const char *s = g->src + lo * g->src_stride;
        char *d = g->out + lo * g->out_stride;
        if (g->out_el == g->src_el) {
            copy_rows(s, g->src_stride, d, g->out_stride, hi - lo, size);
        } else {
            copy_rows_resized(s, g->src_stride, d, g->out_stride, hi - lo, g->nelem, g->src_el,
                              g->out_el);
        }
        return CSF_OK;
    }
    int status = CSF_OK;
    WITH_FIXED_SIZE(g->out_el == g->src_el ? size : -1, status = gather_rows, g, lo, hi,
                    prefetch)
    return status;
}

typedef struct {
    const csf_gather_args *g;
    int failed;
} gather_job;

static void gather_task(void *ctx, int tid, int nthreads)
{
    gather_job *job = ctx;
    int64_t lo, hi;
    csf_slice(job->g->n, tid, nthreads, &lo, &hi);
    if (gather_range(job->g, lo, hi, 1) != CSF_OK) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    }
}

int csf_gather(const csf_gather_args *g, int nthreads)
{
    if (g->n <= 0) {
        return CSF_OK;
    }
    if (g->nelem < 0 || (g->index == NULL && g->n > g->src_n)) {
        return CSF_EINVAL;
    }
    int64_t bytes = g->n * g->nelem * g->out_el;
    gather_job job = {g, 0};
    csf_parallel(csf_threads_for(nthreads, bytes, CSF_GRAIN_BYTES), gather_task, &job);
    return job.failed ? CSF_EINDEX : CSF_OK;
}

/* Rows an in-order multi-column gather handles at a time: the source rows
 * of a block (a few hundred bytes each) stay in L2 while every column is
 * copied. */
#ifndef MANY_BLOCK
#define MANY_BLOCK 256
#endif

typedef struct {
    const csf_gather_args *g;
    int ncols;
    int64_t span_lo; /* source row bytes [span_lo, span_hi) relative to g[0].src */
    int64_t span_hi;
    int prefetch_rows; /* whether the columns share one row layout */
    int failed;
} many_job;

/* One output row at a time, every column: the source row (a few cache
 * lines) is fetched once, prefetched ROW_AHEAD rows early (nearer than
 * CSF_PREFETCH_ROWS: each row prefetches several lines, and a core can
 * only have so many misses in flight). */
#define ROW_AHEAD 8

static int many_rows(const many_job *job, int64_t lo, int64_t hi)
{
    const csf_gather_args *g = job->g;
    const char *index = g[0].index;
    ptrdiff_t istride = g[0].index_stride, ss = g[0].src_stride;
    int64_t src_n = g[0].src_n;
    for (int64_t i = lo; i < hi; i++) {
        if (i + ROW_AHEAD < hi) {
            int64_t ahead = (int64_t)csf_load_u64(index + (i + ROW_AHEAD) * istride);
            if ((uint64_t)ahead < (uint64_t)src_n) {
                const char *row = g[0].src + ahead * ss;
                for (int64_t off = job->span_lo; off < job->span_hi; off += 64) {
                    __builtin_prefetch(row + off);
                }
                __builtin_prefetch(row + job->span_hi - 1);
            }
        }
        int64_t r = (int64_t)csf_load_u64(index + i * istride);
        if ((uint64_t)r >= (uint64_t)src_n) {
            r += src_n;
            if ((uint64_t)r >= (uint64_t)src_n) {
                return CSF_EINDEX;
            }
        }
        int64_t at = r * ss;
        for (int j = 0; j < job->ncols; j++) {
            const csf_gather_args *c = &g[j];
            const char *s = c->src + at;
            char *d = c->out + i * c->out_stride;
            if (c->out_el != c->src_el) {
                copy_rows_resized(s, 0, d, 0, 1, c->nelem, c->src_el, c->out_el);
                continue;
            }
            WITH_FIXED_SIZE(c->nelem * c->src_el, memcpy, d, s)
        }
    }
    return CSF_OK;
}

static void many_task(void *ctx, int tid, int nthreads)
{
    many_job *job = ctx;
    const csf_gather_args *g = job->g;
    int64_t lo, hi;
    csf_slice(g[0].n, tid, nthreads, &lo, &hi);
    int status = CSF_OK;
    if (!job->prefetch_rows) {
        /* Separate arrays share no cache lines: a column at a time, each
         * with its own prefetching (or one memcpy when contiguous). */
        for (int j = 0; j < job->ncols && status == CSF_OK; j++) {
            status = gather_range(&g[j], lo, hi, 1);
        }
    } else if (g[0].index != NULL) {
        status = many_rows(job, lo, hi);
    } else {
        /* Rows of one table in order: a block of rows stays in cache while
         * every column takes its field from it. */
        for (int64_t a = lo; a < hi && status == CSF_OK; a += MANY_BLOCK) {
            int64_t b = a + MANY_BLOCK < hi ? a + MANY_BLOCK : hi;
            for (int j = 0; j < job->ncols && status == CSF_OK; j++) {
                status = gather_range(&g[j], a, b, 0);
            }
        }
    }
    if (status != CSF_OK) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
    }
}

int csf_gather_many(const csf_gather_args *g, int ncols, int nthreads)
{
    if (ncols <= 0 || g[0].n <= 0) {
        return CSF_OK;
    }
    int64_t bytes = 0;
    int same_rows = 1;
    int64_t span_lo = 0, span_hi = 0;
    for (int j = 0; j < ncols; j++) {
        if (g[j].n != g[0].n || g[j].index != g[0].index ||
            g[j].index_stride != g[0].index_stride ||
            g[j].nelem < 0 || (g[j].index == NULL && g[j].n > g[j].src_n)) {
            return CSF_EINVAL;
        }
        bytes += g[j].n * g[j].nelem * g[j].out_el;
        int64_t lo = g[j].src - g[0].src;
        int64_t hi = lo + g[j].nelem * g[j].src_el;
        if (g[j].src_stride != g[0].src_stride || g[j].src_n != g[0].src_n) {
            same_rows = 0;
        }
        span_lo = lo < span_lo ? lo : span_lo;
        span_hi = hi > span_hi ? hi : span_hi;
    }
    /* Fields of one record array lie within one row's stride of each other. */
    int prefetch_rows = same_rows && span_hi - span_lo <= (g[0].src_stride > 0 ? g[0].src_stride : 0)
                        && span_hi - span_lo <= 4096;
    many_job job = {g, ncols, span_lo, span_hi, prefetch_rows, 0};
    csf_parallel(csf_threads_for(nthreads, bytes, CSF_GRAIN_BYTES), many_task, &job);
    return job.failed ? CSF_EINDEX : CSF_OK;
}

/* ------------------------------------------------------------------ pack */

typedef struct {
    const csf_pack_column *cols;
    int ncols;
    int64_t n;
    char *out;
    ptrdiff_t row_stride;
    int64_t block;
} pack_job;

static void pack_task(void *ctx, int tid, int nthreads)
{
    pack_job *job = ctx;
    int64_t nblocks = (job->n + job->block - 1) / job->block;
    int64_t blo, bhi;
    csf_slice(nblocks, tid, nthreads, &blo, &bhi);
    for (int64_t b = blo; b < bhi; b++) {
        int64_t lo = b * job->block;
        int64_t count = job->n - lo < job->block ? job->n - lo : job->block;
        char *rows = job->out + lo * job->row_stride;
        for (int j = 0; j < job->ncols; j++) {
            const csf_pack_column *c = &job->cols[j];
            const char *src = c->data + lo * c->stride;
            char *dst = rows + c->offset;
            int64_t used = c->nelem * c->out_el;
            if (c->el == c->out_el) {
                copy_rows(src, c->stride, dst, job->row_stride, count, used);
            } else {
                copy_rows_resized(src, c->stride, dst, job->row_stride, count, c->nelem, c->el,
                                  c->out_el);
            }
            if (c->width > used) {
                for (int64_t i = 0; i < count; i++) {
                    memset(dst + i * job->row_stride + used, 0, (size_t)(c->width - used));
                }
            }
        }
    }
}

/* A column copied byte for byte into exactly its width. */
static int plain(const csf_pack_column *c)
{
    return c->el == c->out_el && c->nelem * c->el == c->width;
}

int csf_pack(const csf_pack_column *cols, int ncols, int64_t n, char *out, ptrdiff_t row_stride,
             int nthreads)
{
    if (n <= 0) {
        return CSF_OK;
    }
    for (int j = 0; j < ncols; j++) {
        if (cols[j].nelem * cols[j].out_el > cols[j].width || cols[j].offset < 0) {
            return CSF_EINVAL;
        }
    }
    /* Neighbouring fields of one source record that stay neighbours in the
     * output (saving a mapped table) merge into one wider copy: a row then
     * costs one memcpy, not one per field. */
    csf_pack_column *runs = malloc(((size_t)ncols + 1) * sizeof(csf_pack_column));
    if (runs == NULL) {
        return CSF_ENOMEM;
    }
    int nruns = 0;
    for (int j = 0; j < ncols; j++) {
        const csf_pack_column *c = &cols[j];
        csf_pack_column *last = nruns > 0 ? &runs[nruns - 1] : NULL;
        if (last != NULL && plain(last) && plain(c) && c->stride == last->stride &&
            c->data == last->data + last->width && c->offset == last->offset + last->width) {
            last->width += c->width;
            last->el = last->out_el = last->width;
            last->nelem = 1;
            continue;
        }
        runs[nruns++] = *c;
    }
    int64_t row_bytes = row_stride > 0 ? row_stride : 1;
    int64_t block = PACK_BLOCK_BYTES / row_bytes;
    pack_job job = {runs, nruns, n, out, row_stride, block > 0 ? block : 1};
    csf_parallel(csf_threads_for(nthreads, n * row_bytes, CSF_GRAIN_BYTES), pack_task, &job);
    free(runs);
    return CSF_OK;
}
