/* LZ4 block format codec, written from the public format description.
 *
 * A block is a series of sequences. Each sequence: a token byte (high nibble:
 * literal count, low nibble: match length - 4; 15 means "more length bytes
 * follow", each added until one is not 255), the literals, a 2-byte
 * little-endian offset back into the output (1..65535), then the extra match
 * length bytes. The last sequence has literals only. The end-of-block rules:
 * the last 5 bytes are literals, and the last match starts at least 12 bytes
 * before the end (so blocks under 13 bytes are all literals).
 */
#include "lz4block.h"

#include <stdlib.h>
#include <string.h>

#define MINMATCH 4
#define LASTLITERALS 5
#define MFLIMIT 12
#define MAX_OFFSET 65535
#define HASH_LOG 16

/* The match table holds input positions + 1 as uint32_t. */
_Static_assert(CSF_LZ4_MAX_INPUT < UINT32_MAX, "positions + 1 must fit uint32_t");

static inline uint32_t read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t hash4(uint32_t v)
{
    return (v * 2654435761u) >> (32 - HASH_LOG);
}

size_t csf_lz4_bound(size_t n)
{
    return n + n / 255 + 16;
}

static uint8_t *put_length(uint8_t *op, size_t len)
{
    while (len >= 255) {
        *op++ = 255;
        len -= 255;
    }
    *op++ = (uint8_t)len;
    return op;
}

/* One sequence: lit_len literals from lit, then (when match_len > 0) a
 * match of match_len bytes offset bytes back. */
static uint8_t *put_sequence(uint8_t *op, const uint8_t *lit, size_t lit_len,
                             size_t offset, size_t match_len)
{
    uint8_t *token = op++;
    if (lit_len >= 15) {
        *token = 15 << 4;
        op = put_length(op, lit_len - 15);
    } else {
        *token = (uint8_t)(lit_len << 4);
    }
    memcpy(op, lit, lit_len);
    op += lit_len;
    if (match_len == 0) {
        return op;
    }
    *op++ = (uint8_t)(offset & 0xff);
    *op++ = (uint8_t)(offset >> 8);
    size_t ml = match_len - MINMATCH;
    if (ml >= 15) {
        *token |= 15;
        op = put_length(op, ml - 15);
    } else {
        *token |= (uint8_t)ml;
    }
    return op;
}

int csf_lz4_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap,
                     size_t *out_n)
{
    if (n > CSF_LZ4_MAX_INPUT) {
        return CSF_LZ4_E_TOO_LARGE;
    }
    if (dst_cap < csf_lz4_bound(n)) {
        return CSF_LZ4_E_DST_SMALL;
    }
    uint8_t *op = dst;
    size_t anchor = 0;
    if (n == 0) {
        /* One token, no literals. src may be NULL here, and memcpy (or
         * src + 0) with a NULL pointer is undefined even for 0 bytes. */
        *dst = 0;
        *out_n = 1;
        return CSF_LZ4_OK;
    }
    if (n >= MFLIMIT + 1) {
        /* Positions + 1, so 0 marks an empty slot. */
        uint32_t *table = calloc((size_t)1 << HASH_LOG, sizeof(uint32_t));
        if (table == NULL) {
            return CSF_LZ4_E_NOMEM;
        }
        const size_t match_end_limit = n - LASTLITERALS;
        size_t ip = 0;
        while (ip + MFLIMIT <= n) {
            uint32_t seq = read32(src + ip);
            uint32_t h = hash4(seq);
            size_t ref = table[h];
            table[h] = (uint32_t)(ip + 1);
            if (ref == 0 || ip - (ref - 1) > MAX_OFFSET || read32(src + ref - 1) != seq) {
                /* Step further through data that does not compress, as the
                 * reference implementation does, to keep incompressible
                 * columns (random floats) cheap. */
                ip += 1 + ((ip - anchor) >> 6);
                continue;
            }
            ref -= 1;
            while (ip > anchor && ref > 0 && src[ip - 1] == src[ref - 1]) {
                ip--;
                ref--;
            }
            size_t len = MINMATCH;
            /* Skip 8 equal bytes at a time, then count the last few one by one
             * (portable: no assumption about byte order). */
            while (ip + len + 8 <= match_end_limit &&
                   read64(src + ip + len) == read64(src + ref + len)) {
                len += 8;
            }
            while (ip + len < match_end_limit && src[ip + len] == src[ref + len]) {
                len++;
            }
            op = put_sequence(op, src + anchor, ip - anchor, ip - ref, len);
            ip += len;
            anchor = ip;
            /* Index a position inside the match just taken, as the reference
             * does: the next repeat of it is found without a skip. */
            if (ip >= 2 && ip + MFLIMIT <= n) {
                table[hash4(read32(src + ip - 2))] = (uint32_t)(ip - 2 + 1);
            }
        }
        free(table);
    }
    op = put_sequence(op, src + anchor, n - anchor, 0, 0);
    *out_n = (size_t)(op - dst);
    return CSF_LZ4_OK;
}

/* Read an extended length (bytes added until one is not 255). */
static int get_length(const uint8_t *src, size_t n, size_t *ip, size_t *len, size_t cap)
{
    uint8_t b;
    do {
        if (*ip >= n) {
            return CSF_LZ4_E_CORRUPT;
        }
        b = src[(*ip)++];
        *len += b;
        if (*len > cap) { /* longer than the whole output: corrupt, and no overflow */
            return CSF_LZ4_E_CORRUPT;
        }
    } while (b == 255);
    return CSF_LZ4_OK;
}

int csf_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_n)
{
    size_t ip = 0, op = 0;
    for (;;) {
        if (ip >= n) {
            return CSF_LZ4_E_CORRUPT;
        }
        uint8_t token = src[ip++];
        size_t lit = token >> 4;
        if (lit == 15 && get_length(src, n, &ip, &lit, dst_n + 15) != CSF_LZ4_OK) {
            return CSF_LZ4_E_CORRUPT;
        }
        if (lit > n - ip) {
            return CSF_LZ4_E_CORRUPT;
        }
        if (lit > dst_n - op) {
            return CSF_LZ4_E_SIZE;
        }
        if (lit > 0) {
            /* dst may be NULL when dst_n == 0: no NULL + 0, no memcpy(NULL). */
            memcpy(dst + op, src + ip, lit);
            ip += lit;
            op += lit;
        }
        if (ip == n) {
            break;  /* the last sequence has literals only */
        }
        if (n - ip < 2) {
            return CSF_LZ4_E_CORRUPT;
        }
        size_t offset = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
        ip += 2;
        if (offset == 0 || offset > op) {
            return CSF_LZ4_E_CORRUPT;
        }
        size_t ml = token & 15;
        if (ml == 15 && get_length(src, n, &ip, &ml, dst_n + 15) != CSF_LZ4_OK) {
            return CSF_LZ4_E_CORRUPT;
        }
        ml += MINMATCH;
        if (ml > dst_n - op) {
            return CSF_LZ4_E_SIZE;
        }
        uint8_t *d = dst + op;
        const uint8_t *s = d - offset;
        if (offset >= ml) {
            memcpy(d, s, ml);
        } else {
            /* Overlapping match: the output repeats with period offset. Copy
             * from s in chunks that double, each reading only bytes already
             * written (runs of zeros are common in columns). */
            size_t done = 0;
            while (done < ml) {
                size_t chunk = done + offset;
                if (chunk > ml - done) {
                    chunk = ml - done;
                }
                memcpy(d + done, s, chunk);
                done += chunk;
            }
        }
        op += ml;
    }
    return op == dst_n ? CSF_LZ4_OK : CSF_LZ4_E_SIZE;
}
