#ifndef CSFAST_HASH_H
#define CSFAST_HASH_H

/* Hash kernels on 64-bit uids: lookup, membership, multi-way inner join,
 * first occurrences and repeats.
 *
 * Every uid value (0 and 2**64-1 included) is a valid key: an empty table
 * slot is marked by its row field, never by a key value. Large inputs are
 * radix-partitioned by hash bits so that each partition's table stays in
 * the L2 cache. `bits` picks the number of partitions (2**bits): -1 chooses
 * from the input size, 0 uses one table with prefetched probes.
 *
 * The hash is keyed (see csf_hash_set_key): uids come from files anyone can
 * write, and without the key no file can choose uids that collide. Results
 * never depend on the key, only the time taken does. */

#include "status.h"

/* Two 128-bit numbers, a = mul_hi:mul_lo and b = add_hi:add_lo, drawn at
 * random: the hash of a uid is fmix64(top 64 bits of (a * uid + b)). */
typedef struct {
    uint64_t mul_lo, mul_hi, add_lo, add_hi;
} csf_hash_key;

/* Use key from now on. Call it once, before any kernel runs (kernels read
 * the key without locking); every process should pick its own random key. */
void csf_hash_set_key(const csf_hash_key *key);

/* out[r] = the keyed hash of uid r, as every kernel below computes it (for
 * tests and debugging). */
int csf_hash(const csf_column *uids, uint64_t *out);

/* For each probe row, the last build row holding its uid (out_rows, -1 when
 * none) and/or whether there is one (out_mask); either output may be NULL. */
int csf_lookup(const csf_column *build, const csf_column *probe, int64_t *out_rows,
               uint8_t *out_mask, int nthreads, int bits);

/* Multi-way inner join: out[0] lists the rows of cols[0] whose uid is in
 * every other column (in order, duplicates kept); out[k] the last row of
 * cols[k] holding that uid. Each out[k] must have room for cols[0].n rows;
 * *nout receives the output length. */
int csf_join(const csf_column *cols, int ncols, int64_t *const *out, int64_t *nout,
             int nthreads, int bits);

/* Over the concatenation of cols: first[r] = global row of the first
 * occurrence of row r's uid (r itself when it is the first). */
int csf_first_rows(const csf_column *cols, int ncols, int64_t *first, int nthreads, int bits);

/* Over the concatenation of cols: *count rows repeat the uid of an earlier
 * row; the first min(cap, *count) of them (in row order) are written to
 * rep_rows with the rows of their uid's first occurrence in first_rows. */
int csf_repeats(const csf_column *cols, int ncols, int64_t cap, int64_t *count,
                int64_t *rep_rows, int64_t *first_rows, int nthreads, int bits);

/* mask[r] = 1 when global row r is the first holding its uid, else 0. */
int csf_first_occurrence(const csf_column *cols, int ncols, uint8_t *mask, int nthreads,
                         int bits);

#endif
