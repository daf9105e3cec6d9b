#ifndef CSFAST_PARTITION_H
#define CSFAST_PARTITION_H

/* Radix partition of uids by a seeded hash: the pass that spills a uid
 * column larger than the memory budget to partition files (spill.py). */

#include "status.h"

/* A uid and its row, as spilled. */
typedef struct {
    uint64_t uid;
    int64_t row;
} csf_record;

/* The partition of a uid: the top `bits` bits of splitmix64(uid + seed).
 * A function of its own, not the kernels' keyed hash (hash.h): the uids of
 * one partition, which share these bits, still spread over the hash table
 * that later matches them. */
static inline uint64_t csf_partition_of(uint64_t uid, uint64_t seed, int bits)
{
    uint64_t z = uid + seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) >> (64 - bits);
}

/* Writes the uids.n rows of uids as records (uid, first_row + r) to out,
 * grouped by partition (2**bits of them, 1 <= bits <= 16), each partition's
 * rows in row order; counts[p] receives the rows of partition p. */
int csf_partition(const csf_column *uids, int64_t first_row, uint64_t seed, int bits,
                  csf_record *out, int64_t *counts, int nthreads);

#endif
