"""What the converters share: the field schema record, sub-array element
names, and copying strided columns block by block (string columns: see
csfast.strings)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..csdat import MAX_HEADER_BYTES

__all__ = [
    "SCHEMA_KEY",
    "contiguous",
    "element_names",
    "parse_schema",
    "schema_json",
    "schema_of",
    "split_elements",
]

# Key of the schema record in Arrow schema metadata and DataFrame.attrs.
SCHEMA_KEY = "csfast"
_ELEMENT = re.compile(r"^(.*)/(\d+)$")


def schema_of(ds: Any) -> list[list[Any]]:
    """[[name, numpy dtype str, shape list], ...] of a dataset's fields, in order."""
    return [[f[0], f[1], list(f[2]) if len(f) > 2 else []] for f in ds.descr()]


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
                type(x) is int and 0 <= x < 2**31 for x in s
            ):
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
    return {
        base: [idx[i] for i in range(len(idx))]
        for base, idx in groups.items()
        if set(idx) == set(range(len(idx)))
    }


def contiguous(
    cols: dict[str, np.ndarray],
    copy: bool = False,
    block_bytes: int = 2 << 20,
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
