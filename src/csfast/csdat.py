"""The CSDAT stream format of cryosparc-tools: read and write.

Layout (CS_FORMAT.md): the magic ``\\x95CSDAT``; a u32 little-endian length
and a UTF-8 JSON header (``length``, ``dtype`` with string fields as
``|O``, ``compression`` ``"lz4"`` or null, ``compressed_fields``); then, for
each field in header order (none when the table has 0 rows), a u32 byte count
and the column's bytes: column-major, one LZ4 *block* when the field is
listed as compressed, strings as u64 offsets into the string heap; then the
heap: NUL-terminated UTF-8 strings after a single leading NUL, so offset 0 is
the empty string.

String columns are read into fixed-width ``S<longest + 1>`` columns (the
width cryoSPARC's writers choose); nothing is ever unpickled. This module
sits at the format layer: it knows numpy and the LZ4 codec, not the Dataset.
"""

from __future__ import annotations

import json
import math
import mmap as _mmap
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np

from .errors import CsFormatError
from .format import CSDAT_MAGIC, CsInfo, atomic_write, write_all
from .format import read_header as read_npy_header

__all__ = ["CsdatHeader", "factorize", "inspect_any", "is_csdat", "read_header", "read",
           "stream", "write"]

_U32 = struct.Struct("<I")
_OFFSET = np.dtype("<u8")
_MAX_COLUMN_BYTES = 2**32 - 1  # the per-column byte count is a u32
_MAX_HEADER_BYTES = 256 * 1024 * 1024



class _Reader:
    """A file-like read() over a buffer, without copying the columns."""

    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def read(self, size: int) -> bytes:
        out = bytes(self.buf[self.pos:self.pos + size])
        self.pos += len(out)
        return out


@dataclass(frozen=True)
class CsdatHeader:
    """What the JSON header of a CSDAT stream says."""

    rows: int
    fields: list[tuple[str, str, tuple[int, ...]]]  # (name, dtype str, shape); strings "|O"
    compression: str | None
    compressed_fields: frozenset[str]
    data_offset: int  # bytes from the start of the stream to the first column

    @property
    def dtype(self) -> np.dtype:
        """A numpy dtype for the fields, with string fields shown as ``S1``."""
        return np.dtype([(n, "S1" if d == "|O" else d, s) for n, d, s in self.fields])


def is_csdat(path: str | os.PathLike) -> bool:
    """True if the file at path starts with the CSDAT magic."""
    with open(path, "rb") as f:
        return f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC


def _parse_header(raw: bytes, name: str, offset: int) -> CsdatHeader:
    try:
        h = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CsFormatError(f"{name}: malformed CSDAT header ({e})") from None
    if not isinstance(h, dict):
        raise CsFormatError(f"{name}: CSDAT header is not a JSON object")
    rows, dtype = h.get("length"), h.get("dtype")
    compression = h.get("compression")
    compressed = h.get("compressed_fields", [])
    if type(rows) is not int or rows < 0:
        raise CsFormatError(f"{name}: CSDAT header has no valid 'length' ({rows!r})")
    if not isinstance(dtype, list):
        raise CsFormatError(f"{name}: CSDAT header has no 'dtype' list")
    if compression not in (None, "lz4"):
        raise CsFormatError(f"{name}: unsupported CSDAT compression {compression!r}")
    if not isinstance(compressed, list) or not all(isinstance(c, str) for c in compressed):
        raise CsFormatError(f"{name}: CSDAT header 'compressed_fields' is not a list of names")
    if compressed and compression is None:
        raise CsFormatError(f"{name}: CSDAT header lists compressed fields without compression")
    fields: list[tuple[str, str, tuple[int, ...]]] = []
    for entry in dtype:
        if (not isinstance(entry, list) or len(entry) not in (2, 3)
                or not isinstance(entry[0], str) or not isinstance(entry[1], str)):
            raise CsFormatError(f"{name}: invalid CSDAT field entry {entry!r:.80}")
        fname, dstr = entry[0], entry[1]
        shape = entry[2] if len(entry) == 3 else []
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise CsFormatError(f"{name}: field {fname!r}: invalid shape {shape!r}")
        if dstr == "|O":
            if shape:
                raise CsFormatError(f"{name}: field {fname!r}: string sub-arrays are not "
                                    "supported by CSDAT")
        else:
            try:
                dt = np.dtype(dstr)
            except TypeError:
                raise CsFormatError(f"{name}: field {fname!r}: invalid dtype {dstr!r}") from None
            if (dt.hasobject or dt.names is not None or dt.subdtype is not None
                    or dt.itemsize == 0):
                raise CsFormatError(f"{name}: field {fname!r}: unsupported dtype {dstr!r}")
        fields.append((fname, dstr, tuple(shape)))
    names = [f[0] for f in fields]
    if len(set(names)) != len(names):
        raise CsFormatError(f"{name}: CSDAT header names a field twice")
    unknown = set(compressed) - set(names)
    if unknown:
        raise CsFormatError(f"{name}: compressed_fields names unknown fields {sorted(unknown)}")
    return CsdatHeader(rows, fields, compression, frozenset(compressed), offset)


def _read_header_from(f: BinaryIO, name: str) -> CsdatHeader:
    magic = f.read(len(CSDAT_MAGIC))
    if magic != CSDAT_MAGIC:
        raise CsFormatError(f"{name}: not a CSDAT stream (bad magic {magic!r})")
    raw = f.read(4)
    if len(raw) < 4:
        raise CsFormatError(f"{name}: truncated CSDAT header")
    (hlen,) = _U32.unpack(raw)
    if hlen > _MAX_HEADER_BYTES:
        raise CsFormatError(f"{name}: CSDAT header length {hlen} is beyond any real stream")
    raw = f.read(hlen)
    if len(raw) < hlen:
        raise CsFormatError(f"{name}: truncated CSDAT header: expected {hlen} bytes, "
                            f"found {len(raw)}")
    return _parse_header(raw, name, len(CSDAT_MAGIC) + 4 + hlen)


def read_header(path: str | os.PathLike) -> CsdatHeader:
    """The header of a CSDAT file, read without touching its columns."""
    with open(path, "rb") as f:
        return _read_header_from(f, os.fspath(path))


def inspect_any(path: str | os.PathLike) -> CsInfo:
    """Header facts of a table file, a numpy .cs file or a CSDAT stream, told by its magic.

    Reads only the header. For a CSDAT stream the ``CsInfo`` has version
    (0, 0), string fields shown as ``S1`` and ``data_offset`` at its first
    column; ``rows`` and the field names are exact. Raises CsFormatError for
    anything that is neither, FileNotFoundError / PermissionError as they are.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        csdat = f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC
        f.seek(0)
        if not csdat:
            return read_npy_header(f, name, size)
        h = _read_header_from(f, name)
    return CsInfo(name, (0, 0), h.dtype, h.rows, h.data_offset, size)


def _column_shape(header: CsdatHeader, i: int) -> tuple[np.dtype, tuple[int, ...]]:
    """Stored dtype and array shape of field i (strings: u64 offsets)."""
    _, dstr, shape = header.fields[i]
    dt = _OFFSET if dstr == "|O" else np.dtype(dstr)
    return dt, (header.rows,) + shape


def read(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
         fields: Sequence[str] | None = None, *, mmap: bool = True,
         ) -> tuple[int, dict[str, np.ndarray]]:
    """Read a CSDAT stream: (rows, {field: column}) in header order.

    source is a path, a bytes-like object or a readable binary file (read to
    its end). ``fields`` keeps only those fields (others are skipped). From a
    path with ``mmap``, uncompressed numeric columns are read-only views of
    the file's map (nothing read until used); compressed and string columns
    are decoded into new arrays. Raises CsFormatError for anything malformed.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CsFormatError(f"{name}: empty file, not a CSDAT stream")
            if mmap:
                buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
                return _read_buffer(memoryview(buf), name, fields, views=True)
            data = f.read()
        return _read_buffer(memoryview(data), name, fields, views=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_buffer(memoryview(source).cast("B"), "<bytes>", fields, views=False)
    name = getattr(source, "name", "<stream>")
    return _read_buffer(memoryview(source.read()), str(name), fields, views=False)


def _read_buffer(buf: memoryview, name: str, fields: Sequence[str] | None, views: bool,
                 ) -> tuple[int, dict[str, np.ndarray]]:
    header = _read_header_from(_Reader(buf), name)
    wanted = None if fields is None else set(fields)
    if wanted is not None:
        missing = sorted(wanted - {f[0] for f in header.fields})
        if missing:
            raise CsFormatError(f"{name}: no fields {missing} in CSDAT stream")
    pos = header.data_offset
    n = header.rows
    raw_cols: dict[str, np.ndarray] = {}
    strings: list[str] = []
    for i, (fname, dstr, _shape) in enumerate(header.fields if n else ()):
        if pos + 4 > len(buf):
            raise CsFormatError(f"{name}: truncated at field {fname!r} (no byte count)")
        (size,) = _U32.unpack(buf[pos:pos + 4])
        pos += 4
        if pos + size > len(buf):
            raise CsFormatError(f"{name}: truncated at field {fname!r}: {size} bytes "
                                f"announced, {len(buf) - pos} left")
        chunk = buf[pos:pos + size]
        pos += size
        if wanted is not None and fname not in wanted and fname != "uid":
            continue
        dt, shape = _column_shape(header, i)
        expected = math.prod(shape) * dt.itemsize  # Python ints: no overflow
        if fname in header.compressed_fields:
            from . import _lz4  # the compiled codec, loaded only for compressed streams

            # LZ4 expands at most ~255x: a larger claim is corruption, not a column.
            if expected > 255 * size + 64:
                raise CsFormatError(f"{name}: field {fname!r}: {size} compressed bytes "
                                    f"cannot hold the {expected} bytes the header claims")

            out = np.empty(shape, dtype=dt)
            _lz4.decompress(chunk, out.reshape(-1).view(np.uint8), f"{name}: field {fname!r}")
            col = out
        else:
            if size != expected:
                raise CsFormatError(f"{name}: field {fname!r} holds {size} bytes, expected "
                                    f"{expected} ({n} rows of {dt.str}{shape[1:] or ''})")
            col = np.frombuffer(chunk, dtype=dt).reshape(shape)
            if not views or dstr == "|O":
                col = col.copy()
        raw_cols[fname] = col
        if dstr == "|O":
            strings.append(fname)
    if strings:
        heap = np.frombuffer(buf[pos:], dtype=np.uint8)
        for fname in strings:
            raw_cols[fname] = _strings_from_heap(raw_cols[fname], heap, name, fname)
    if n == 0:  # no column sections: empty columns of the declared dtypes
        for i, (fname, dstr, _shape) in enumerate(header.fields):
            if wanted is None or fname in wanted or fname == "uid":
                dt, shape = _column_shape(header, i)
                raw_cols[fname] = np.empty(shape, dtype="S1" if dstr == "|O" else dt)
    return n, raw_cols


def _strings_from_heap(offsets: np.ndarray, heap: np.ndarray, name: str, field: str,
                       ) -> np.ndarray:
    """Fixed-width ``S<longest + 1>`` column from heap offsets (vectorized).

    Each distinct offset is decoded once: path columns hold few distinct values.
    """
    if len(offsets) == 0:
        return np.empty(0, dtype="S1")
    uniq, inverse = np.unique(offsets, return_inverse=True)
    if uniq[-1] >= len(heap):
        raise CsFormatError(f"{name}: field {field!r}: string offset {int(uniq[-1])} beyond "
                            f"the string heap ({len(heap)} bytes)")
    nuls = np.flatnonzero(heap == 0)
    at = np.searchsorted(nuls, uniq)
    if at[-1] >= len(nuls):
        raise CsFormatError(f"{name}: field {field!r}: unterminated string in the heap")
    lengths = nuls[at] - uniq.astype(np.int64)
    width = int(lengths.max()) + 1
    table = np.zeros((len(uniq), width), dtype=np.uint8)
    # Copy strings of one length at a time: few distinct lengths in practice.
    for length in np.unique(lengths).tolist():
        if length == 0:
            continue
        rows = np.flatnonzero(lengths == length)
        table[rows, :length] = heap[uniq[rows].astype(np.int64)[:, None] + np.arange(length)]
    return table.view(f"S{width}").reshape(-1)[inverse.reshape(-1)]


def factorize(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values sorted, codes) of a 1-D fixed-width column, codes int64.

    Path columns come in runs (one value per micrograph, rows grouped by
    micrograph), so the distinct values of the runs are found first: O(n)
    comparisons plus a sort of the run values, instead of a sort of n rows.
    """
    n = len(col)
    if n == 0:
        return col[:0].copy(), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
    if len(starts) > n // 4:  # no useful runs: sort everything
        uniq, codes = np.unique(col, return_inverse=True)
        return uniq, codes.reshape(-1).astype(np.int64, copy=False)
    uniq, run_codes = np.unique(col[starts], return_inverse=True)
    lengths = np.diff(np.append(starts, n))
    return uniq, np.repeat(run_codes.reshape(-1).astype(np.int64), lengths)


def _string_column(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "U":
        col = np.char.encode(col, "utf-8")
    return col


def stream(columns: Mapping[str, np.ndarray], rows: int,
           compression: Literal["lz4"] | None = "lz4", *, name: str = "<stream>",
           ) -> Iterator[bytes | memoryview]:
    """The CSDAT bytes of a table, chunk by chunk (one chunk per column).

    columns maps field names to arrays of ``rows`` rows, in output order.
    String columns (``S`` or ``U``) go to the heap, each distinct string once;
    numeric columns are written little-endian. With ``compression="lz4"``
    every field but ``uid`` is one LZ4 block, as cryosparc-tools writes it
    (a column too large for one block is stored uncompressed instead).
    """
    if compression not in (None, "lz4"):
        raise ValueError(f"compression must be 'lz4' or None, not {compression!r}")
    from . import _lz4  # noqa: F401  (fail early when the codec is missing)

    descr: list[list] = []
    prepared: list[tuple[str, np.ndarray]] = []
    heap_index: dict[bytes, int] = {b"": 0}
    heap_parts: list[bytes] = [b"\0"]
    heap_size = 1
    for fname, col in columns.items():
        col = np.asarray(col)
        if len(col) != rows:
            raise CsFormatError(f"{name}: field {fname!r} has {len(col)} rows, expected {rows}")
        if col.dtype.kind in "SU":
            if col.ndim != 1:
                raise CsFormatError(f"{name}: field {fname!r}: string sub-arrays cannot be "
                                    "written to CSDAT")
            col = _string_column(col)
            uniq, inverse = factorize(col)
            offs = np.empty(len(uniq), dtype=_OFFSET)
            for j, s in enumerate(uniq.tolist()):
                if b"\0" in s:
                    raise CsFormatError(f"{name}: field {fname!r}: a string holds a NUL byte, "
                                        "which CSDAT cannot store")
                off = heap_index.get(s)
                if off is None:
                    off = heap_index[s] = heap_size
                    heap_parts.append(s + b"\0")
                    heap_size += len(s) + 1
                offs[j] = off
            prepared.append((fname, offs[inverse]))
            descr.append([fname, "|O"])
            continue
        if col.dtype.hasobject or col.dtype.names is not None:
            raise CsFormatError(f"{name}: field {fname!r}: {col.dtype} cannot be written to CSDAT")
        col = np.ascontiguousarray(col, dtype=col.dtype.newbyteorder("<"))
        prepared.append((fname, col))
        entry: list = [fname, col.dtype.str]
        if col.ndim > 1:
            entry.append(list(col.shape[1:]))
        descr.append(entry)
    compressed = []
    if compression and rows:
        compressed = [f for f, c in prepared if f != "uid" and c.nbytes <= _lz4.MAX_INPUT]
    header = json.dumps({"length": rows, "dtype": descr, "compression": compression,
                         "compressed_fields": compressed}).encode()
    yield CSDAT_MAGIC + _U32.pack(len(header)) + header
    compressed_set = set(compressed)
    for fname, col in prepared if rows else ():
        data = memoryview(col.reshape(-1).view(np.uint8)) if col.size else memoryview(b"")
        if fname in compressed_set:
            data = memoryview(_lz4.compress(data))
        if len(data) > _MAX_COLUMN_BYTES:
            raise CsFormatError(f"{name}: field {fname!r} is {len(data)} bytes, beyond the "
                                "4 GiB a CSDAT column can hold")
        yield _U32.pack(len(data))
        yield data
    yield b"".join(heap_parts)


def write(file: str | os.PathLike | BinaryIO, columns: Mapping[str, np.ndarray], rows: int,
          compression: Literal["lz4"] | None = "lz4", *, fsync: bool = True) -> None:
    """Write a table as a CSDAT file (atomically for a path) or to an open binary file.

    Every chunk is written whole (a column beyond the 2 GiB one ``write``
    call moves takes several calls) or the write raises.
    """
    if isinstance(file, (str, os.PathLike)):

        def body(f: BinaryIO) -> None:
            for chunk in stream(columns, rows, compression, name=os.fspath(file)):
                f.write(chunk)  # atomic_write's file writes completely

        atomic_write(file, body, fsync=fsync)
        return
    for chunk in stream(columns, rows, compression):
        write_all(file.write, chunk)
