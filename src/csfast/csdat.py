"""The CSDAT stream format of cryosparc-tools: read and write.

Layout (docs/formats.md): the magic ``\\x95CSDAT``; a u32 little-endian length
and a UTF-8 JSON header (``length``, ``dtype`` with string fields as
``|O``, ``compression`` ``"lz4"`` or null, ``compressed_fields``); then, for
each field in header order (none when the table has 0 rows), a u32 byte count
and the column's bytes: column-major, one LZ4 *block* when the field is
listed as compressed, strings as u64 offsets into the string heap; then the
heap: NUL-terminated UTF-8 strings after a single leading NUL, so offset 0 is
the empty string.

String columns are read into fixed-width ``S<longest + 1>`` columns (the
width cryoSPARC's writers choose); nothing is ever unpickled. Every size a
stream declares is checked against the bytes it holds before anything is
allocated, within the limits below (docs/formats.md). This module sits at
the format layer: it knows numpy and the LZ4 codec, not the Dataset.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

from .errors import CsFormatError
from .format import CSDAT_MAGIC, CsInfo, atomic_write, map_file, open_regular, write_all
from .strings import distinct

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_STRING_BYTES",
    "STRING_EXPANSION",
    "STRING_SLACK",
    "CsdatHeader",
    "StringBudget",
    "read_header",
    "read_info",
    "read",
    "stream",
    "write",
]

_U32 = struct.Struct("<I")
_OFFSET = np.dtype("<u8")
_MAX_COLUMN_BYTES = 2**32 - 1  # the per-column byte count is a u32

# Limits on what a file may make csfast allocate (docs/formats.md). Real
# headers are a few kB (about 50 bytes a field); 1 MiB of JSON parses into at
# most a few tens of MB of Python objects.
MAX_HEADER_BYTES = 1 << 20
# The longest string a string field may hold: 16 times PATH_MAX.
MAX_STRING_BYTES = 1 << 16
# Fixed-width string columns widen every row to the longest value, and many
# rows may name one string: what they take is bounded by the input's size.
STRING_EXPANSION = 256
STRING_SLACK = 64 << 20
# LZ4 expands a block at most ~255 times (one token byte per 255 bytes of a
# match); a larger claim is corruption, not a column.
_LZ4_RATIO = 255
_SIMPLE_DTYPE = re.compile(r"[<>|=]?[A-Za-z?]+[0-9]*")


class StringBudget:
    """The bytes that the fixed-width string columns of one input may take.

    ``STRING_EXPANSION`` times the input's size plus ``STRING_SLACK`` (64 MiB)
    in all, each string at most ``MAX_STRING_BYTES``: a small file cannot ask
    for gigabytes by widening a million rows to one long string. Real tables
    take a few times their file's size (two path columns of ~100 bytes a row).
    """

    def __init__(self, source_bytes: int, name: str):
        self.left = STRING_EXPANSION * source_bytes + STRING_SLACK
        self.name = name

    def take(self, field: str, rows: int, longest: int, width: int | None = None) -> None:
        """Account for a column of rows strings (longest bytes) of the given width
        (default longest + 1); CsFormatError when over a limit."""
        if longest > MAX_STRING_BYTES:
            raise CsFormatError(
                f"{self.name}: field {field!r}: a string of {longest} bytes, "
                f"beyond the {MAX_STRING_BYTES} a string field may hold"
            )
        need = rows * (longest + 1 if width is None else width)
        if need > self.left:
            raise CsFormatError(
                f"{self.name}: field {field!r}: {rows} strings of {longest} "
                f"bytes would take {need} bytes, beyond what an input of "
                "this size may expand to (docs/formats.md)"
            )
        self.left -= need


class _Reader:
    """A file-like read() over a buffer, without copying the columns."""

    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def read(self, size: int) -> bytes:
        out = bytes(self.buf[self.pos : self.pos + size])
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

    @property
    def stored_dtype(self) -> np.dtype:
        """The fields as stored in the columns (string fields: u64 heap offsets)."""
        return np.dtype([(n, _OFFSET if d == "|O" else d, s) for n, d, s in self.fields])


def _parse_header(raw: bytes, name: str, offset: int) -> CsdatHeader:
    try:
        h = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CsFormatError(f"{name}: malformed CSDAT header ({type(e).__name__})") from None
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
        if (
            not isinstance(entry, list)
            or len(entry) not in (2, 3)
            or not isinstance(entry[0], str)
            or not isinstance(entry[1], str)
            or not entry[0]
        ):
            raise CsFormatError(f"{name}: invalid CSDAT field entry {entry!r:.80}")
        fname, dstr = entry[0], entry[1]
        shape = entry[2] if len(entry) == 3 else []
        if not isinstance(shape, list) or not all(type(s) is int and 0 <= s < 2**31 for s in shape):
            raise CsFormatError(f"{name}: field {fname!r}: invalid shape {shape!r:.80}")
        if dstr == "|O":
            if shape:
                raise CsFormatError(
                    f"{name}: field {fname!r}: string sub-arrays are not supported by CSDAT"
                )
        else:
            # numpy's dtype parser accepts (and chokes on) far more than the
            # "<f4" strings writers use: only those reach it.
            dt = None
            if _SIMPLE_DTYPE.fullmatch(dstr):
                try:
                    dt = np.dtype(dstr)
                except (TypeError, ValueError, SyntaxError, OverflowError):
                    pass
            if dt is None:
                raise CsFormatError(f"{name}: field {fname!r}: invalid dtype {dstr!r:.80}")
            if dt.hasobject or dt.names is not None or dt.subdtype is not None or dt.itemsize == 0:
                raise CsFormatError(f"{name}: field {fname!r}: unsupported dtype {dstr!r}")
        fields.append((fname, dstr, tuple(shape)))
    names = [f[0] for f in fields]
    if len(set(names)) != len(names):
        raise CsFormatError(f"{name}: CSDAT header names a field twice")
    unknown = set(compressed) - set(names)
    if unknown:
        raise CsFormatError(f"{name}: compressed_fields names unknown fields {sorted(unknown)}")
    header = CsdatHeader(rows, fields, compression, frozenset(compressed), offset)
    try:
        row_bytes = header.stored_dtype.itemsize
    except ValueError:  # numpy: a row beyond 2 GiB
        raise CsFormatError(f"{name}: CSDAT rows of more than 2 GiB") from None
    if rows and row_bytes == 0:  # as the .cs reader: no bytes can hold these rows
        raise CsFormatError(f"{name}: CSDAT header claims {rows} rows of zero bytes")
    return header


def _read_header_from(f: BinaryIO | _Reader, name: str) -> CsdatHeader:
    magic = f.read(len(CSDAT_MAGIC))
    if magic != CSDAT_MAGIC:
        raise CsFormatError(f"{name}: not a CSDAT stream (bad magic {magic!r})")
    raw = f.read(4)
    if len(raw) < 4:
        raise CsFormatError(f"{name}: truncated CSDAT header")
    (hlen,) = _U32.unpack(raw)
    if hlen > MAX_HEADER_BYTES:
        raise CsFormatError(
            f"{name}: CSDAT header of {hlen} bytes, beyond the {MAX_HEADER_BYTES} csfast reads"
        )
    raw = f.read(hlen)
    if len(raw) < hlen:
        raise CsFormatError(
            f"{name}: truncated CSDAT header: expected {hlen} bytes, found {len(raw)}"
        )
    return _parse_header(raw, name, len(CSDAT_MAGIC) + 4 + hlen)


def read_header(path: str | os.PathLike) -> CsdatHeader:
    """The header of a CSDAT file, read without touching its columns."""
    with open_regular(path) as f:
        return _read_header_from(f, os.fspath(path))


def read_info(f: BinaryIO, name: str, file_size: int) -> CsInfo:
    """The header of the CSDAT stream at f's position as a ``CsInfo`` (kind
    ``"csdat"``; see its docstring for how the CSDAT facts are shown)."""
    h = _read_header_from(f, name)
    strings = frozenset(n for n, d, _ in h.fields if d == "|O")
    return CsInfo(
        name,
        (0, 0),
        h.dtype,
        h.rows,
        h.data_offset,
        file_size,
        kind="csdat",
        compression=h.compression,
        compressed_fields=h.compressed_fields,
        string_fields=strings,
    )


def _column_shape(header: CsdatHeader, i: int) -> tuple[np.dtype, tuple[int, ...]]:
    """Stored dtype and array shape of field i (strings: u64 offsets)."""
    _, dstr, shape = header.fields[i]
    dt = _OFFSET if dstr == "|O" else np.dtype(dstr)
    return dt, (header.rows,) + shape


def read(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    fields: Sequence[str] | None = None,
    *,
    mmap: bool = True,
) -> tuple[int, dict[str, np.ndarray]]:
    """Read a CSDAT stream: (rows, {field: column}) in header order.

    source is a path, a bytes-like object or a readable binary file (read to
    its end). ``fields`` keeps only those fields (others are skipped). From a
    path with ``mmap``, uncompressed numeric columns are read-only views of
    the file's private map (``format.map_file``: nothing read until used, no
    descriptor kept); compressed and string columns are decoded into new
    arrays. Raises CsFormatError for anything malformed.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open_regular(source) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CsFormatError(f"{name}: empty file, not a CSDAT stream")
            if mmap:
                fm = map_file(f.fileno(), size, name)  # the descriptor closes, the map stays
                return _read_buffer(memoryview(fm), name, fields, views=True)
            data = f.read()
        return _read_buffer(memoryview(data), name, fields, views=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_buffer(memoryview(source).cast("B"), "<bytes>", fields, views=False)
    name = getattr(source, "name", "<stream>")
    return _read_buffer(memoryview(source.read()), str(name), fields, views=False)


def _read_buffer(
    buf: memoryview,
    name: str,
    fields: Sequence[str] | None,
    views: bool,
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
        (size,) = _U32.unpack(buf[pos : pos + 4])
        pos += 4
        if pos + size > len(buf):
            raise CsFormatError(
                f"{name}: truncated at field {fname!r}: {size} bytes "
                f"announced, {len(buf) - pos} left"
            )
        chunk = buf[pos : pos + size]
        pos += size
        if wanted is not None and fname not in wanted and fname != "uid":
            continue
        dt, shape = _column_shape(header, i)
        expected = math.prod(shape) * dt.itemsize  # Python ints: no overflow
        if fname in header.compressed_fields:
            from . import _lz4  # the compiled codec, loaded only for compressed streams

            if expected > _LZ4_RATIO * size + 64:
                raise CsFormatError(
                    f"{name}: field {fname!r}: {size} compressed bytes "
                    f"cannot hold the {expected} bytes the header claims"
                )

            out = np.empty(shape, dtype=dt)
            _lz4.decompress(chunk, out.reshape(-1).view(np.uint8), f"{name}: field {fname!r}")
            col = out
        else:
            if size != expected:
                raise CsFormatError(
                    f"{name}: field {fname!r} holds {size} bytes, expected "
                    f"{expected} ({n} rows of {dt.str}{shape[1:] or ''})"
                )
            col = np.frombuffer(chunk, dtype=dt).reshape(shape)
            if not views or dstr == "|O":
                col = col.copy()
        raw_cols[fname] = col
        if dstr == "|O":
            strings.append(fname)
    if strings:
        heap = np.frombuffer(buf[pos:], dtype=np.uint8)
        if len(heap) == 0 or heap[0] != 0:  # offset 0 is the empty string
            raise CsFormatError(f"{name}: the string heap does not start with a NUL byte")
        budget = StringBudget(len(buf), name)
        # Every width is known (and checked against the budget) before any
        # string column is built.
        found = {f: _heap_strings(raw_cols[f], heap, name, f, budget) for f in strings}
        for fname, (uniq, inverse, lengths) in found.items():
            raw_cols[fname] = _fixed_width(uniq, inverse, lengths, heap)
    if n == 0:  # no column sections: empty columns of the declared dtypes
        for i, (fname, dstr, _shape) in enumerate(header.fields):
            if wanted is None or fname in wanted or fname == "uid":
                dt, shape = _column_shape(header, i)
                raw_cols[fname] = np.empty(shape, dtype="S1" if dstr == "|O" else dt)
    return n, raw_cols


def _heap_strings(
    offsets: np.ndarray, heap: np.ndarray, name: str, field: str, budget: StringBudget
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct offsets, index of each row's offset in them, string lengths),
    without building a string: the lengths give the column's width."""
    uniq, inverse = np.unique(offsets, return_inverse=True)
    if len(uniq) == 0:
        return uniq, inverse.reshape(-1), np.zeros(0, dtype=np.int64)
    if uniq[-1] >= len(heap):
        raise CsFormatError(
            f"{name}: field {field!r}: string offset {int(uniq[-1])} beyond "
            f"the string heap ({len(heap)} bytes)"
        )
    nuls = np.flatnonzero(heap == 0)
    at = np.searchsorted(nuls, uniq)
    if at[-1] >= len(nuls):
        raise CsFormatError(f"{name}: field {field!r}: unterminated string in the heap")
    lengths = nuls[at] - uniq.astype(np.int64)
    budget.take(field, len(offsets), int(lengths.max()))
    return uniq, inverse.reshape(-1), lengths


def _fixed_width(
    uniq: np.ndarray,
    inverse: np.ndarray,
    lengths: np.ndarray,
    heap: np.ndarray,
    block: int = 1 << 20,
) -> np.ndarray:
    """Fixed-width ``S<longest + 1>`` column from distinct heap offsets (vectorized).

    Each distinct offset is decoded once (path columns hold few distinct
    values); strings of one length are copied together, ``block`` bytes of
    gather index at a time.
    """
    if len(uniq) == 0:
        return np.empty(0, dtype="S1")
    width = int(lengths.max()) + 1
    table = np.zeros((len(uniq), width), dtype=np.uint8)
    starts = uniq.astype(np.int64)
    for length in np.unique(lengths).tolist():
        if length == 0:
            continue
        rows = np.flatnonzero(lengths == length)
        step = max(1, block // length)
        for lo in range(0, len(rows), step):
            part = rows[lo : lo + step]
            table[part, :length] = heap[starts[part][:, None] + np.arange(length)]
    return table.view(f"S{width}").reshape(-1)[inverse]


def stream(
    columns: Mapping[str, Any],
    rows: int,
    compression: Literal["lz4"] | None = "lz4",
    *,
    name: str = "<stream>",
    read: Callable[[Any], np.ndarray] = np.asarray,
) -> Iterator[bytes | memoryview]:
    """The CSDAT bytes of a table, chunk by chunk (one chunk per column).

    columns maps field names to columns of ``rows`` rows, in output order:
    arrays, or anything with ``dtype`` and ``shape`` that read() turns into
    one (a lazy column). Each column is read when its bytes are due and let
    go after, so memory holds one column at a time (string columns are read
    first: the heap of distinct strings comes last but their offsets are
    needed in order). String columns (``S`` or ``U``) go to the heap, each
    distinct string once; numeric columns are written little-endian. With
    ``compression="lz4"`` every field but ``uid`` is one LZ4 block, as
    cryosparc-tools writes it (a column too large for one block is stored
    uncompressed instead).
    """
    if compression not in (None, "lz4"):
        raise ValueError(f"compression must be 'lz4' or None, not {compression!r}")
    from . import _lz4  # noqa: F401  (fail early when the codec is missing)

    descr: list[list] = []
    offsets: dict[str, np.ndarray] = {}  # string columns as heap offsets
    sizes: dict[str, int] = {}  # bytes of each column as stored
    heap_index: dict[bytes, int] = {b"": 0}
    heap_parts: list[bytes] = [b"\0"]
    heap_size = 1
    for fname, col in columns.items():
        dtype, shape = np.dtype(col.dtype), tuple(col.shape)
        if shape[0] != rows:
            raise CsFormatError(f"{name}: field {fname!r} has {shape[0]} rows, expected {rows}")
        if dtype.kind in "SU":
            if len(shape) != 1:
                raise CsFormatError(
                    f"{name}: field {fname!r}: string sub-arrays cannot be written to CSDAT"
                )
            uniq, inverse = distinct(read(col), fname)
            offs = np.empty(len(uniq), dtype=_OFFSET)
            for j, s in enumerate(uniq.tolist()):
                if b"\0" in s:
                    raise CsFormatError(
                        f"{name}: field {fname!r}: a string holds a NUL byte, "
                        "which CSDAT cannot store"
                    )
                off = heap_index.get(s)
                if off is None:
                    off = heap_index[s] = heap_size
                    heap_parts.append(s + b"\0")
                    heap_size += len(s) + 1
                offs[j] = off
            offsets[fname] = offs[inverse]
            sizes[fname] = offsets[fname].nbytes
            descr.append([fname, "|O"])
            continue
        if dtype.hasobject or dtype.names is not None:
            raise CsFormatError(f"{name}: field {fname!r}: {dtype} cannot be written to CSDAT")
        entry: list = [fname, dtype.newbyteorder("<").str]
        if len(shape) > 1:
            entry.append(list(shape[1:]))
        descr.append(entry)
        sizes[fname] = dtype.itemsize * math.prod(shape)
    compressed = []
    if compression and rows:
        compressed = [f for f in columns if f != "uid" and sizes[f] <= _lz4.MAX_INPUT]
    header = json.dumps(
        {
            "length": rows,
            "dtype": descr,
            "compression": compression,
            "compressed_fields": compressed,
        }
    ).encode()
    yield CSDAT_MAGIC + _U32.pack(len(header)) + header
    compressed_set = set(compressed)
    for fname, col in columns.items() if rows else ():
        if fname in offsets:
            arr = offsets.pop(fname)
        else:
            arr = read(col)
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        data = arr.reshape(-1).view(np.uint8).data if arr.size else memoryview(b"")
        if fname in compressed_set:
            data = memoryview(_lz4.compress(data))
        if len(data) > _MAX_COLUMN_BYTES:
            raise CsFormatError(
                f"{name}: field {fname!r} is {len(data)} bytes, beyond the "
                "4 GiB a CSDAT column can hold"
            )
        del arr
        yield _U32.pack(len(data))
        yield data
    yield b"".join(heap_parts)


def write(
    file: str | os.PathLike | BinaryIO,
    columns: Mapping[str, Any],
    rows: int,
    compression: Literal["lz4"] | None = "lz4",
    *,
    fsync: bool = True,
    read: Callable[[Any], np.ndarray] = np.asarray,
) -> None:
    """Write a table as a CSDAT file (atomically for a path) or to an open binary file.

    columns and read as for ``stream``. Every chunk is written whole (a
    column beyond the 2 GiB one ``write`` call moves takes several calls)
    or the write raises.
    """
    if isinstance(file, (str, os.PathLike)):

        def body(f: BinaryIO) -> None:
            for chunk in stream(columns, rows, compression, name=os.fspath(file), read=read):
                f.write(chunk)  # atomic_write's file writes completely

        atomic_write(file, body, fsync=fsync)
        return
    for chunk in stream(columns, rows, compression, read=read):
        write_all(file.write, chunk)
