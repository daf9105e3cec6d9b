#ifndef CSFAST_STRCOL_H
#define CSFAST_STRCOL_H

/* Fixed-width string columns. */

#include "status.h"

/* Longest value, in units of `unit` bytes (1 for bytes 'S', 4 for UCS-4
 * 'U'), trailing zero units excluded, over n rows of nelem elements of el
 * bytes each: rows index[0..n) (int64 values index_stride bytes apart,
 * negative ones counting from the end of the src_n rows), or rows 0..n when
 * index is NULL. An index out of range gives CSF_EINDEX. */
int csf_str_maxlen(const char *data, int64_t src_n, ptrdiff_t stride, int64_t nelem, int64_t el,
                   int unit, const char *index, ptrdiff_t index_stride, int64_t n, int64_t *out,
                   int nthreads);

#endif
