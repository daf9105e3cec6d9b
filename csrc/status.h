#ifndef CSFAST_STATUS_H
#define CSFAST_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Status codes every kernel returns; the Cython layer maps them to exceptions. */
enum {
    CSF_OK = 0,
    CSF_ENOMEM = 1,  /* a scratch allocation failed */
    CSF_EINDEX = 2,  /* a row index out of range */
    CSF_EINVAL = 3,  /* inconsistent arguments */
    CSF_ESYS = 4,    /* a system call failed; the function's err argument holds errno */
    CSF_ESHORT = 5,  /* a file is shorter than the bytes asked for */
};

/* A strided 1-D column of fixed-size items; data need not be aligned. */
typedef struct {
    const char *data;
    int64_t n;
    ptrdiff_t stride;
} csf_column;

/* Unaligned loads: mapped .cs columns sit at any byte offset. */
static inline uint64_t csf_load_u64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
