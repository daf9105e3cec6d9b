"""What the converters share: the field schema record, sub-array element
names, and fast factorizing of fixed-width string columns."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..csdat import MAX_HEADER_BYTES, StringBudget, factorize
from ..errors import CsFieldError

__all__ = ["SCHEMA_KEY", "StringBudget", "contiguous", "element_names", "factorize",
           "fixed_strings", "parse_schema", "schema_json", "schema_of", "split_elements",
           "string_width"]

# Key of the schema record in Arrow schema metadata and DataFrame.attrs.
SCHEMA_KEY = "csfast"
_ELEMENT = re.compile(r"^(.*)/(\d+)$")


def schema_of(ds: Any) -> list[list[Any]]:
    """[[name, numpy dtype str, shape list], ...] of a dataset's fields, in order."""
    return [[name, col.dtype.str, list(col.shape[1:])] for name, col in
            ((k, ds._cols[k]) for k in ds.fields())]


def schema_json(ds: Any) -> str:
    return json.dumps({"version": 1, "fields": schema_of(ds)})


_SIMPLE_DTYPE = re.compile(r"[<>|=]?[biufcSU][0-9]+")


def parse_schema(text: str | bytes | dict | None) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{name: (dtype, shape)} from a schema record; empty when absent or unreadable.

    Only what ``schema_json`` writes is readable: numeric, bool and S / U
    dtype strings such as ``<f4``, shapes of non-negative ints below 2**31,
    a record of at most ``MAX_HEADER_BYTES``.
    """
    if text is None or (not isinstance(text, dict) and len(text) > MAX_HEADER_BYTES):
        return {}
    out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    try:
        rec = text if isinstance(text, dict) else json.loads(text)
        for n, d, s in rec["fields"]:
            if not (isinstance(d, str) and _SIMPLE_DTYPE.fullmatch(d)) or not all(
                    type(x) is int and 0 <= x < 2**31 for x in s):
                return {}
            out[str(n)] = (np.dtype(d), tuple(s))
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError, SyntaxError):
        return {}
    return out


def element_names(name: str, shape: Sequence[int]) -> list[str]:
    """Column names of a sub-array field's elements: ``pose/0``, ``pose/1``... (row-major)."""
    return [name + "".join(f"/{i}" for i in idx) for idx in np.ndindex(*shape)]


def split_elements(columns: Sequence[str]) -> dict[str, list[str]]:
    """Infer sub-array fields from column names: {field: [element columns]}.

    A field ``f`` is a sub-array when columns ``f/0`` .. ``f/k-1`` exist, all
    of them, and no column is called ``f`` itself.
    """
    groups: dict[str, dict[int, str]] = {}
    names = set(columns)
    for c in columns:
        m = _ELEMENT.match(c)
        if m and m.group(1) not in names:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = c
    return {base: [idx[i] for i in range(len(idx))] for base, idx in groups.items()
            if set(idx) == set(range(len(idx)))}


def distinct_strings(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values as bytes, code per row) of an S or U column (U as UTF-8)."""
    if col.dtype.kind == "U":
        col = np.char.encode(col, "utf-8")
    return factorize(col)


def decoded_objects(col: np.ndarray, strip_gt: bool = False) -> np.ndarray:
    """A string column as an object array of str, each distinct value decoded once.

    strip_gt drops the leading ``>`` of exported, folder-relative paths.
    """
    uniq, codes = distinct_strings(col)
    values = [v.decode("utf-8") for v in uniq.tolist()]
    if strip_gt:
        values = [v[1:] if v.startswith(">") else v for v in values]
    objs = np.empty(len(values), dtype=object)
    objs[:] = values
    return objs[codes]


def string_width(longest: int, width: int | None) -> int:
    """The width of a string column whose longest value has ``longest`` bytes.

    ``width`` (from a schema record) when every value fits and it is at most
    twice the longest plus 64 bytes (the padding a column may have kept from
    longer values it once held), else longest + 1 (the width cryoSPARC's
    writers choose): a record cannot widen a column beyond what its data holds.
    """
    if width is not None and longest <= width <= 2 * longest + 64 and width > 0:
        return width
    return longest + 1


def fixed_strings(values: Sequence[Any], field: str, width: int | None = None,
                  budget: StringBudget | None = None, rows: int | None = None) -> np.ndarray:
    """Python str / bytes values as a fixed-width UTF-8 ``S`` array.

    The width is ``string_width(longest, width)``. None and NaN are refused.
    With a budget, a column of ``rows`` rows (default: one per value) of that
    width is first accounted for in it (CsFormatError when over).
    """
    encoded = []
    for v in values:
        if isinstance(v, str):
            encoded.append(v.encode("utf-8"))
        elif isinstance(v, (bytes, bytearray, np.bytes_)):
            encoded.append(bytes(v))
        else:
            raise CsFieldError(f"field {field!r}: missing or non-string value {v!r} in a "
                               "string column")
    longest = max((len(e) for e in encoded), default=0)
    w = string_width(longest, width)
    if budget is not None:
        budget.take(field, len(encoded) if rows is None else rows, longest, w)
    return np.array(encoded, dtype=f"S{w}")


def contiguous(cols: dict[str, np.ndarray], copy: bool = False, block_bytes: int = 2 << 20,
               ) -> dict[str, np.ndarray]:
    """cols with every strided numeric column (every numeric one if ``copy``)
    replaced by an owned contiguous copy; string columns as they are.

    Columns of a mapped .cs file interleave their rows; copying them one
    after another would stream the whole table through the cache once per
    column. Copying every column's rows block by block reads it once.
    """
    out = dict(cols)
    for k, c in cols.items():
        if copy and c.flags.c_contiguous and c.dtype.kind not in "SU":
            out[k] = c.copy()
    strided = [k for k, c in cols.items() if not c.flags.c_contiguous and c.dtype.kind not in "SU"]
    if not strided:
        return out
    row_bytes = sum(cols[k].dtype.itemsize * int(np.prod(cols[k].shape[1:])) for k in strided)
    step = max(1, block_bytes // max(row_bytes, 1))
    n = len(cols[strided[0]])
    for k in strided:
        out[k] = np.empty(cols[k].shape, dtype=cols[k].dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        for k in strided:
            out[k][start:stop] = cols[k][start:stop]
    return out


def dataset_from(cls: Any, n: int, cols: dict[str, np.ndarray]) -> Any:
    """A Dataset of n rows from converted columns: uid checked as uint64, or new uids."""
    uid = cols.get("uid")
    if uid is not None and uid.ndim != 1:
        raise CsFieldError(f"uid column of {uid.dtype} with shape {uid.shape[1:]} cannot "
                           "hold uids")
    if uid is not None and uid.dtype != np.uint64:
        if uid.dtype.kind not in "ui" or (uid.dtype.kind == "i" and n and uid.min() < 0):
            raise CsFieldError(f"uid column of {uid.dtype} cannot hold uids")
        cols["uid"] = uid.astype(np.uint64)
    if uid is None:
        from ..dataset import generate_uids
        cols = {"uid": generate_uids(n), **cols}
    return cls._from_columns(n, cols)
