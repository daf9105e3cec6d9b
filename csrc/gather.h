#ifndef CSFAST_GATHER_H
#define CSFAST_GATHER_H

/* Row copies between strided, unaligned columns of fixed-size items: the
 * gathers of joins and subsets, the concatenation of appends (with string
 * widening), and the row interleaving of saves. */

#include "status.h"

/* out row i = src row index[i] (index NULL: src row i), for i < n.
 * A row is nelem elements of src_el bytes, written as out_el bytes each:
 * zero-padded when wider (a wider string dtype), cut when narrower (the
 * caller knows the bytes cut are NULs). Negative index values
 * count from the end, as in numpy; others out of range give CSF_EINDEX. */
typedef struct {
    const char *src;
    int64_t src_n;
    ptrdiff_t src_stride;
    int64_t src_el;
    const char *index; /* int64 values, or NULL */
    ptrdiff_t index_stride;
    char *out;
    int64_t n;
    ptrdiff_t out_stride;
    int64_t out_el;
    int64_t nelem;
} csf_gather_args;

int csf_gather(const csf_gather_args *g, int nthreads);

/* Several gathers with one index (the same n and index in every g[j]),
 * done a block of rows at a time: the columns of one table share its rows'
 * cache lines, so each source row is fetched from memory once, not once
 * per column. */
int csf_gather_many(const csf_gather_args *g, int ncols, int nthreads);

/* One column of a row-interleaved buffer: nelem elements of el bytes each
 * per row, stored as out_el bytes each (copy min(el, out_el), zero-pad),
 * at byte offset `offset` of the row; bytes up to offset + width beyond
 * nelem * out_el are zeroed. */
typedef struct {
    const char *data;
    ptrdiff_t stride;
    int64_t nelem;
    int64_t el;
    int64_t out_el;
    int64_t offset;
    int64_t width;
} csf_pack_column;

/* Interleave n rows of cols into out (rows row_stride bytes apart). */
int csf_pack(const csf_pack_column *cols, int ncols, int64_t n, char *out, ptrdiff_t row_stride,
             int nthreads);

#endif
