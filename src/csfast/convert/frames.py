"""pandas DataFrames: one column per field, sub-arrays one column per element.

``to_pandas`` makes a column per field, and a sub-array field of shape (k,)
becomes k columns named ``field/0`` .. ``field/k-1`` (row-major
``field/i/j`` for more dimensions). ``uid`` stays ``uint64``. String fields
are ``bytes`` objects by default, or Python ``str`` (decoded UTF-8) with
``strings="str"``. The frame's ``attrs["csfast"]`` records every field's
numpy dtype and shape, so ``from_pandas`` restores them exactly (string
widths included); without it, sub-arrays are inferred from the column names.

Copies: by default the frame and the dataset share no memory either way:
editing the frame never changes the dataset (its uids included), nor the
reverse, with pandas 2 (copy-on-write on or off) and pandas 3. The copies
cost less than building the frame's string columns (1M particles, 36
fields, 188 MB of numbers, CPU seconds: ``to_pandas`` 0.20 without copies,
0.30 with them from a dataset in memory, 0.33 and 0.56 from a mapped file;
``from_pandas`` about 0.37 either way).

``copy=False`` shares the numeric columns read-only instead: the frame's
columns are read-only views of the dataset's arrays (pandas then refuses
in-place edits of them with ``ValueError: assignment destination is
read-only``; assigning a whole new column works), and ``from_pandas``
gives read-only views of the frame's columns, which see any later in-place
edit of the frame. String columns are always converted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import CsFieldError
from ..strings import decoded_objects, distinct, fixed_width, string_width
from .common import (
    SCHEMA_KEY,
    contiguous,
    element_names,
    parse_schema,
    schema_json,
    split_elements,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..dataset import Dataset

__all__ = ["to_pandas", "from_pandas"]


def _string_objects(col: np.ndarray, strings: str, field: str) -> np.ndarray:
    """An object array of bytes (or str), one Python object per distinct value."""
    if strings == "str":
        return decoded_objects(col, field)
    uniq, codes = distinct(col, field)
    objs = np.empty(len(uniq), dtype=object)
    objs[:] = uniq.tolist()
    return objs[codes]


def to_pandas(
    ds: Dataset, strings: Literal["bytes", "str"] = "bytes", *, copy: bool = True
) -> pd.DataFrame:
    """A DataFrame with one column per field (one per element of a sub-array).

    strings: ``"bytes"`` keeps string fields as ``bytes`` objects;
    ``"str"`` decodes them from UTF-8. Row index 0..n-1. copy: the frame
    owns copies of the numeric columns (default), or ``False``: read-only
    views of the dataset's (see the module docstring).
    """
    import pandas as pd

    if strings not in ("bytes", "str"):
        raise ValueError(f"strings must be 'bytes' or 'str', not {strings!r}")
    cols = {name: ds.view(name) for name in ds.fields()}
    if copy:
        native = {k: c for k, c in cols.items() if c.dtype.byteorder != ">"}
        cols.update(contiguous(native, copy=True))
    data: dict[str, Any] = {}
    for name, col in cols.items():
        if col.dtype.kind in "SU":
            if col.ndim == 1:
                data[name] = _string_objects(col, strings, name)
            else:
                flat = col.reshape(len(col), int(np.prod(col.shape[1:])))
                for j, el in enumerate(element_names(name, col.shape[1:])):
                    data[el] = _string_objects(np.ascontiguousarray(flat[:, j]), strings, name)
            continue
        if col.dtype.byteorder == ">":  # pandas computes in native order (a copy)
            col = col.astype(col.dtype.newbyteorder("="))
        elif not copy and col.flags.writeable:
            col = col.view()
            col.flags.writeable = False
        if col.ndim == 1:
            data[name] = col
        else:
            flat = col.reshape(len(col), int(np.prod(col.shape[1:])))
            for j, el in enumerate(element_names(name, col.shape[1:])):
                data[el] = flat[:, j]
    df = pd.DataFrame(data, copy=False)
    df.attrs[SCHEMA_KEY] = schema_json(ds)
    return df


def _numeric(series: Any, name: str, copy: bool) -> np.ndarray:
    """A column's values as a numpy array: an owned copy, or (not copy) a
    read-only view of the frame's memory when pandas allows."""
    if series.hasnans and series.dtype.kind not in "fc":
        raise CsFieldError(f"field {name!r}: missing values cannot be stored in a dataset")
    arr = series.to_numpy()
    if arr.dtype == object:
        raise CsFieldError(
            f"field {name!r}: column of Python objects ({series.dtype}) is "
            "neither numeric nor strings"
        )
    if copy:
        return np.array(arr, copy=True)
    if arr.flags.writeable and np.may_share_memory(arr, series.values):
        arr = arr.view()
        arr.flags.writeable = False  # the frame owns the memory: share it read-only
    return arr


def _is_string(series: Any) -> bool:
    kind = getattr(series.dtype, "kind", "O")
    return kind in "OSU" or str(series.dtype) in ("str", "string")


def _strings(series: Any, name: str, width: int | None) -> np.ndarray:
    import pandas as pd

    if series.dtype.kind == "S":  # pandas keeps numpy bytes columns as they are
        arr = series.to_numpy()
        longest = int(np.char.str_len(arr).max()) if len(arr) else 0
        return arr.astype(f"S{string_width(longest, width)}")
    codes, uniq = pd.factorize(series, use_na_sentinel=True)
    if (codes < 0).any():
        raise CsFieldError(f"field {name!r}: missing values cannot be stored in a dataset")
    return fixed_width(list(uniq), codes, name, width)


def from_pandas(
    df: pd.DataFrame, cls: type[Dataset] | None = None, *, copy: bool = True
) -> Dataset:
    """A dataset from a DataFrame (the inverse of ``to_pandas``).

    Fields and their dtypes, shapes and string widths come from
    ``df.attrs["csfast"]`` where it lists a column; other columns are
    inferred: ``f/0`` .. ``f/k-1`` make a sub-array field ``f``, integers and
    floats keep their dtype, str / bytes columns become ``S<longest + 1>``.
    A ``uid`` column becomes ``uint64``; without one, new uids are made.
    copy: the dataset owns copies of the numeric columns (default), or
    ``False``: read-only views of the frame's (see the module docstring).
    """
    if cls is None:
        from ..dataset import Dataset

        cls = Dataset
    schema = parse_schema(df.attrs.get(SCHEMA_KEY))
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        raise CsFieldError("DataFrame has repeated column names")
    groups: dict[str, list[str]] = {}
    for name, (_dt, recorded) in schema.items():
        els = element_names(name, recorded) if recorded else []
        if els and name not in columns and all(e in columns for e in els):
            groups[name] = els
    taken = {e for els in groups.values() for e in els}
    for base, els in split_elements([c for c in columns if c not in taken]).items():
        groups.setdefault(base, els)
    first = {els[0]: base for base, els in groups.items()}
    member = {e for els in groups.values() for e in els}
    n = len(df)
    cols: dict[str, np.ndarray] = {}
    for c in columns:
        if c in member and c not in first:
            continue
        name = first.get(c, c)
        els = groups.get(name, [c])
        dt: np.dtype | None
        shape: tuple[int, ...] | None
        dt, shape = schema.get(name, (None, None))
        if shape is not None and len(els) > 1 and int(np.prod(shape)) != len(els):
            dt, shape = None, None
        series = [df[e] for e in els]
        width = dt.itemsize if dt is not None and dt.kind == "S" else None
        if all(_is_string(s) for s in series):
            parts = [_strings(s, name, width) for s in series]
            w = max(p.dtype.itemsize for p in parts)
            parts = [p.astype(f"S{w}", copy=False) for p in parts]
        else:
            parts = [_numeric(s, name, copy and len(series) == 1) for s in series]
        if len(parts) == 1:
            arr = parts[0]
        else:
            arr = np.stack(parts, axis=1)
            if shape:
                arr = arr.reshape((n,) + shape)
        if dt is not None and arr.dtype != dt and dt.kind not in "SU":
            if np.can_cast(arr.dtype, dt, "safe") or (
                dt.kind == arr.dtype.kind and dt.itemsize == arr.dtype.itemsize
            ):
                arr = arr.astype(dt)
        cols[name] = arr
    return cls.from_columns(cols, n)
