"""What the converters share: the field schema record, sub-array element
names, and fast factorizing of fixed-width string columns."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..csdat import factorize
from ..errors import CsFieldError

__all__ = ["SCHEMA_KEY", "schema_of", "schema_json", "parse_schema", "element_names",
           "factorize", "fixed_strings", "split_elements"]

# Key of the schema record in Arrow schema metadata and DataFrame.attrs.
SCHEMA_KEY = "csfast"
_ELEMENT = re.compile(r"^(.*)/(\d+)$")


def schema_of(ds: Any) -> list[list[Any]]:
    """[[name, numpy dtype str, shape list], ...] of a dataset's fields, in order."""
    return [[name, col.dtype.str, list(col.shape[1:])] for name, col in
            ((k, ds._cols[k]) for k in ds.fields())]


def schema_json(ds: Any) -> str:
    return json.dumps({"version": 1, "fields": schema_of(ds)})


def parse_schema(text: str | bytes | dict | None) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{name: (dtype, shape)} from a schema record; empty when absent or unreadable."""
    if text is None:
        return {}
    try:
        rec = text if isinstance(text, dict) else json.loads(text)
        return {str(n): (np.dtype(d), tuple(int(x) for x in s)) for n, d, s in rec["fields"]}
    except (ValueError, TypeError, KeyError):
        return {}


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


def fixed_strings(values: Sequence[Any], field: str, width: int | None = None) -> np.ndarray:
    """Python str / bytes values as a fixed-width UTF-8 ``S`` array.

    The width is ``width`` when every value fits, else longest + 1 (the
    width cryoSPARC's writers choose). None and NaN are refused.
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
    w = width if width is not None and width >= longest and width > 0 else longest + 1
    return np.array(encoded, dtype=f"S{w}")


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
