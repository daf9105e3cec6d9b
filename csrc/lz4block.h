/* LZ4 block format codec (the raw block format, no frame header).
 *
 * The cryosparc-tools stream format (CSDAT) stores compressed columns as one
 * LZ4 block each; this is a small, dependency-free codec for that format,
 * written from the public format description. Plain C11, no Python API.
 */
#ifndef CSFAST_LZ4BLOCK_H
#define CSFAST_LZ4BLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Largest input one LZ4 block may hold (the reference library's limit). */
#define CSF_LZ4_MAX_INPUT 0x7E000000u

/* Status codes: 0 is success, negative values are errors. The codec is a
 * library of its own (no status.h), so it keeps its own codes. */
enum {
    CSF_LZ4_OK = 0,
    CSF_LZ4_E_TOO_LARGE = -1,   /* input beyond CSF_LZ4_MAX_INPUT */
    CSF_LZ4_E_DST_SMALL = -2,   /* output buffer too small */
    CSF_LZ4_E_CORRUPT = -3,     /* malformed block (reads past input, bad offset) */
    CSF_LZ4_E_SIZE = -4,        /* block decodes to a size other than expected */
    CSF_LZ4_E_NOMEM = -5,       /* the compressor's match table */
};

/* Worst-case compressed size for n input bytes. */
size_t csf_lz4_bound(size_t n);

/* Compress src[0:n] into dst (capacity dst_cap >= csf_lz4_bound(n)).
 * Writes the compressed size to *out_n. Returns a status. src may be NULL
 * when n is 0. */
int csf_lz4_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap,
                    size_t *out_n);

/* Decompress the block src[0:n] into dst, which must decode to exactly
 * dst_n bytes. Never reads or writes out of bounds. Returns a status. src
 * may be NULL when n is 0, dst when dst_n is 0. */
int csf_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n);

#endif
