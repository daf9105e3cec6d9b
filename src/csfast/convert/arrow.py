"""Arrow tables (and through them Parquet and Arrow IPC files).

``to_arrow`` makes one Arrow column per field:

- numeric fields keep their type (``uid`` is ``uint64``); big-endian
  fields are stored in native order;
- a sub-array field of shape s becomes a ``fixed_size_list`` of prod(s)
  elements (row-major);
- string fields become UTF-8 ``string`` columns (``binary`` if a value is
  not valid UTF-8), dictionary-encoded when they have at most half as many
  distinct values as rows (paths: one per micrograph), else plain.

The schema metadata key ``csfast`` records each field's numpy dtype and
shape, so ``from_arrow`` restores exact dtypes, byte order, shapes and string
widths. Tables written by other tools (no record) are read by their Arrow
types; strings then become ``S<longest + 1>``.

Copies: a numeric column that is contiguous in memory (an in-memory
dataset, a join's output, a file loaded with ``mmap=False``) is handed to
Arrow without a copy, and so is a sub-array field's block. A column of a
memory-mapped ``.cs`` file is a strided view (rows are interleaved in the
file), and Arrow's columnar layout needs one copy of it. ``from_arrow`` views
Arrow's buffers read-only without a copy wherever a column is one chunk of a
fixed-width type with no nulls; booleans (bit-packed in Arrow), multi-chunk
columns and strings are converted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..csdat import StringBudget
from ..errors import CsFieldError, CsFormatError
from ..strings import distinct, fixed_width
from .common import SCHEMA_KEY, contiguous, parse_schema, schema_json

if TYPE_CHECKING:
    import pyarrow as pa

    from ..dataset import Dataset

__all__ = ["to_arrow", "from_arrow"]

_KEY = SCHEMA_KEY.encode()


#: How a string column goes to Arrow: (value type, dictionary-encoded).
StringType = tuple["pa.DataType", bool]


def string_type(uniq: np.ndarray, rows: int) -> StringType:
    """How a string column of these distinct values (UTF-8 bytes) in this
    many rows goes to Arrow: ``string`` values when every value is UTF-8, else
    ``binary``; dictionary-encoded when at most half the rows hold distinct values."""
    import pyarrow as pa

    try:
        pa.array(uniq, type=pa.binary()).cast(pa.string())  # validates UTF-8
        value_type = pa.string()
    except pa.ArrowInvalid:
        value_type = pa.binary()
    return value_type, len(uniq) <= max(1, rows // 2)


def _string_array(col: np.ndarray, field: str, how: StringType | None) -> pa.Array:
    import pyarrow as pa

    uniq, codes = distinct(col, field)
    values = pa.array(uniq, type=pa.binary())  # numpy bytes: trailing NULs dropped
    value_type, dictionary = how or string_type(uniq, len(col))
    if value_type != pa.binary():
        values = values.cast(value_type)
    if dictionary:
        index_type = np.int32 if len(uniq) < 2**31 else np.int64
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(index_type)), values)
    return values.take(pa.array(codes))


def _column(name: str, col: np.ndarray, how: StringType | None = None) -> pa.Array:
    import pyarrow as pa

    kind = col.dtype.kind
    if kind == "c" or kind in "OVMm":
        raise CsFieldError(f"field {name!r}: {col.dtype} columns have no Arrow equivalent here")
    if kind in "SU":
        flat = col.reshape(-1)
        arr = _string_array(np.ascontiguousarray(flat), name, how)
    else:
        if col.dtype.byteorder == ">":
            col = col.astype(col.dtype.newbyteorder("="))
        flat = col.reshape(-1)  # a copy only when the column is strided
        arr = pa.array(flat)
    if col.ndim == 1:
        return arr
    k = int(np.prod(col.shape[1:]))
    if k == 0:
        raise CsFieldError(
            f"field {name!r}: empty sub-arrays {col.shape[1:]} have no Arrow equivalent here"
        )
    return pa.FixedSizeListArray.from_arrays(arr, k)


def to_arrow(ds: Dataset, strings: Mapping[str, StringType] | None = None) -> pa.Table:
    """An Arrow Table of the dataset (see the module docstring for the mapping).

    strings: how each string field goes to Arrow (``string_type``), decided
    from the field's values when not given; a table written in row groups
    gives every group the whole table's choice, so that they share a schema.
    """
    import pyarrow as pa

    strings = strings or {}
    cols = contiguous({name: ds.view(name) for name in ds.fields()})
    arrays = [_column(name, col, strings.get(name)) for name, col in cols.items()]
    names = ds.fields()
    schema = pa.schema(
        [pa.field(n, a.type, nullable=False) for n, a in zip(names, arrays, strict=True)],
        metadata={_KEY: schema_json(ds).encode()},
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def arrow_batches(ds: Dataset, target_bytes: int = 64 << 20) -> Iterator[pa.Table]:
    """The dataset as Arrow tables of about target_bytes each, one schema for all.

    Each is a slice of rows gathered only when due (of a lazy dataset, from
    its mapped sources), so a writer holds one at a time.
    """
    row_bytes = sum(
        np.dtype(f[1]).itemsize * math.prod(f[2] if len(f) > 2 else ()) for f in ds.descr()
    )
    step = max(1, target_bytes // max(row_bytes, 1))
    # A first pass over the string fields alone: each group's choice is the table's.
    text = {f[0]: math.prod(f[2] if len(f) > 2 else ()) for f in ds.descr() if f[1][1] in "SU"}
    seen: dict[str, set[bytes]] = {name: set() for name in text}
    for start in range(0, len(ds), step):
        part = ds.slice(start, start + step)  # lazy: only the viewed fields are read
        for name in text:
            seen[name].update(distinct(part.view(name).reshape(-1), name)[0].tolist())
    strings = {
        name: string_type(np.array(sorted(seen[name]), dtype=bytes), len(ds) * nelem)
        for name, nelem in text.items()
    }
    for start in range(0, max(len(ds), 1), step):
        yield to_arrow(ds.slice(start, start + step), strings)


def _one_chunk(chunked: Any) -> Any:
    import pyarrow as pa

    if isinstance(chunked, pa.ChunkedArray):
        if chunked.num_chunks == 1:
            return chunked.chunk(0)
        if chunked.num_chunks == 0:
            return pa.array([], type=chunked.type)
        return chunked.combine_chunks()
    return chunked


def _strings(arr: Any, name: str, width: int | None, budget: StringBudget) -> np.ndarray:
    import pyarrow as pa

    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    return fixed_width(
        arr.dictionary.to_pylist(), arr.indices.to_numpy(zero_copy_only=False), name, width, budget
    )


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_dictionary(t)
        or pa.types.is_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_string(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary_view(t)
    )


def _values(arr: Any, name: str, width: int | None, budget: StringBudget) -> np.ndarray:
    """A 1-D Arrow array of scalars or strings as numpy, zero-copy when possible."""
    import pyarrow as pa

    t = arr.type
    if _is_text(t):
        return _strings(arr, name, width, budget)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return arr.to_numpy(zero_copy_only=True)
    if pa.types.is_boolean(t):
        return arr.to_numpy(zero_copy_only=False)
    raise CsFieldError(f"field {name!r}: Arrow type {t} cannot be stored in a dataset")


def from_arrow(
    table: pa.Table, cls: type[Dataset] | None = None, *, source: str = "<arrow table>"
) -> Dataset:
    """A dataset from an Arrow Table (the inverse of ``to_arrow``).

    With the ``csfast`` schema record, every field gets back its numpy dtype,
    shape and string width. Otherwise: integer and float columns keep their
    type, fixed-size lists (and lists whose rows all have one length) become
    sub-arrays, strings become ``S<longest + 1>``. Nulls are refused, naming
    the field. A ``uid`` column becomes ``uint64``; without one, new uids are
    made.

    A record that disagrees with its column (a string field over numbers, a
    dtype of another kind or size, a shape with another element count) raises
    CsFormatError; a recorded string width is kept only up to twice the
    longest value plus 64 bytes (``string_width``), and string columns in all
    may take at most 256 times the table's Arrow bytes plus 64 MiB, each
    string at most 64 KiB (``csfast.csdat.StringBudget``). ``source`` names
    the table in error messages (read_parquet gives the file's path).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if cls is None:
        from ..dataset import Dataset

        cls = Dataset
    meta = table.schema.metadata or {}
    schema = parse_schema(meta.get(_KEY))
    n = table.num_rows
    budget = StringBudget(table.nbytes, source)
    cols: dict[str, np.ndarray] = {}
    for name, chunked in zip(table.column_names, table.columns, strict=True):
        arr = _one_chunk(chunked)
        if arr.null_count:
            raise CsFieldError(
                f"{source}: field {name!r}: {arr.null_count} null values; "
                "datasets cannot hold nulls"
            )
        dt, shape = schema.get(name, (None, None))
        width = dt.itemsize if dt is not None and dt.kind == "S" else None
        t = arr.type
        if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
            if pa.types.is_fixed_size_list(t):
                k = t.list_size
            else:
                lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
                if len(lengths) and (lengths != lengths[0]).any():
                    raise CsFieldError(
                        f"field {name!r}: list rows of different lengths cannot form a sub-array"
                    )
                k = int(lengths[0]) if len(lengths) else (int(np.prod(shape)) if shape else 0)
            inner = arr.flatten()
            if inner.null_count:
                raise CsFieldError(f"field {name!r}: null elements; datasets cannot hold nulls")
            values = _values(inner, name, width, budget)
            if shape is not None and math.prod(shape) != k:
                raise CsFormatError(
                    f"{source}: field {name!r}: the schema record's shape "
                    f"{shape} does not hold the {k} elements of a row"
                )
            out = values.reshape((n,) + (shape or (k,)))
        else:
            if shape:
                raise CsFormatError(
                    f"{source}: field {name!r}: the schema record gives "
                    f"shape {shape}, the column holds one value a row"
                )
            out = _values(arr, name, width, budget)
        if dt is not None:
            if (dt.kind in "SU") != (out.dtype.kind == "S") or (
                dt.kind not in "SU"
                and (dt.kind, dt.itemsize) != (out.dtype.kind, out.dtype.itemsize)
            ):
                raise CsFormatError(
                    f"{source}: field {name!r}: the schema record says "
                    f"{dt.str}, the column holds {out.dtype.str} values"
                )
            if dt.kind not in "SU" and out.dtype != dt:
                out = out.astype(dt)  # byte order restored
        cols[name] = out
    return cls.from_columns(cols, n)
