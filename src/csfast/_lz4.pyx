# cython: language_level=3
"""LZ4 block compression over csrc/lz4block.c, for CSDAT columns; GIL released."""

from libc.stdint cimport uint8_t

from .errors import CsFormatError

cdef extern from "lz4block.h":
    size_t CSF_LZ4_MAX_INPUT
    size_t csf_lz4_bound(size_t n) noexcept nogil
    int csf_lz4_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap,
                         size_t *out_n) noexcept nogil
    int csf_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst,
                           size_t dst_n) noexcept nogil
    enum:
        CSF_LZ4_E_TOO_LARGE
        CSF_LZ4_E_DST_SMALL
        CSF_LZ4_E_CORRUPT
        CSF_LZ4_E_SIZE
        CSF_LZ4_E_NOMEM

MAX_INPUT = CSF_LZ4_MAX_INPUT

_MESSAGES = {
    CSF_LZ4_E_TOO_LARGE: "input too large for one LZ4 block",
    CSF_LZ4_E_DST_SMALL: "output buffer too small",
    CSF_LZ4_E_CORRUPT: "corrupt LZ4 block",
    CSF_LZ4_E_SIZE: "LZ4 block does not decode to the expected size",
    CSF_LZ4_E_NOMEM: "out of memory",
}


def compress(const uint8_t[::1] src not None):
    """The LZ4 block of src (bytes)."""
    cdef size_t n = src.shape[0]
    cdef size_t cap = csf_lz4_bound(n)
    cdef bytearray out = bytearray(cap)
    cdef uint8_t[::1] dst = out
    cdef size_t out_n = 0
    cdef int status
    cdef const uint8_t *sp = &src[0] if n else <const uint8_t *> NULL
    with nogil:
        status = csf_lz4_compress(sp, n, &dst[0], cap, &out_n)
    if status != 0:
        raise ValueError(f"lz4 compress: {_MESSAGES.get(status, status)}")
    del dst
    del out[out_n:]
    return out


def decompress(const uint8_t[::1] src not None, uint8_t[::1] dst not None, str what=""):
    """Decode the LZ4 block src into dst, which it must fill exactly."""
    cdef size_t n = src.shape[0]
    cdef size_t dst_n = dst.shape[0]
    cdef int status
    cdef const uint8_t *sp = &src[0] if n else <const uint8_t *> NULL
    cdef uint8_t *dp = &dst[0] if dst_n else <uint8_t *> NULL
    with nogil:
        status = csf_lz4_decompress(sp, n, dp, dst_n)
    if status != 0:
        raise CsFormatError(f"{what}: {_MESSAGES.get(status, status)} "
                            f"({n} compressed bytes, {dst_n} expected)")
