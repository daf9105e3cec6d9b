#include "hash.h"

#include <stdlib.h>

#include "threads.h"

/* Partitions hold about this many build rows, so that a table of twice as
 * many 16-byte slots (512 KiB) stays in a 1-2 MiB L2 cache. */
#define PART_ROWS 16384
#define MAX_BITS 14
/* A row's partition is stored as a uint16_t (parts.pid). */
_Static_assert(MAX_BITS <= 16, "partition ids must fit uint16_t");
/* Keys are hashed and their slots prefetched CSF_PREFETCH_ROWS rows ahead;
 * the hashes wait in a ring indexed by k & (CSF_PREFETCH_ROWS - 1). */
#define PREFETCH CSF_PREFETCH_ROWS
_Static_assert((PREFETCH & (PREFETCH - 1)) == 0, "the prefetch ring needs a power of two");
#define GRAIN CSF_GRAIN_ROWS

/* The hash key. uids come from files anyone can write: with a public hash a
 * file could hold uids that all collide, and every probe would walk one long
 * cluster (quadratic time). With a secret random key no file can choose
 * its collisions. Set once per process by csf_hash_set_key, before any
 * kernel runs; these defaults only serve a caller that never sets one. */
static csf_hash_key hash_key = {
    0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL,
};

void csf_hash_set_key(const csf_hash_key *key)
{
    hash_key = *key;
}

/* murmur3's fmix64: every input bit flips about half the output bits. */
static inline uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The top 64 bits of (a * uid + b) mod 2**128, a and b the key's 128-bit
 * numbers, is strongly universal (Dietzfelbinger's multiply-add-shift): over
 * the random key, the hashes of two distinct uids are independent and
 * uniform, so any set of uids collides in any hash bits (table slots,
 * partitions) no more than random uids do. fmix64 then scatters what the
 * multiplication keeps of structure (uids in arithmetic progression map to
 * hashes in progression, which cluster in a linear-probing table). */
static inline uint64_t mix64(uint64_t x)
{
    unsigned __int128 add = ((unsigned __int128)hash_key.add_hi << 64) | hash_key.add_lo;
    unsigned __int128 t = (unsigned __int128)hash_key.mul_lo * x + add;
    return fmix64((uint64_t)(t >> 64) + hash_key.mul_hi * x);
}

int csf_hash(const csf_column *uids, uint64_t *out)
{
    const char *p = uids->data;
    for (int64_t r = 0; r < uids->n; r++, p += uids->stride) {
        out[r] = mix64(csf_load_u64(p));
    }
    return CSF_OK;
}

/* row1 = row + 1, so 0 marks an empty slot whatever the key. */
typedef struct {
    uint64_t key;
    int64_t row1;
} slot;
/* PART_ROWS is sized for 16-byte slots. */
_Static_assert(sizeof(slot) == 16, "a slot is a key and a row");

typedef struct {
    slot *s;
    uint64_t mask;
} table;

static int64_t pow2_at_least(int64_t n)
{
    int64_t size = 16;
    while (size < n) {
        size <<= 1;
    }
    return size;
}

/* A table with room for n keys at load <= 1/2; s may be reused if big enough. */
static int table_reset(table *t, int64_t n, int64_t *cap)
{
    int64_t size = pow2_at_least(2 * n);
    if (size > *cap) {
        free(t->s);
        t->s = malloc((size_t)size * sizeof(slot));
        if (t->s == NULL) {
            *cap = 0;
            return CSF_ENOMEM;
        }
        *cap = size;
    }
    memset(t->s, 0, (size_t)size * sizeof(slot));
    t->mask = (uint64_t)size - 1;
    return CSF_OK;
}

/* The table functions take the key's hash h = mix64(key) from the caller,
 * which may have computed it earlier (to prefetch the slot). */

/* Insert, a later row replacing an earlier one: the last occurrence wins. */
static inline void table_put_last(const table *t, uint64_t key, uint64_t h, int64_t row)
{
    uint64_t i = h & t->mask;
    while (t->s[i].row1 != 0 && t->s[i].key != key) {
        i = (i + 1) & t->mask;
    }
    t->s[i].key = key;
    t->s[i].row1 = row + 1;
}

/* Insert when absent; returns the row of the first occurrence. */
static inline int64_t table_put_first(const table *t, uint64_t key, uint64_t h, int64_t row)
{
    uint64_t i = h & t->mask;
    while (t->s[i].row1 != 0) {
        if (t->s[i].key == key) {
            return t->s[i].row1 - 1;
        }
        i = (i + 1) & t->mask;
    }
    t->s[i].key = key;
    t->s[i].row1 = row + 1;
    return row;
}

/* The row holding key, or -1. */
static inline int64_t table_get(const table *t, uint64_t key, uint64_t h)
{
    uint64_t i = h & t->mask;
    while (t->s[i].row1 != 0) {
        if (t->s[i].key == key) {
            return t->s[i].row1 - 1;
        }
        i = (i + 1) & t->mask;
    }
    return -1;
}

/* Hashing ahead: each key is hashed PREFETCH rows before it is probed, its
 * slot prefetched then, and its hash kept in a ring until its row comes.
 * The hash (two multiplications deep for the key, two more in fmix64) is
 * then off the path from one probe to the next, where a mispredicted probe
 * branch would expose its latency on every row; each key is hashed once. */
typedef struct {
    uint64_t h[PREFETCH];
} ahead;

/* Hashes (and prefetches) the first rows of a column. */
static inline void ahead_start(ahead *a, const table *t, const char *p, ptrdiff_t stride,
                               int64_t n)
{
    for (int64_t k = 0; k < n && k < PREFETCH; k++) {
        a->h[k] = mix64(csf_load_u64(p + k * stride));
        __builtin_prefetch(&t->s[a->h[k] & t->mask]);
    }
}

/* The hash of row k of n (p points at it), hashing and prefetching row
 * k + PREFETCH in its place. */
static inline uint64_t ahead_next(ahead *a, const table *t, const char *p, ptrdiff_t stride,
                                  int64_t k, int64_t n)
{
    uint64_t *slot = &a->h[k & (PREFETCH - 1)];
    uint64_t h = *slot;
    if (k + PREFETCH < n) {
        *slot = mix64(csf_load_u64(p + PREFETCH * stride));
        __builtin_prefetch(&t->s[*slot & t->mask]);
    }
    return h;
}

static int auto_bits(int64_t n, int bits)
{
    if (bits >= 0) {
        return bits > MAX_BITS ? MAX_BITS : bits;
    }
    bits = 0;
    while (bits < MAX_BITS && (n >> bits) > PART_ROWS) {
        bits++;
    }
    return bits;
}

/* ------------------------------------------------------------------ keys */

/* Several columns seen as one row space (the concatenation of inputs). */
typedef struct {
    const csf_column *cols;
    int ncols;
    int64_t n;
    int64_t *start; /* ncols + 1 global row offsets */
} keyset;

static int keyset_init(keyset *ks, const csf_column *cols, int ncols)
{
    ks->cols = cols;
    ks->ncols = ncols;
    ks->start = malloc(((size_t)ncols + 1) * sizeof(int64_t));
    if (ks->start == NULL) {
        return CSF_ENOMEM;
    }
    ks->start[0] = 0;
    for (int c = 0; c < ncols; c++) {
        ks->start[c + 1] = ks->start[c] + cols[c].n;
    }
    ks->n = ks->start[ncols];
    return CSF_OK;
}

/* Runs BODY with `row` (global) and `key` for every row of [LO, HI). */
#define FOR_KEYS(KS, LO, HI, BODY)                                                        \
    for (int c_ = 0; c_ < (KS)->ncols; c_++) {                                            \
        int64_t a_ = (KS)->start[c_] > (LO) ? (KS)->start[c_] : (LO);                     \
        int64_t b_ = (KS)->start[c_ + 1] < (HI) ? (KS)->start[c_ + 1] : (HI);              \
        const char *p_ = (KS)->cols[c_].data + (a_ - (KS)->start[c_]) * (KS)->cols[c_].stride; \
        for (int64_t row = a_; row < b_; row++, p_ += (KS)->cols[c_].stride) {             \
            uint64_t key = csf_load_u64(p_);                                              \
            BODY                                                                          \
        }                                                                                 \
    }

/* ------------------------------------------------------------ partitions */

/* The rows of a keyset regrouped by the top `bits` hash bits, each
 * partition keeping row order (so last/first occurrence is preserved). */
typedef struct {
    const keyset *ks;
    int bits;
    int nthreads;
    int64_t nparts;
    uint64_t *keys;  /* n keys, partition by partition */
    int64_t *rows;   /* their global rows, or NULL when not needed */
    uint16_t *pid;   /* partition of each global row: the scatter pass and
                      * unscatter read it instead of hashing each key again */
    int64_t *cursor; /* nthreads x nparts write positions */
    int64_t *base;   /* the same before scattering: where each thread's rows start */
    int64_t *start;  /* nparts + 1 partition offsets */
    uint64_t *tmp;   /* keys in row order when the input is strided, or NULL */
} parts;

static inline uint64_t part_of(uint64_t key, int bits)
{
    return mix64(key) >> (64 - bits);
}

/* Records each row's partition in pid and counts it in hist; copies the keys
 * to tmp when keep_keys (a constant at each call: two loops, no per-row
 * branch). */
static inline __attribute__((always_inline)) void
count_rows(const parts *P, int64_t lo, int64_t hi, int64_t *hist, int keep_keys)
{
    uint16_t *pid = P->pid;
    uint64_t *tmp = P->tmp;
    int bits = P->bits;
    FOR_KEYS(P->ks, lo, hi, {
        uint64_t p = part_of(key, bits);
        pid[row] = (uint16_t)p;
        if (keep_keys) {
            tmp[row] = key;
        }
        hist[p]++;
    })
}

static void parts_count(void *ctx, int tid, int nthreads)
{
    parts *P = ctx;
    int64_t lo, hi;
    csf_slice(P->ks->n, tid, nthreads, &lo, &hi);
    int64_t *hist = P->cursor + (int64_t)tid * P->nparts;
    if (P->tmp != NULL) {
        count_rows(P, lo, hi, hist, 1);
    } else {
        count_rows(P, lo, hi, hist, 0);
    }
}

static void parts_scatter(void *ctx, int tid, int nthreads)
{
    parts *P = ctx;
    int64_t lo, hi;
    csf_slice(P->ks->n, tid, nthreads, &lo, &hi);
    int64_t *cur = P->cursor + (int64_t)tid * P->nparts;
    uint64_t *keys = P->keys;
    int64_t *rows = P->rows;
    const uint16_t *pid = P->pid;
    if (P->tmp != NULL) {
        /* The strided input was read once, into tmp: scatter from there. */
        const uint64_t *tmp = P->tmp;
        for (int64_t row = lo; row < hi; row++) {
            int64_t j = cur[pid[row]]++;
            keys[j] = tmp[row];
            if (rows != NULL) {
                rows[j] = row;
            }
        }
    } else if (rows != NULL) {
        FOR_KEYS(P->ks, lo, hi, {
            int64_t j = cur[pid[row]]++;
            keys[j] = key;
            rows[j] = row;
        })
    } else {
        FOR_KEYS(P->ks, lo, hi, { keys[cur[pid[row]]++] = key; })
    }
}

static void parts_free(parts *P)
{
    free(P->keys);
    free(P->rows);
    free(P->pid);
    free(P->cursor);
    free(P->base);
    free(P->start);
    free(P->tmp);
}

/* scratch, when not NULL, has room for ks->n keys and is used for the
 * contiguous copy of a strided input: the caller's output array, written
 * only later, so that no fresh pages are faulted in for it. */
static int parts_build(parts *P, const keyset *ks, int bits, int nthreads, int want_rows,
                       uint64_t *scratch)
{
    memset(P, 0, sizeof *P);
    P->ks = ks;
    P->bits = bits;
    P->nthreads = nthreads;
    P->nparts = (int64_t)1 << bits;
    size_t n = (size_t)ks->n;
    size_t cells = (size_t)nthreads * (size_t)P->nparts;
    P->keys = csf_alloc(n, sizeof(uint64_t));
    P->rows = want_rows ? csf_alloc(n, sizeof(int64_t)) : NULL;
    P->pid = csf_alloc(n, sizeof(uint16_t));
    P->cursor = calloc(cells, sizeof(int64_t));
    P->base = malloc(cells * sizeof(int64_t));
    P->start = malloc(((size_t)P->nparts + 1) * sizeof(int64_t));
    /* A strided column costs a cache line per row to read: read it once,
     * keeping a contiguous copy for the scatter pass (if memory allows). */
    int strided = 0;
    for (int c = 0; c < ks->ncols; c++) {
        strided |= ks->cols[c].stride != (ptrdiff_t)sizeof(uint64_t);
    }
    P->tmp = !strided ? NULL : scratch != NULL ? scratch : csf_alloc(n, sizeof(uint64_t));
    if (P->keys == NULL || (want_rows && P->rows == NULL) || P->pid == NULL ||
        P->cursor == NULL || P->base == NULL || P->start == NULL) {
        if (P->tmp == scratch) {
            P->tmp = NULL;
        }
        parts_free(P);
        return CSF_ENOMEM;
    }
    csf_parallel(nthreads, parts_count, P);
    int64_t at = 0;
    for (int64_t p = 0; p < P->nparts; p++) {
        P->start[p] = at;
        for (int t = 0; t < nthreads; t++) {
            int64_t count = P->cursor[t * P->nparts + p];
            P->cursor[t * P->nparts + p] = at;
            at += count;
        }
    }
    P->start[P->nparts] = at;
    memcpy(P->base, P->cursor, cells * sizeof(int64_t));
    csf_parallel(nthreads, parts_scatter, P);
    if (P->tmp != scratch) {
        free(P->tmp);
    }
    P->tmp = NULL;
    return CSF_OK;
}

/* Rewrites a result computed in partition order (vals, one per partitioned
 * row) into global row order, reading each partition's values in sequence. */
typedef struct {
    const parts *P;
    const int64_t *vals;
    int64_t *out_rows;
    uint8_t *out_mask;
    int failed;
} unscatter;

static void unscatter_task(void *ctx, int tid, int nthreads)
{
    unscatter *U = ctx;
    const parts *P = U->P;
    int64_t lo, hi;
    csf_slice(P->ks->n, tid, nthreads, &lo, &hi);
    int64_t *cur = malloc((size_t)P->nparts * sizeof(int64_t));
    if (cur == NULL) {
        __atomic_store_n(&U->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    memcpy(cur, P->base + (int64_t)tid * P->nparts, (size_t)P->nparts * sizeof(int64_t));
    const uint16_t *pid = P->pid;
    const int64_t *vals = U->vals;
    if (U->out_rows != NULL && U->out_mask != NULL) {
        for (int64_t r = lo; r < hi; r++) {
            int64_t v = vals[cur[pid[r]]++];
            U->out_rows[r] = v;
            U->out_mask[r] = v >= 0;
        }
    } else if (U->out_rows != NULL) {
        for (int64_t r = lo; r < hi; r++) {
            U->out_rows[r] = vals[cur[pid[r]]++];
        }
    } else {
        for (int64_t r = lo; r < hi; r++) {
            U->out_mask[r] = vals[cur[pid[r]]++] >= 0;
        }
    }
    free(cur);
}

static int unscatter_run(const parts *P, const int64_t *vals, int64_t *out_rows,
                         uint8_t *out_mask, int nthreads)
{
    unscatter U = {P, vals, out_rows, out_mask, 0};
    csf_parallel(nthreads, unscatter_task, &U);
    return U.failed ? CSF_ENOMEM : CSF_OK;
}

/* ------------------------------------------------------- partition pass */

/* One pass over the partitions, the threads taking them in turn. With a
 * build side B (lookup), partition p of B fills a table that partition p of
 * Q probes: the result is the build row or -1. Without one (first
 * occurrence), Q's rows fill the table themselves: the result is the row
 * of the uid's first occurrence. Results overwrite Q's keys in place (each
 * after its key is read; the ring reads ahead): no second buffer. */
typedef struct {
    const parts *B; /* or NULL */
    parts *Q;
    int64_t next; /* next partition to take (atomic) */
    int failed;
} part_pass;

/* The probe loop of one partition; `first` a constant at each call below,
 * so each keeps a loop without a per-row branch. */
static inline __attribute__((always_inline)) void
part_probe(const table *t, const parts *Q, int64_t qa, int64_t qb, int first)
{
    int64_t *res = (int64_t *)Q->keys;
    const char *k8 = (const char *)(Q->keys + qa);
    ahead a;
    ahead_start(&a, t, k8, sizeof(uint64_t), qb - qa);
    for (int64_t k = 0; k < qb - qa; k++, k8 += sizeof(uint64_t)) {
        uint64_t h = ahead_next(&a, t, k8, sizeof(uint64_t), k, qb - qa);
        res[qa + k] = first ? table_put_first(t, Q->keys[qa + k], h, Q->rows[qa + k])
                            : table_get(t, Q->keys[qa + k], h);
    }
}

static void part_pass_task(void *ctx, int tid, int nthreads)
{
    (void)tid;
    (void)nthreads;
    part_pass *L = ctx;
    const parts *B = L->B;
    parts *Q = L->Q;
    table t = {NULL, 0};
    int64_t cap = 0;
    for (;;) {
        int64_t p = __atomic_fetch_add(&L->next, 1, __ATOMIC_RELAXED);
        if (p >= Q->nparts) {
            break;
        }
        int64_t qa = Q->start[p], qb = Q->start[p + 1];
        if (qa == qb) {
            continue;
        }
        int64_t ba = B != NULL ? B->start[p] : qa, bb = B != NULL ? B->start[p + 1] : qb;
        if (table_reset(&t, bb - ba, &cap) != CSF_OK) {
            __atomic_store_n(&L->failed, 1, __ATOMIC_RELAXED);
            break;
        }
        const table tt = t; /* a copy no store below can alias */
        if (B == NULL) {
            part_probe(&tt, Q, qa, qb, 1);
            continue;
        }
        const char *k8 = (const char *)(B->keys + ba);
        ahead a;
        ahead_start(&a, &tt, k8, sizeof(uint64_t), bb - ba);
        for (int64_t k = 0; k < bb - ba; k++, k8 += sizeof(uint64_t)) {
            uint64_t h = ahead_next(&a, &tt, k8, sizeof(uint64_t), k, bb - ba);
            table_put_last(&tt, B->keys[ba + k], h, B->rows[ba + k]);
        }
        part_probe(&tt, Q, qa, qb, 0);
    }
    free(t.s);
}

/* Runs the pass on `threads` threads. */
static int part_pass_run(const parts *B, parts *Q, int threads)
{
    part_pass L = {B, Q, 0, 0};
    csf_parallel(threads, part_pass_task, &L);
    return L.failed ? CSF_ENOMEM : CSF_OK;
}

/* ---------------------------------------------------------------- lookup */

typedef struct {
    const table *t;
    const keyset *probe;
    int64_t *out_rows;
    uint8_t *out_mask;
} lookup_direct;

static void lookup_direct_task(void *ctx, int tid, int nthreads)
{
    lookup_direct *L = ctx;
    const csf_column *c = &L->probe->cols[0];
    int64_t lo, hi;
    csf_slice(c->n, tid, nthreads, &lo, &hi);
    /* Local copies: a byte store to out_mask may alias anything reached
     * through a pointer, and would reload them on every row. */
    const table t = *L->t;
    const ptrdiff_t stride = c->stride;
    int64_t *out_rows = L->out_rows;
    uint8_t *out_mask = L->out_mask;
    const char *p = c->data + lo * stride;
    ahead a;
    ahead_start(&a, &t, p, stride, hi - lo);
    for (int64_t k = 0; k < hi - lo; k++, p += stride) {
        uint64_t h = ahead_next(&a, &t, p, stride, k, hi - lo);
        int64_t v = table_get(&t, csf_load_u64(p), h);
        if (out_rows != NULL) {
            out_rows[lo + k] = v;
        }
        if (out_mask != NULL) {
            out_mask[lo + k] = v >= 0;
        }
    }
}

/* One table over the whole build column, inserts and probes prefetched. */
static int lookup_one_table(const csf_column *build, const keyset *probe, int64_t *out_rows,
                            uint8_t *out_mask, int nthreads)
{
    table t = {NULL, 0};
    int64_t cap = 0;
    if (table_reset(&t, build->n, &cap) != CSF_OK) {
        return CSF_ENOMEM;
    }
    const char *p = build->data;
    ahead a;
    ahead_start(&a, &t, p, build->stride, build->n);
    for (int64_t r = 0; r < build->n; r++, p += build->stride) {
        uint64_t h = ahead_next(&a, &t, p, build->stride, r, build->n);
        table_put_last(&t, csf_load_u64(p), h, r);
    }
    lookup_direct L = {&t, probe, out_rows, out_mask};
    csf_parallel(csf_threads_for(nthreads, probe->n, GRAIN), lookup_direct_task, &L);
    free(t.s);
    return CSF_OK;
}

int csf_lookup(const csf_column *build, const csf_column *probe, int64_t *out_rows,
               uint8_t *out_mask, int nthreads, int bits)
{
    if (out_rows == NULL && out_mask == NULL) {
        return CSF_EINVAL; /* nothing to write: the partitioned path assumes an output */
    }
    keyset bk, qk;
    int status = keyset_init(&bk, build, 1);
    if (status != CSF_OK) {
        return status;
    }
    status = keyset_init(&qk, probe, 1);
    if (status != CSF_OK) {
        free(bk.start);
        return status;
    }
    bits = auto_bits(build->n, bits);
    if (probe->n == 0) {
        goto done;
    }
    if (build->n == 0) {
        for (int64_t r = 0; r < probe->n; r++) {
            if (out_rows != NULL) {
                out_rows[r] = -1;
            }
            if (out_mask != NULL) {
                out_mask[r] = 0;
            }
        }
        goto done;
    }
    if (bits == 0) {
        status = lookup_one_table(build, &qk, out_rows, out_mask, nthreads);
        goto done;
    }
    int threads = csf_threads_for(nthreads, build->n + probe->n, GRAIN);
    parts B, Q;
    status = parts_build(&B, &bk, bits, csf_threads_for(threads, build->n, GRAIN), 1, NULL);
    if (status != CSF_OK) {
        goto done;
    }
    status = parts_build(&Q, &qk, bits, csf_threads_for(threads, probe->n, GRAIN), 0,
                         (uint64_t *)out_rows);
    if (status != CSF_OK) {
        parts_free(&B);
        goto done;
    }
    status = part_pass_run(&B, &Q, threads);
    parts_free(&B);
    if (status == CSF_OK) {
        status = unscatter_run(&Q, (const int64_t *)Q.keys, out_rows, out_mask, Q.nthreads);
    }
    parts_free(&Q);
done:
    free(bk.start);
    free(qk.start);
    return status;
}

/* ------------------------------------------------------------------ join */

int csf_join(const csf_column *cols, int ncols, int64_t *const *out, int64_t *nout,
             int nthreads, int bits)
{
    if (ncols < 1) {
        return CSF_EINVAL;
    }
    int64_t n = cols[0].n;
    for (int64_t r = 0; r < n; r++) {
        out[0][r] = r;
    }
    if (ncols == 1 || n == 0) {
        *nout = n;
        return CSF_OK;
    }
    uint64_t *keys = ncols > 2 ? csf_alloc((size_t)n, sizeof(uint64_t)) : NULL;
    if (ncols > 2 && keys == NULL) {
        return CSF_ENOMEM;
    }
    /* The probe side starts as the first column itself and shrinks to the
     * uids still matched, gathered contiguously, after each input. Matches
     * land in out[k] directly and are compacted in place. */
    csf_column probe = cols[0];
    for (int k = 1; k < ncols; k++) {
        int64_t *match = out[k];
        int status = csf_lookup(&cols[k], &probe, match, NULL, nthreads, bits);
        if (status != CSF_OK) {
            free(keys);
            return status;
        }
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (match[i] >= 0) {
                for (int j = 0; j < k; j++) {
                    out[j][m] = out[j][i];
                }
                match[m] = match[i];
                m++;
            }
        }
        n = m;
        if (k + 1 < ncols) {
            for (int64_t i = 0; i < n; i++) {
                keys[i] = csf_load_u64(cols[0].data + out[0][i] * cols[0].stride);
            }
            probe = (csf_column){(const char *)keys, n, (ptrdiff_t)sizeof(uint64_t)};
        }
    }
    free(keys);
    *nout = n;
    return CSF_OK;
}

/* --------------------------------------------------------- first occurrence */

int csf_first_rows(const csf_column *cols, int ncols, int64_t *first, int nthreads, int bits)
{
    keyset ks;
    int status = keyset_init(&ks, cols, ncols);
    if (status != CSF_OK) {
        return status;
    }
    bits = auto_bits(ks.n, bits);
    if (bits == 0) {
        table t = {NULL, 0};
        int64_t cap = 0;
        status = table_reset(&t, ks.n, &cap);
        if (status == CSF_OK) {
            FOR_KEYS(&ks, 0, ks.n, { first[row] = table_put_first(&t, key, mix64(key), row); })
        }
        free(t.s);
        free(ks.start);
        return status;
    }
    int threads = csf_threads_for(nthreads, ks.n, GRAIN);
    parts A;
    status = parts_build(&A, &ks, bits, threads, 1, (uint64_t *)first);
    if (status == CSF_OK) {
        status = part_pass_run(NULL, &A, threads);
        if (status == CSF_OK) {
            status = unscatter_run(&A, (const int64_t *)A.keys, first, NULL, threads);
        }
        parts_free(&A);
    }
    free(ks.start);
    return status;
}

/* csf_first_rows into a fresh array (*first, to free), *n rows. */
static int first_rows_new(const csf_column *cols, int ncols, int64_t **first, int64_t *n,
                          int nthreads, int bits)
{
    *n = 0;
    for (int c = 0; c < ncols; c++) {
        *n += cols[c].n;
    }
    *first = csf_alloc((size_t)*n, sizeof(int64_t));
    if (*first == NULL) {
        return CSF_ENOMEM;
    }
    return csf_first_rows(cols, ncols, *first, nthreads, bits);
}

int csf_repeats(const csf_column *cols, int ncols, int64_t cap, int64_t *count,
                int64_t *rep_rows, int64_t *first_rows, int nthreads, int bits)
{
    int64_t n, *first;
    int status = first_rows_new(cols, ncols, &first, &n, nthreads, bits);
    if (status == CSF_OK) {
        int64_t m = 0;
        for (int64_t r = 0; r < n; r++) {
            if (first[r] != r) {
                if (m < cap) {
                    rep_rows[m] = r;
                    first_rows[m] = first[r];
                }
                m++;
            }
        }
        *count = m;
    }
    free(first);
    return status;
}

int csf_first_occurrence(const csf_column *cols, int ncols, uint8_t *mask, int nthreads,
                         int bits)
{
    int64_t n, *first;
    int status = first_rows_new(cols, ncols, &first, &n, nthreads, bits);
    if (status == CSF_OK) {
        for (int64_t r = 0; r < n; r++) {
            mask[r] = first[r] == r;
        }
    }
    free(first);
    return status;
}
