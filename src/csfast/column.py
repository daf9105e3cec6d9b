"""Columns: how a Dataset holds, reads and copies its fields, and the
``StrColumn`` users see.

A column is a numpy array, or ``Rows``: a lazy row subset of a read-only
array, gathered when read. ``gather`` / ``gather_jobs`` copy rows through the
C gather kernels; ``owned_column`` / ``uid_array`` / ``uid_values`` turn user
data into columns and uids; ``share`` / ``writable_view`` implement the
copy-on-write rules that dataset.py describes. These serve dataset.py and
joins.py; ``StrColumn`` and ``as_column`` are the public part.

``StrColumn``: string columns that compare with Python ``str``. A string
field is stored as fixed-width UTF-8 bytes (``S``), as in the file: a mapped
column is never decoded. ``Dataset[field]`` returns such a column as
a ``StrColumn``, a view (no copy) that behaves as its numpy array except
where bytes and ``str`` meet, which plain numpy gets silently wrong
(``np.array([b"a"]) == "a"`` is ``[False]``):

- comparisons (``==``, ``!=``, ``<``, ...), other ufuncs (numpy 2's
  ``np.strings.startswith``, ...) and ``np.isin`` encode ``str`` operands
  as UTF-8 first;
- a single element reads as ``str`` (``col[0]``, iteration), as in
  cryosparc-tools; slices stay ``StrColumn`` views;
- assigning ``str`` encodes it; a value longer than the column's width
  raises ``CsFieldError`` instead of being cut short (assign the whole
  column, ``ds[field] = values``, to widen it).

Everything else (``tolist()``, ``np.unique``, arithmetic results) is numpy's
own, on bytes. ``Dataset.decode(field)`` gives a ``str`` (``U``) array.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from .errors import CsFieldError, CsUidError
from .format import file_map_of, map_offset
from .strings import decode_value, encode, encode_value

__all__ = ["StrColumn", "as_column"]

#: A field as cryosparc-tools describes it: (name, dtype str) or (name, dtype str, shape).
Field = tuple[str, str] | tuple[str, str, tuple[int, ...]]
NATIVE_UID = np.dtype(np.uint64)


def _plain(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, StrColumn) else value


class StrColumn(np.ndarray):
    """A fixed-width bytes (``S``) column view that compares with and accepts ``str``."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(_plain(x) for x in inputs)
        if any(isinstance(x, np.ndarray) and x.dtype.kind == "S" for x in inputs):
            inputs = tuple(encode_value(x) for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.isin and self.dtype.kind == "S":
            args = tuple(encode_value(_plain(a)) for a in args)
            kwargs = {k: encode_value(_plain(v)) for k, v in kwargs.items()}
            return func(*args, **kwargs)
        return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, np.bytes_):
            return decode_value(value)
        return value

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def astype(self, *args, **kwargs):
        """A plain array (``col.astype(str)`` is a ``U`` array, not a StrColumn)."""
        return self.view(np.ndarray).astype(*args, **kwargs)

    def __setitem__(self, key, value):
        if self.dtype.kind != "S":
            return super().__setitem__(key, value)
        value = encode_value(value)
        width = self.dtype.itemsize
        if isinstance(value, bytes):
            longest = len(value)
        else:
            arr = np.asarray(value)
            longest = int(np.char.str_len(arr).max()) if arr.dtype.kind == "S" and arr.size else 0
        if longest > width:
            raise CsFieldError(
                f"a value of {longest} bytes does not fit this S{width} column; "
                "assign the whole column (ds[field] = values) to widen it"
            )
        super().__setitem__(key, value)


def as_column(col: np.ndarray) -> np.ndarray:
    """col as users see it: a StrColumn view for ``S`` columns, else col itself."""
    return col.view(StrColumn) if col.dtype.kind == "S" else col


# ----------------------------------------------------- column machinery


class Rows:
    """A lazy column: rows of read-only arrays, gathered when read.

    ``pieces`` are (src, index or None) pairs; the column is src[index] (or
    all of src) of each piece, one piece after the other: a row subset or
    join of one column has one piece, an append one per input. ``dtype`` is
    the column's, which for strings may be wider than a piece's. Columns of
    one table share their index arrays (the same objects), so that a gather
    of several of them reads each source row once (``gather_jobs``).
    """

    __slots__ = ("pieces", "dtype", "_n")

    def __init__(
        self,
        pieces: Sequence[tuple[np.ndarray, np.ndarray | None]],
        dtype: np.dtype | None = None,
    ):
        self.pieces = tuple(pieces)
        self.dtype = np.dtype(dtype) if dtype is not None else self.pieces[0][0].dtype
        self._n = sum(len(src) if idx is None else len(idx) for src, idx in self.pieces)

    def __len__(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n,) + self.pieces[0][0].shape[1:]


Column = np.ndarray | Rows


def lazy(col: Column, index: np.ndarray | None, composed: dict[tuple, Any]) -> Rows | None:
    """col's rows at index (None: all) as a lazy column, or None where col
    is an owned (writable) array, which is copied instead.

    composed caches the index arrays made here by (id of a piece's index, id
    of index), so that the columns of one table keep sharing theirs; the
    caller keeps it (and so the arrays whose ids it holds) for one operation.
    """
    if isinstance(col, np.ndarray):
        if col.flags.writeable:
            return None
        return Rows([(col, index)])
    return take_rows(col, index, composed)


def take_rows(col: Rows, index: np.ndarray | None, composed: dict[tuple, Any]) -> Rows:
    """col's rows at index (None: all), lazily (see ``lazy``)."""
    if index is None:
        return col
    if len(col.pieces) == 1:
        src, base = col.pieces[0]
        return Rows([(src, index if base is None else _compose(base, index, composed))], col.dtype)
    # Several pieces: an increasing index (every subset and query) splits into
    # runs, one per piece; any other order is gathered first.
    order: tuple = ("increasing", id(index))
    if order not in composed:  # once per operation, not once per column
        composed[order] = (index, increasing(index))
    if not composed[order][1]:
        return Rows([(readonly(gather(col, None)), index)])
    pieces = []
    bounds = np.cumsum([0] + [len(s) if i is None else len(i) for s, i in col.pieces])
    cuts = np.searchsorted(index, bounds).tolist()
    for (src, base), at, lo, hi in zip(col.pieces, bounds.tolist(), cuts, cuts[1:], strict=False):
        if lo < hi:
            key = ("part", id(index), lo)
            if key not in composed:
                composed[key] = (index, index[lo:hi] - at)
            part = composed[key][1]
            pieces.append((src, part if base is None else _compose(base, part, composed)))
    if not pieces:
        src, _ = col.pieces[0]
        pieces.append((src, np.zeros(0, dtype=np.intp)))
    return Rows(pieces, col.dtype)


def increasing(index: np.ndarray) -> bool:
    """The row index never goes back (every subset, query and mask gives one)."""
    return bool(np.all(index[1:] >= index[:-1]))


def row_slice(col: Column, s: slice, composed: dict[tuple, Any]) -> Column:
    """col[s]: a view of an array, a lazy column of Rows."""
    if not isinstance(col, Rows):
        return col[s]
    if len(col.pieces) == 1:
        src, idx = col.pieces[0]
        return Rows([(src[s], None) if idx is None else (src, idx[s])], col.dtype)
    return take_rows(col, np.arange(*s.indices(len(col))), composed)


def _compose(base: np.ndarray, index: np.ndarray, composed: dict[tuple, Any]) -> np.ndarray:
    key = (id(base), id(index))
    if key not in composed:
        # Keep both alive with the result: their ids stay unique while cached.
        composed[key] = (base, index, base[index])
    return composed[key][-1]


def readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def share(col: Column) -> None:
    """col is about to be held by a second dataset: its maps may no longer be written in place."""
    for src in [p[0] for p in col.pieces] if isinstance(col, Rows) else [col]:
        if not src.flags.writeable:
            fm = file_map_of(src)
            if fm is not None:
                fm.owner = None


def writable_view(col: np.ndarray) -> np.ndarray | None:
    """col as a writable view of its own private map, or None where that is refused.

    The pages turn writable for the whole map at once (copy-on-write, so the
    file never changes); where the system refuses (a commit limit), None.
    """
    fm = file_map_of(col)
    if fm is None:
        return None
    try:
        fm.make_writable()
    except OSError:
        return None
    return np.ndarray(
        col.shape,
        dtype=col.dtype,
        buffer=fm,  # type: ignore[arg-type]
        offset=map_offset(fm, col),
        strides=col.strides,
    )


def is_column(value: Any, col: Column) -> bool:
    """value is col itself, or a view of exactly its elements (a StrColumn of it)."""
    if value is col:
        return True
    if not isinstance(value, np.ndarray) or isinstance(col, Rows):
        return False
    return (
        value.__array_interface__["data"][0] == col.__array_interface__["data"][0]
        and value.shape == col.shape
        and value.strides == col.strides
        and value.dtype == col.dtype
    )


def gather(col: Column, index: np.ndarray | None) -> np.ndarray:
    """A new contiguous owned array of col's rows at index (all rows if None)."""
    if isinstance(col, Rows):
        if index is not None:
            col = take_rows(col, index, {})
        out = np.empty(col.shape, dtype=col.dtype)
        gather_columns({"": col}, 0, len(col), {"": out})
        return out
    n = len(col) if index is None else len(index)
    out = np.empty((n,) + col.shape[1:], dtype=col.dtype)
    _core.gather(col, index, out)
    return out


def gather_columns(
    cols: Mapping[str, Column],
    start: int,
    stop: int,
    outs: Mapping[str, np.ndarray],
    truncate: bool = False,
) -> None:
    """outs[k][i - start] = cols[k][i] for rows i in [start, stop) of every column.

    One gather_jobs call for all: the fields of one mapped table read
    through the same rows are copied in one pass. truncate: string outputs
    may be narrower than the columns (the caller knows the cut bytes are NULs).
    """
    jobs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
    sliced: dict[tuple[int, int], np.ndarray] = {}  # one slice per piece index, shared
    for k, col in cols.items():
        out = outs[k]
        if not isinstance(col, Rows):
            jobs.append((col[start:stop], None, out))
            continue
        for _, src, idx, at, lo, hi in piece_spans(col, start, stop):
            dst = out[at + lo - start : at + hi - start]
            if idx is None:
                jobs.append((src[lo:hi], None, dst))
            else:
                if (id(idx), lo) not in sliced:
                    sliced[id(idx), lo] = idx[lo:hi]
                jobs.append((src, sliced[id(idx), lo], dst))
    gather_jobs(jobs, truncate)


def piece_spans(
    col: Rows, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None, int, int, int]]:
    """(i, src, idx, at, lo, hi) for each piece i of col that holds rows of
    [start, stop): the piece's rows lo:hi, which are col's rows at + lo: at + hi."""
    at = 0
    for i, (src, idx) in enumerate(col.pieces):
        size = len(src) if idx is None else len(idx)
        lo, hi = max(start - at, 0), min(stop - at, size)
        if lo < hi:
            yield i, src, idx, at, lo, hi
        at += size
        if at >= stop:
            break


def root_array(a: np.ndarray) -> np.ndarray:
    """The array a views, through views of views (a mapped file's record array
    for a field of it)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def gather_jobs(
    jobs: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray]], truncate: bool = False
) -> None:
    """out[i] = src[idx[i]] for each (src, idx, out); idx None: every row.

    Columns of one row-major table (the fields of a mapped file) read through
    the same index (the same array object) go in one gather_many call: each
    source row is then read once for all of them, not once per column (at 1M
    rows a mapped join takes 0.9 s instead of 1.6 s). Separate column arrays
    gain nothing from that and are gathered one by one (gather_many over them
    was 2.4x slower).
    """
    groups: dict[tuple[int, ...], tuple[np.ndarray | None, list, list]] = {}
    for src, idx, out in jobs:
        row_bytes = src.dtype.itemsize * math.prod(src.shape[1:])
        table, first_row = src, 0
        if src.strides[0] != row_bytes and src.strides[0] > 0:
            # Fields interleaved: find the table they share, and where in it
            # this slice of rows starts (two slices of one table stay apart).
            table = root_array(src)
            skip = src.__array_interface__["data"][0] - table.__array_interface__["data"][0]
            first_row = skip // src.strides[0]
        key = (id(idx), id(table), first_row, len(out))
        if key not in groups:
            groups[key] = (idx, [], [])
        groups[key][1].append(src)
        groups[key][2].append(out)
    for rows, srcs, outs in groups.values():
        if len(srcs) == 1:
            _core.gather(srcs[0], rows, outs[0], truncate=truncate)
        else:
            _core.gather_many(srcs, rows, outs, truncate=truncate)


def field_of(name: str, col: np.ndarray | Rows) -> Field:
    dt = col.dtype
    shape = tuple(col.shape[1:])
    return (name, dt.str, shape) if shape else (name, dt.str)


def tools_field(name: str, dt: np.dtype | str, shape: tuple[int, ...]) -> Field:
    """A field as cryosparc-tools describes it: strings are "|O", uid is "<u8"."""
    dt = np.dtype(dt)
    if name == "uid":
        return ("uid", "<u8")
    if dt.kind in "SUO":
        return (name, "|O")
    return (name, dt.str, tuple(shape)) if shape else (name, dt.str)


def owned_column(name: str, value: Any, n: int | None) -> np.ndarray:
    """An owned, contiguous column from user data (n rows; a scalar is broadcast);
    Python strings become UTF-8 bytes."""
    a = np.array(value)  # always a copy: the dataset owns its writable columns
    if a.dtype.kind == "U" or (a.dtype.kind == "O" and a.size and isinstance(a.flat[0], str)):
        a = encode(a, name)
    if a.dtype.kind == "O":
        raise CsFieldError(f"field {name!r}: object arrays cannot be stored in a dataset")
    if a.ndim == 0:
        if n is None:
            raise CsFieldError(f"field {name!r}: a scalar needs a row count")
        a = np.full(n, a)
    if n is not None and len(a) != n:
        raise CsFieldError(f"field {name!r} has {len(a)} rows, the dataset has {n}")
    if name == "uid":
        a = uid_array(a, name)
    return a


def uid_array(a: np.ndarray, what: str) -> np.ndarray:
    """A uid column as native uint64 (no copy when it is one); negative uids raise."""
    if a.ndim != 1:
        raise CsFieldError(
            f"{what}: uid column of {a.dtype} with shape {a.shape[1:]} cannot "
            "hold uids (one unsigned integer a row)"
        )
    if a.dtype.kind not in "ui":
        raise CsFieldError(
            f"{what}: uid column of {a.dtype} cannot hold uids (one unsigned integer a row)"
        )
    if a.dtype.kind == "i" and len(a) and a.min() < 0:
        raise CsUidError(f"{what}: uid values must be non-negative, got {a.min()}")
    return a.astype(np.uint64, copy=False)


def uid_values(values: Any, what: str) -> np.ndarray:
    """Caller-given uids as a 1-D native uint64 array (no copy when already one).

    Python ints over the full 64-bit range are exact (numpy alone would turn
    [0, 2**64 - 1] into float64); negative or non-integer values raise.
    """
    if isinstance(values, (set, frozenset)):
        values = list(values)
    a = values if isinstance(values, np.ndarray) else np.asarray(values)
    if a.size == 0:
        return np.zeros(0, dtype=NATIVE_UID)
    if a.dtype.kind in "fO" and not isinstance(values, np.ndarray):
        flat = np.asarray(values, dtype=object).reshape(-1).tolist()
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
            if min(flat) < 0 or max(flat) >= 2**64:
                raise CsUidError(
                    f"{what}: uid values must be in [0, 2**64), got "
                    f"{min(flat) if min(flat) < 0 else max(flat)}"
                )
            return np.array(flat, dtype=NATIVE_UID)
    if a.dtype.kind not in "ui":
        raise CsUidError(f"{what}: uids must be unsigned integers, not {a.dtype}")
    a = a.reshape(-1)
    if a.dtype.kind == "i" and a.min() < 0:
        raise CsUidError(f"{what}: uid values must be non-negative, got {a.min()}")
    return a if a.dtype == NATIVE_UID else a.astype(NATIVE_UID)


def combinable(a: np.dtype, b: np.dtype) -> bool:
    """Same dtype, or string columns of the same kind (widths differ: widen)."""
    return a == b or (a.kind == b.kind and a.kind in "SU" and a.byteorder == b.byteorder)


def wider_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if a.itemsize >= b.itemsize else b


def row_number(key: Any, n: int) -> int:
    """ds[key] for a row: an integer in [-n, n) as a row number in [0, n)."""
    try:
        i = key.__index__()
    except AttributeError:
        raise TypeError(
            f"dataset keys are field names, row numbers or slices, not {type(key).__name__}"
        ) from None
    if not -n <= i < n:
        raise IndexError(f"row {i} out of range for {n} rows")
    return i + n if i < 0 else i


def row_indices(indices: Any, n: int) -> np.ndarray:
    """take()'s row indices: integers in [-n, n) as a 1-D intp array in [0, n)."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        raise TypeError("take() expects row indices; use mask() for a boolean array")
    if idx.size == 0:
        return np.zeros(0, dtype=np.intp)
    if idx.dtype.kind not in "ui":
        raise TypeError(f"row indices must be integers, not {idx.dtype}")
    idx = idx.astype(np.intp, copy=False).reshape(-1)
    lo, hi = idx.min(), idx.max()
    if lo < -n or hi >= n:
        raise IndexError(f"row index {lo if lo < -n else hi} out of range for {n} rows")
    if lo < 0:
        idx = np.where(idx < 0, idx + n, idx)
    return idx
