#ifndef CSFAST_STRCOL_H
#define CSFAST_STRCOL_H

/* Fixed-width string columns. */

#include "status.h"

/* Longest value, in units of `unit` bytes (1 for bytes 'S', 4 for UCS-4
 * 'U'), trailing zero units excluded, over n rows of nelem elements of el
 * bytes each. */
int csf_str_maxlen(const char *data, int64_t n, ptrdiff_t stride, int64_t nelem, int64_t el,
                   int unit, int64_t *out, int nthreads);

#endif
