"""String columns: UTF-8 encoding and decoding, factorizing, fixed widths.

A string field is stored as fixed-width UTF-8 bytes (``S<width>``), as in a
.cs file. Everything that turns text into such a column, or such a column
into text, goes through this module, with one behaviour for bad text: a value
that is not valid Unicode (lone surrogates, code points beyond U+10FFFF, as
a damaged file may hold) or not valid UTF-8 raises ``CsFieldError`` naming
the field.

Path columns hold few distinct values, in runs (one per micrograph), so
converters factorize first (``factorize``: distinct values and a code per
row) and encode, decode or widen each distinct value once.

This module knows numpy only: the format layer (csdat) and everything above
it use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CsFieldError

if TYPE_CHECKING:
    from .csdat import StringBudget

__all__ = [
    "decode",
    "decode_value",
    "decoded_objects",
    "decoded_values",
    "distinct",
    "encode",
    "encode_value",
    "factorize",
    "fixed_strings",
    "fixed_width",
    "string_width",
]


def _field(field: str | None) -> str:
    return f"field {field!r}: " if field is not None else ""


def encode(col: np.ndarray, field: str | None) -> np.ndarray:
    """A ``U`` (or str object) array as UTF-8 bytes (``S``); CsFieldError for bad text."""
    try:
        return np.char.encode(col if col.dtype.kind == "U" else col.astype(str), "utf-8")
    except (UnicodeError, SystemError) as e:  # numpy raises SystemError for > U+10FFFF
        raise CsFieldError(f"{_field(field)}not valid Unicode text ({e})") from None


def encode_value(value: Any, field: str | None = None) -> Any:
    """value with every str (scalar, list or U array) as UTF-8 bytes; others unchanged."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeError as e:
            raise CsFieldError(f"{_field(field)}not valid Unicode text ({e})") from None
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return encode(value, field)
    return value


def decode_value(value: bytes, field: str | None = None) -> str:
    """One stored value as str; CsFieldError naming the field when it is not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CsFieldError(f"{_field(field)}value {value!r:.80} is not UTF-8 text") from None


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


def distinct(col: np.ndarray, field: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values as UTF-8 bytes, code per row) of a 1-D S or U column."""
    if col.dtype.kind == "U":
        col = encode(col, field)
    return factorize(col)


def decoded_values(col: np.ndarray, field: str | None = None) -> tuple[list[str], np.ndarray]:
    """(distinct values as str, code per row) of a 1-D S or U column."""
    uniq, codes = distinct(col, field)
    return [decode_value(v, field) for v in uniq.tolist()], codes


def decoded_objects(
    col: np.ndarray, field: str | None = None, strip_gt: bool = False
) -> np.ndarray:
    """A string column as an object array of str, each distinct value decoded once.

    strip_gt drops the leading ``>`` of exported, folder-relative paths.
    """
    values, codes = decoded_values(col, field)
    if strip_gt:
        values = [v[1:] if v.startswith(">") else v for v in values]
    objs = np.empty(len(values), dtype=object)
    objs[:] = values
    return objs[codes]


def decode(col: np.ndarray, field: str | None = None) -> np.ndarray:
    """A string column as Python ``str`` (numpy ``U``), each distinct value decoded once."""
    if col.dtype.kind == "U":
        return col.copy()
    flat = col.reshape(-1)
    values, codes = decoded_values(flat, field)
    if not values:
        return np.zeros(col.shape, "U1")
    return np.array(values, dtype=str)[codes].reshape(col.shape)


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


def fixed_strings(
    values: Sequence[Any],
    field: str,
    width: int | None = None,
    budget: StringBudget | None = None,
    rows: int | None = None,
) -> np.ndarray:
    """Python str / bytes values as a fixed-width UTF-8 ``S`` array.

    The width is ``string_width(longest, width)``. None and NaN are refused.
    With a budget, a column of ``rows`` rows (default: one per value) of that
    width is first accounted for in it (CsFormatError when over).
    """
    encoded = []
    for v in values:
        if isinstance(v, str):
            encoded.append(encode_value(v, field))
        elif isinstance(v, (bytes, bytearray, np.bytes_)):
            encoded.append(bytes(v))
        else:
            raise CsFieldError(
                f"field {field!r}: missing or non-string value {v!r} in a string column"
            )
    longest = max((len(e) for e in encoded), default=0)
    w = string_width(longest, width)
    if budget is not None:
        budget.take(field, len(encoded) if rows is None else rows, longest, w)
    return np.array(encoded, dtype=f"S{w}")


def fixed_width(
    uniq: Sequence[Any],
    codes: np.ndarray,
    field: str,
    width: int | None = None,
    budget: StringBudget | None = None,
) -> np.ndarray:
    """A factorized string column (distinct str / bytes values, a code per row)
    as a fixed-width ``S`` column: each distinct value encoded once."""
    return fixed_strings(uniq, field, width, budget, rows=len(codes))[codes]
