"""String columns that compare with Python ``str``.

A string field is stored as fixed-width UTF-8 bytes (``S``), as in the file:
a mapped column is never decoded. ``Dataset[field]`` returns such a column as
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

from typing import Any

import numpy as np

from .errors import CsFieldError

__all__ = ["StrColumn"]


def _encoded(value: Any) -> Any:
    """value with every str (scalar, list or U array) as UTF-8 bytes; others unchanged."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return np.char.encode(value, "utf-8")
    return value


def _plain(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, StrColumn) else value


class StrColumn(np.ndarray):
    """A fixed-width bytes (``S``) column view that compares with and accepts ``str``."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(_plain(x) for x in inputs)
        if any(isinstance(x, np.ndarray) and x.dtype.kind == "S" for x in inputs):
            inputs = tuple(_encoded(x) for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.isin and self.dtype.kind == "S":
            args = tuple(_encoded(_plain(a)) for a in args)
            kwargs = {k: _encoded(_plain(v)) for k, v in kwargs.items()}
            return func(*args, **kwargs)
        return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, np.bytes_):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise CsFieldError(f"value {value!r:.80} is not UTF-8 text") from None
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
        value = _encoded(value)
        width = self.dtype.itemsize
        if isinstance(value, bytes):
            longest = len(value)
        else:
            arr = np.asarray(value)
            longest = int(np.char.str_len(arr).max()) if arr.dtype.kind == "S" and arr.size \
                else 0
        if longest > width:
            raise CsFieldError(f"a value of {longest} bytes does not fit this S{width} column; "
                               "assign the whole column (ds[field] = values) to widen it")
        super().__setitem__(key, value)


def as_column(col: np.ndarray) -> np.ndarray:
    """col as users see it: a StrColumn view for ``S`` columns, else col itself."""
    return col.view(StrColumn) if col.dtype.kind == "S" else col
