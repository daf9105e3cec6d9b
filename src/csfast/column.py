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
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core
from .errors import CsFieldError, CsUidError
from .format import file_map_of
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
    """A lazy row subset of a read-only column: src[index], gathered when read."""

    __slots__ = ("src", "index")

    def __init__(self, src: np.ndarray, index: np.ndarray):
        self.src = src
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dtype(self) -> np.dtype:
        return self.src.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index),) + self.src.shape[1:]


def rows_source(col: np.ndarray | Rows) -> tuple[np.ndarray, np.ndarray | None]:
    """(array, row index or None) from which a column's values are read."""
    if isinstance(col, Rows):
        return col.src, col.index
    return col, None


def readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def share(col: np.ndarray | Rows) -> None:
    """col is about to be held by a second dataset: its map may no longer be written in place."""
    src = col.src if isinstance(col, Rows) else col
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
    # A FileMap exports the buffer protocol, which _core.pyi cannot declare
    # (collections.abc.Buffer is Python 3.12+).
    whole = np.frombuffer(fm, dtype=np.uint8)  # type: ignore[call-overload]
    offset = col.__array_interface__["data"][0] - whole.__array_interface__["data"][0]
    return np.ndarray(
        col.shape,
        dtype=col.dtype,
        buffer=fm,  # type: ignore[arg-type]
        offset=offset,
        strides=col.strides,
    )


def is_column(value: Any, col: np.ndarray | Rows) -> bool:
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


def gather(
    col: np.ndarray | Rows,
    index: np.ndarray | None,
    dtype: np.dtype | None = None,
) -> np.ndarray:
    """A new contiguous owned array of col's rows at index (all rows if None)."""
    src, base = rows_source(col)
    if base is not None:
        index = base if index is None else base[index]
    n = len(src) if index is None else len(index)
    out = np.empty((n,) + src.shape[1:], dtype=dtype or src.dtype)
    _core.gather(src, index, out)
    return out


def gather_jobs(
    jobs: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]],
) -> None:
    """out[i] = src[base[idx[i]]] for each (src, base, idx, out); None: no indirection.

    Columns of one row-major table (the fields of a mapped file) read through
    the same rows go in one gather_many call: each source row is then read
    once for all of them, not once per column (at 1M rows a mapped join takes
    0.9 s instead of 1.6 s). Separate column arrays gain nothing from that and
    are gathered one by one (gather_many over them was 2.4x slower). The
    composed row index base[idx] is built once per source index.
    """
    rows_of: dict[tuple[int, int], np.ndarray | None] = {}
    groups: dict[tuple[int, int, int], tuple[np.ndarray | None, list, list]] = {}
    for src, base, idx, out in jobs:
        rkey = (id(base), id(idx))
        if rkey not in rows_of:
            rows_of[rkey] = idx if base is None else base if idx is None else base[idx]
        row_bytes = src.dtype.itemsize * math.prod(src.shape[1:])
        table = src
        if src.strides[0] != row_bytes:  # fields interleaved: find the table they share
            while isinstance(table.base, np.ndarray):
                table = table.base
        key = rkey + (id(table),)
        if key not in groups:
            groups[key] = (rows_of[rkey], [], [])
        groups[key][1].append(src)
        groups[key][2].append(out)
    for rows, srcs, outs in groups.values():
        if len(srcs) == 1:
            _core.gather(srcs[0], rows, outs[0])
        else:
            _core.gather_many(srcs, rows, outs)


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
