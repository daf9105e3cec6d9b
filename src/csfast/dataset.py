"""The Dataset: a table of items, one row per item, keyed by a 64-bit uid.

Columns are numpy arrays, one per field. A dataset loaded from a .cs file
views the file's memory map (private, copy-on-write: see tables.open_columns):
its columns are strided views, and nothing proportional to the row count
happens until a column is read. Two kinds of column exist, and no writable
array is ever shared:

- read-only arrays (views of a map, or of an array this module made read-only)
  may be shared between datasets; joins, appends, unions and row subsets of
  them are lazy (`column.Rows`: row indices into the sources) until a column
  is read, so an operation on mapped files costs its uid work and nothing for
  the columns it never reads; `materialize()` gathers them all, and `save`
  and the other writers gather them chunk by chunk into the file;
- writable arrays belong to exactly one dataset; operations copy them.

A dataset is *editable* unless loaded with ``writable=False``: then
``ds[field]`` hands out the column writable, as cryosparc-tools does. A
read-only column becomes writable in place, with no copy, when it views a map
that only this dataset has ever held (the loader records itself as the map's
owner; any dataset built from its columns clears that, see `share`): writing
then copies the touched pages of the map, never the file. Any other read-only
column is first copied. Internal reads use `_read`, which never makes a
column writable. Assigning a whole column (`ds["f"] = values`) or adding a
field replaces or creates an owned array; the file never changes.

This module is the container: construction, load / save, the mapping of
fields to columns, subsets and queries. How columns are held and copied is
in column.py, the combining operations (innerjoin, append, union,
interlace, replace) in joins.py: each method here states what the operation
means and calls the function of its name there. String encoding and
decoding is in strings.py.

Imports point down (dataset -> column, joins -> tables, strings, format -> _core),
with one documented exception: the conversion methods (``to_pandas``,
``from_arrow``, ``to_cryosparc``, ...) are thin hooks that import their
csfast.convert module inside the method, when called, so ``import csfast``
loads neither pandas nor pyarrow. csfast.convert uses only the public API
(``Dataset.from_columns``, ``view``, ``descr``, ``cols``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, BinaryIO, Literal

import numpy as np

from . import _core, joins, reorder, spill
from .column import (
    NATIVE_UID,
    Column,
    Field,
    Rows,
    as_column,
    field_of,
    gather,
    gather_columns,
    gather_jobs,
    increasing,
    is_column,
    lazy,
    owned_column,
    piece_spans,
    readonly,
    root_array,
    row_indices,
    row_number,
    row_slice,
    share,
    tools_field,
    uid_array,
    uid_values,
    writable_view,
)
from .errors import CsFieldError, CsResultError
from .format import (
    CsInfo,
    advise_scan,
    atomic_write,
    file_map_of,
    npy_header,
    write_all,
    write_rows,
)
from .row import Row, python_value
from .strings import decode, encode
from .tables import inspect, open_columns

__all__ = [
    "Dataset",
    "Field",
    "generate_uids",
    "NUMPY_FORMAT",
    "CSDAT_FORMAT",
    "DEFAULT_FORMAT",
    "NEWEST_FORMAT",
]

# Save formats, as cryosparc-tools numbers them.
NUMPY_FORMAT = 1  #: numpy .npy (the .cs format every cryoSPARC reads)
CSDAT_FORMAT = 2  #: cryosparc-tools' CSDAT stream (LZ4 compressed)
DEFAULT_FORMAT = NUMPY_FORMAT
NEWEST_FORMAT = CSDAT_FORMAT


def generate_uids(n: int = 0, *, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """n distinct random uids over the full unsigned 64-bit range."""
    rng = np.random.default_rng(seed)
    uids = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    while n > 1:
        repeated = _core.repeats([uids], 1 << 62)[1]
        if len(repeated) == 0:
            break
        uids[repeated] = rng.integers(0, 2**64, size=len(repeated), dtype=np.uint64)
    return uids


class Dataset(MutableMapping):
    """A table of items: a uid column and one column per field.

    Build one from an int n (n rows with new uids), a mapping or list of
    (field name, values), a numpy structured array, or another Dataset
    (copied); or load one with ``Dataset.load(path)``. Method names and
    semantics follow the cryosparc-tools ``Dataset`` (a mutable mapping of
    field names to columns, ``ds[i]`` a row); README lists the deliberate
    differences.
    """

    __slots__ = ("_cols", "_n", "_editable", "__weakref__")

    def __init__(
        self,
        allocate: int
        | Dataset
        | np.ndarray
        | Mapping[str, Any]
        | Sequence[tuple[str, Any]]
        | None = 0,
    ):
        self._cols: dict[str, np.ndarray | Rows] = {}
        self._editable = True
        if isinstance(allocate, Dataset):
            self._n = len(allocate)
            self._cols = {k: gather(c, None) for k, c in allocate._cols.items()}
            return
        if allocate is None or isinstance(allocate, (int, np.integer)):
            n = int(allocate or 0)
            if n < 0:
                raise ValueError(f"cannot allocate {n} rows")
            self._n = n
            self._cols["uid"] = generate_uids(n)
            return
        if isinstance(allocate, np.ndarray):
            if allocate.dtype.names is None or allocate.ndim != 1:
                raise TypeError("Dataset(array) needs a 1-D structured array")
            items = [(k, allocate[k]) for k in allocate.dtype.names]
        elif isinstance(allocate, Mapping):
            items = list(allocate.items())
        else:
            items = list(allocate)
        cols: dict[str, np.ndarray | Rows] = {
            str(k): owned_column(str(k), v, None) for k, v in items
        }
        lengths = {len(c) for c in cols.values()}
        if len(lengths) > 1:
            sizes = {k: len(c) for k, c in cols.items()}
            raise CsFieldError(f"fields have different lengths: {sizes}")
        self._n = lengths.pop() if lengths else 0
        if "uid" not in cols:
            cols = {"uid": generate_uids(self._n), **cols}
        self._cols = cols

    @classmethod
    def _from_columns(
        cls,
        n: int,
        cols: Mapping[str, np.ndarray | Rows],
        editable: bool = True,
        maps: Sequence[_core.FileMap] = (),
    ) -> Dataset:
        """A dataset of these columns. maps: the maps of a fresh load, which the
        dataset owns if editable; without them, every map the columns view
        becomes shared (another dataset holds it already)."""
        if not maps:
            for c in cols.values():
                share(c)
        ds = cls.__new__(cls)
        ds._n = n
        ds._cols = cols if isinstance(cols, dict) else dict(cols)  # the caller's dict: no copy
        ds._editable = editable
        for m in maps:
            m.owner = weakref.ref(ds) if editable else None
        return ds

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, np.ndarray],
        rows: int | None = None,
    ) -> Dataset:
        """A dataset of these column arrays, taken as they are (no copy).

        ``columns`` maps field names to numpy arrays of one length, in field
        order; ``rows`` is that length (needed only when there are no
        columns). A writable array becomes the dataset's own: do not write
        to it elsewhere afterwards. A read-only array is shared, and copied
        before the dataset edits it. ``uid`` becomes native ``uint64`` (a
        copy only when it is another integer type; a negative uid raises
        CsUidError); without it, new uids are made. For readers and
        converters that build their columns themselves; ``Dataset(mapping)``
        copies instead.
        """
        cols: dict[str, np.ndarray | Rows] = {}
        for k, c in columns.items():
            if not isinstance(c, np.ndarray) or c.ndim == 0 or c.dtype.hasobject:
                raise CsFieldError(
                    f"field {k!r}: a column must be a numpy array of rows without Python objects"
                )
            cols[str(k)] = c
        sizes = {k: len(c) for k, c in cols.items()}
        lengths = set(sizes.values()) | ({rows} if rows is not None else set())
        if len(lengths) > 1:
            raise CsFieldError(
                f"fields have different lengths: {sizes}"
                + (f" (rows={rows})" if rows is not None else "")
            )
        n = lengths.pop() if lengths else 0
        uid = cols.get("uid")
        if uid is None:
            cols = {"uid": generate_uids(n), **cols}
        else:
            cols["uid"] = uid_array(uid, "uid")  # type: ignore[arg-type]
        return cls._from_columns(n, cols)

    @classmethod
    def allocate(cls, size: int = 0, fields: Sequence[Field] = ()) -> Dataset:
        """size rows with new uids and zero-filled fields (as in cryosparc-tools)."""
        return cls(size).add_fields(fields)

    # ----------------------------------------------------------------- files

    @classmethod
    def load(
        cls,
        file: str | os.PathLike | BinaryIO | bytes | bytearray | memoryview,
        fields: Collection[str] | None = None,
        prefixes: Collection[str] | None = None,
        *,
        results: Collection[str] | None = None,
        mmap: bool = True,
        writable: bool = True,
    ) -> Dataset:
        """Open a .cs file (or a CSDAT stream, told by its magic).

        With mmap (the default) nothing is read but the header: columns are
        views of the file's private map, read page by page as they are used;
        the file descriptor is closed at once. ``ds[field]`` hands a column
        out writable; an edit in place (``ds[field] += 1``) changes this
        dataset's copy-on-write pages, never the file nor another dataset.
        ``writable=False`` keeps columns read-only views instead (an edit
        raises numpy's read-only error; ``ds[field] = values`` still works).
        ``fields`` / ``results`` keep only those fields, and the fields of
        those results (``result/field``), and uid; ``prefixes`` is
        cryosparc-tools' name for ``results`` (give one of them).
        ``mmap=False`` reads the file into memory instead.

        file may also be an open binary file or a bytes-like object: it is
        read whole (a stream cannot be mapped), then viewed without another
        copy; ``bytearray`` / ``memoryview`` data is copied once, so the
        dataset never aliases the caller's mutable buffer. Nothing is ever
        unpickled.
        """
        if prefixes is not None:
            if results is not None:
                raise TypeError("give results= or its cryosparc-tools name prefixes=, not both")
            results = prefixes
        table = open_columns(file, lambda info: _select_fields(info, fields, results), mmap=mmap)
        cols = table.columns
        if not mmap:
            # One pass over the mapped rows fills every owned column; reading
            # into a record array first would copy twice and need twice the memory.
            owned = {
                k: np.empty(c.shape, dtype=c.dtype)
                for k, c in cols.items()
                if not c.flags.writeable
            }
            gather_jobs([(cols[k], None, out) for k, out in owned.items()])
            cols = {**cols, **owned}
        kept: dict[str, np.ndarray | Rows] = {
            k: c if writable or not c.flags.writeable else readonly(c) for k, c in cols.items()
        }
        return cls._from_columns(table.info.rows, kept, writable, table.maps if mmap else [])

    @staticmethod
    def inspect(file: str | os.PathLike) -> dict[str, Any]:
        """The header of a .cs file or CSDAT stream as cryosparc-tools gives it.

        A dict with ``length``, ``dtype`` (fields as (name, dtype) or (name,
        dtype, shape), strings as ``"|O"``), ``compression`` and
        ``compressed_fields``. Reads the header only. ``csfast.inspect(path)``
        gives more (string widths, .npy version, data offset) as a CsInfo.
        """
        info = inspect(file)
        return {
            "length": info.rows,
            "dtype": [tools_field(*f) for f in info.fields],
            "compression": info.compression,
            "compressed_fields": [f[0] for f in info.fields if f[0] in info.compressed_fields],
        }

    def save(
        self,
        file: str | os.PathLike | BinaryIO,
        *,
        format: int = DEFAULT_FORMAT,
        fsync: bool = True,
    ) -> None:
        """Write the dataset as a .cs file (``NUMPY_FORMAT``) or CSDAT stream (``CSDAT_FORMAT``).

        NUMPY_FORMAT bytes are what ``numpy.save`` writes through a file
        handle for ``self.to_records()`` with uid first and every string column
        ``S<longest + 1>`` (``U`` columns are encoded to UTF-8). Rows are
        interleaved chunk by chunk, so no full-size copy is made.
        CSDAT_FORMAT is cryosparc-tools' LZ4-compressed stream (see ``stream``).
        To a path, the file appears complete or not at all; the old file
        survives any failure; a symbolic link is followed, its target
        replaced (docs/writes.md). To an open binary file, the bytes are
        written at its position: that cannot be atomic, and a failure may
        leave part of them written.
        """
        if format == CSDAT_FORMAT:
            from . import csdat

            csdat.write(file, self._cols, self._n, "lz4", fsync=fsync, read=_column_array)
            return
        if format != NUMPY_FORMAT:
            raise TypeError(
                f"invalid save format {format!r}: use NUMPY_FORMAT (1) or CSDAT_FORMAT (2)"
            )
        path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else None
        with contextlib.ExitStack() as stack:
            # Beside the output, whose disk is meant to have room for it.
            staged = _stage(self._cols, self._n, spill.beside(path), stack)
            cols, dtype = self._save_layout({k: n for s in staged for k, n in s.longest.items()})
            header = npy_header(dtype, self._n)
            runs = None if staged else _whole_rows(cols, dtype)
            _advise_scans(cols)

            def write(f):
                write_all(f.write, header)  # a raw file given by the caller may write part
                if runs is not None:
                    for run in runs:  # the rows as they lie in the files: no gather
                        write_all(f.write, run)
                elif staged:
                    _write_staged(f, cols, dtype, self._n, staged)
                else:
                    write_rows(f, self._n, dtype.itemsize, functools.partial(_fill, cols, dtype))

            if path is not None:
                atomic_write(path, write, fsync=fsync)
            else:
                write(file)

    def stream(self, compression: Literal["lz4"] | None = None) -> Iterator[bytes | memoryview]:
        """The dataset as CSDAT stream bytes, chunk by chunk (what ``save(format=CSDAT_FORMAT)``
        writes, there with ``compression="lz4"``); ``Dataset.load`` reads them back."""
        from . import csdat

        return csdat.stream(dict(self._cols), self._n, compression, read=_column_array)

    def _save_layout(
        self, longest: Mapping[str, int] | None = None
    ) -> tuple[dict[str, Column], np.dtype]:
        """The columns to save, uid first, and the packed row dtype of the
        file: strings ``S<longest + 1>`` (longest given for some, or found).
        Lazy columns stay lazy."""
        names = (
            ["uid"] + [k for k in self._cols if k != "uid"]
            if "uid" in self._cols
            else list(self._cols)
        )
        cols: dict[str, Column] = {}
        descr = []
        for k in names:
            col = self._cols[k]
            if col.dtype.kind == "U":
                col = encode(self._read(k), k)
            dt = col.dtype
            if dt.kind == "S":
                most = longest[k] if longest and k in longest else _longest(col)
                dt = np.dtype(f"S{most + 1}")
            cols[k] = col
            descr.append((k, dt, col.shape[1:]))
        return cols, np.dtype(descr)

    def to_records(self, fixed: bool = False) -> np.ndarray:
        """The rows as one numpy structured array (packed, columns in order).

        ``fixed`` is accepted for cryosparc-tools compatibility: string columns
        are always fixed-width bytes here.
        """
        dtype = np.dtype([(k, c.dtype, c.shape[1:]) for k, c in self._cols.items()])
        out = np.empty(self._n, dtype=dtype)
        _fill(self._cols, dtype, 0, out.view(np.uint8).reshape(self._n, dtype.itemsize))
        return out

    def __array__(self, dtype=None, copy=None):
        rec = self.to_records()
        return rec if dtype is None else rec.astype(dtype)

    # ------------------------------------------------------------- mapping

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._cols))

    def __contains__(self, key: object) -> bool:
        return key in self._cols

    def __getitem__(self, key: Any) -> Any:
        """``ds[field]``: the column (strings as a ``StrColumn``); ``ds[i]``: a Row;
        ``ds[a:b]``: a list of Rows (as cryosparc-tools).

        In an editable dataset the column is writable and is the dataset's
        own: editing it edits the dataset (and nothing else).
        """
        if not isinstance(key, str):
            if isinstance(key, slice):
                return [Row(self, i) for i in range(*key.indices(self._n))]
            i = row_number(key, self._n)
            return Row(self, i)
        if not self._editable:
            return as_column(self._read(key))
        col = self._col(key)
        if isinstance(col, Rows):
            col = self._cols[key] = gather(col, None)
        elif not col.flags.writeable:
            owner = getattr(file_map_of(col), "owner", None)
            view = writable_view(col) if owner is not None and owner() is self else None
            col = self._cols[key] = view if view is not None else gather(col, None)
        return as_column(col)

    def _col(self, key: str) -> np.ndarray | Rows:
        try:
            return self._cols[key]
        except KeyError:
            raise CsFieldError(f"no field {key!r} in dataset (fields: {_names(self)})") from None

    def _read(self, key: str) -> np.ndarray:
        """A column for reading: never made writable (a lazy one is gathered once)."""
        col = self._col(key)
        if isinstance(col, Rows):
            # Gathered once. Not editable: shared read-only like its source.
            out = gather(col, None)
            col = self._cols[key] = out if self._editable else readonly(out)
        return col

    def rows(self) -> list[Row]:
        """Every row as a Row (slow for large datasets: prefer columns)."""
        return [Row(self, i) for i in range(self._n)]

    def __setitem__(self, key: str, value: Any) -> None:
        """Assign a whole column (broadcasting), or add a new field from an array.

        An existing owned column is written in place; a read-only one (a
        shared column) or a view of a file's map is replaced by a new owned
        column, so an array taken from ``ds[key]`` before keeps the old values.
        """
        col = self._cols.get(key)
        if col is None:
            self._cols[key] = owned_column(key, value, self._n)
            return
        if is_column(value, col):  # ds[key] += 1 assigns the column it edited in place
            return
        vt = np.asarray(value).dtype
        if col.dtype.kind == "S" and vt.kind == "U":
            value = encode(np.asarray(value), key)
            vt = value.dtype
        # Longer strings widen the column instead of being cut short. A column
        # that views a map is replaced too: writing it in place would copy every
        # page of the table (all fields), not just this column.
        wider = (
            col.dtype.kind in "SU"
            and vt.kind == col.dtype.kind
            and vt.itemsize > col.dtype.itemsize
        )
        if (
            isinstance(col, Rows)
            or not col.flags.writeable
            or wider
            or file_map_of(col) is not None
        ):
            col = self._cols[key] = np.empty(col.shape, dtype=vt if wider else col.dtype)
        if key == "uid":
            value = uid_array(np.asarray(value), "uid") if np.ndim(value) else value
        col[...] = value

    def __delitem__(self, key: str) -> None:
        self.drop_fields([key])

    def __eq__(self, other: object) -> bool:
        """Same fields, dtypes and values in the same order."""
        return (
            isinstance(other, Dataset)
            and len(self) == len(other)
            and self.descr() == other.descr()
            and all(np.array_equal(self._read(k), other._read(k)) for k in self._cols)
        )

    __hash__ = None  # type: ignore[assignment]

    def is_equivalent(self, other: object) -> bool:
        """Same fields and values, regardless of field order."""
        return (
            isinstance(other, Dataset)
            and len(self) == len(other)
            and set(self.descr()) == set(other.descr())
            and all(np.array_equal(self._read(k), other._read(k)) for k in self._cols)
        )

    def cols(self) -> dict[str, np.ndarray]:
        """Every column by field name (each as ``ds[field]`` gives it)."""
        self.materialize()
        return {k: self[k] for k in self._cols}

    def materialize(self) -> Dataset:
        """Gather every lazy column now (returns self).

        Joins, appends, unions and row subsets of read-only (mapped) columns
        are lazy: they hold row indices into their sources, and a column is
        gathered when first read. This gathers them all at once, the fields
        of one mapped table in one pass over its rows.
        """
        lazy = {k: c for k, c in self._cols.items() if isinstance(c, Rows)}
        if lazy:
            outs = {k: np.empty(c.shape, dtype=c.dtype) for k, c in lazy.items()}
            gather_columns(lazy, 0, self._n, outs)
            for k, out in outs.items():
                self._cols[k] = out if self._editable else readonly(out)
        return self

    def view(self, field: str) -> np.ndarray:
        """A column as a plain read-only array, never copied or made writable
        (for readers such as converters; a lazy row subset is gathered once).
        It views the dataset's column: a later edit of the dataset shows in it."""
        col = self._read(field)
        if col.flags.writeable:
            col = readonly(col.view())
        return col

    def fields(self, exclude_uid: bool = False) -> list[str]:
        """Field names in column order."""
        return [k for k in self._cols if not (exclude_uid and k == "uid")]

    def descr(
        self, exclude_uid: bool = False, *, strings: Literal["bytes", "str"] = "bytes"
    ) -> list[Field]:
        """numpy-style (name, dtype, [shape]) of every field, in column order.

        ``strings="str"`` describes fields as cryosparc-tools does: string
        fields as ``"|O"`` (its Python-object columns) and uid as ``"<u8"``;
        the default gives the stored dtype (``"|S96"``).
        """
        if strings not in ("bytes", "str"):
            raise ValueError(f"strings must be 'bytes' or 'str', not {strings!r}")
        out = []
        for k, c in self._cols.items():
            if exclude_uid and k == "uid":
                continue
            out.append(
                tools_field(k, c.dtype, tuple(c.shape[1:])) if strings == "str" else field_of(k, c)
            )
        return out

    def prefixes(self) -> list[str]:
        """Result names (the part before '/') in column order, each once."""
        seen: dict[str, None] = {}
        for k in self._cols:
            if k != "uid":
                seen.setdefault(k.split("/", 1)[0])
        return list(seen)

    def decode(self, field: str) -> np.ndarray:
        """A string column as Python ``str`` (numpy ``U``), decoded from UTF-8.

        Decodes each distinct value once, so path columns with few distinct
        values are fast. Never done as a side effect of load.
        """
        col = self._read(field)
        if col.dtype.kind not in "SU":
            raise CsFieldError(f"field {field!r} is {col.dtype}, not a string column")
        return decode(col, field)

    # ------------------------------------------------------------- fields

    def copy(self) -> Dataset:
        """A deep copy: every column an owned, writable, contiguous array."""
        return type(self)(self)

    def add_fields(
        self, fields: Sequence[str] | Sequence[Field], dtypes: str | Sequence[Any] | None = None
    ) -> Dataset:
        """Add zero-filled fields, given as Field tuples or as names with dtypes.

        Fields that already exist are left alone. Returns self.
        """
        if dtypes is not None:
            if isinstance(dtypes, str):
                dtypes = [d.strip() for d in dtypes.split(",")]
            if len(dtypes) != len(fields):
                raise ValueError(f"{len(fields)} field names but {len(dtypes)} dtypes")
            specs = list(zip(fields, dtypes, strict=True))
        else:
            specs = [
                (f[0], (np.dtype(f[1]), tuple(f[2])) if len(f) > 2 and f[2] else f[1])
                for f in fields
            ]
        for name, dt in specs:
            if name in self._cols:
                continue
            dt = np.dtype(dt)
            if dt.kind == "O":  # cryosparc-tools' string fields: here empty bytes
                dt = np.dtype("S1")
            if dt.hasobject:
                raise CsFieldError(f"field {name!r}: object dtypes cannot be stored")
            base, shape = (dt.base, dt.shape) if dt.subdtype else (dt, ())
            self._cols[str(name)] = np.zeros((self._n,) + tuple(shape), dtype=base)
        return self

    def _target(self, copy: bool) -> Dataset:
        return self.copy() if copy else self

    def filter_fields(
        self, names: Collection[str] | Callable[[str], bool], *, copy: bool = False
    ) -> Dataset:
        """Keep only the given fields (and uid). Returns self, or a copy."""
        keep = names if callable(names) else set(names).__contains__
        missing = [] if callable(names) else [k for k in names if k not in self._cols]
        if missing:
            raise CsFieldError(f"no fields {missing} in dataset")
        ds = self._target(copy)
        ds._cols = {k: c for k, c in ds._cols.items() if k == "uid" or keep(k)}
        return ds

    def _with_fields(self, names: Collection[str]) -> Dataset:
        """A new dataset of these fields of this one, in this one's order:
        read-only and lazy columns shared, owned ones copied (no writable
        array is ever shared), so mapped and lazy columns stay uncopied."""
        keep = set(names)
        cols = {
            k: gather(c, None) if isinstance(c, np.ndarray) and c.flags.writeable else c
            for k, c in self._cols.items()
            if k in keep
        }
        return type(self)._from_columns(self._n, cols, self._editable)

    def filter_prefixes(self, prefixes: Collection[str], *, copy: bool = False) -> Dataset:
        """Keep only the fields of the given results (and uid)."""
        wanted = set(prefixes)
        return self.filter_fields(lambda k: "/" in k and k.split("/", 1)[0] in wanted, copy=copy)

    def filter_prefix(
        self, keep_prefix: str, *, rename: str | None = None, copy: bool = False
    ) -> Dataset:
        """Keep one result's fields, optionally renaming its prefix."""
        ds = self.filter_prefixes([keep_prefix], copy=copy)
        if rename and rename != keep_prefix:
            ds.rename_prefix(keep_prefix, rename)
        return ds

    def drop_fields(
        self, names: Collection[str] | Callable[[str], bool], *, copy: bool = False
    ) -> Dataset:
        """Remove fields (never uid). Returns self, or a copy."""
        drop = names if callable(names) else set(names).__contains__
        if not callable(names) and "uid" in names:
            raise CsFieldError("cannot drop the uid field")
        ds = self._target(copy)
        ds._cols = {k: c for k, c in ds._cols.items() if k == "uid" or not drop(k)}
        return ds

    def rename_fields(
        self, field_map: Mapping[str, str] | Callable[[str], str], *, copy: bool = False
    ) -> Dataset:
        """Rename fields by a mapping or a function of the name; order is kept."""
        if not callable(field_map) and field_map.get("uid", "uid") != "uid":
            raise CsFieldError("cannot rename the uid field")
        fn = field_map if callable(field_map) else (lambda k: field_map.get(k, k))
        ds = self._target(copy)
        # As in cryosparc-tools, uid is never passed to the renaming function.
        renamed = {(k if k == "uid" else fn(k)): c for k, c in ds._cols.items()}
        if len(renamed) != len(ds._cols):
            raise CsFieldError("renaming would give two fields the same name")
        ds._cols = renamed
        return ds

    def rename_field(self, current_name: str, new_name: str, *, copy: bool = False) -> Dataset:
        if current_name not in self._cols:
            raise CsFieldError(f"no field {current_name!r} in dataset")
        return self.rename_fields({current_name: new_name}, copy=copy)

    def rename_prefix(self, old_prefix: str, new_prefix: str, *, copy: bool = False) -> Dataset:
        """Rename a result: ``old/field`` becomes ``new/field``."""

        def fn(k: str) -> str:
            head, sep, tail = k.partition("/")
            return f"{new_prefix}/{tail}" if sep and head == old_prefix else k

        return self.rename_fields(fn, copy=copy)

    def copy_fields(self, old_fields: Sequence[str], new_fields: Sequence[str]) -> Dataset:
        """Copy the values of old_fields into (possibly new) new_fields."""
        for old, new in zip(old_fields, new_fields, strict=True):
            self[new] = np.array(self._read(old))
        return self

    def to_list(self, exclude_uid: bool = False) -> list[list]:
        """Every row as a list of plain Python values (see ``Row.to_list``)."""
        names = self.fields(exclude_uid)
        if not names:
            return [[] for _ in range(self._n)]
        return [list(r) for r in zip(*(self._values(k) for k in names), strict=True)]

    def to_dict(self, exclude_uid: bool = False) -> dict[str, list]:
        """{field: column as a list of plain Python values} (not in cryosparc-tools)."""
        return {k: self._values(k) for k in self.fields(exclude_uid)}

    def _values(self, field: str) -> list:
        """A column as plain Python values: str for strings, lists for sub-arrays."""
        col = self._read(field)
        if col.dtype.kind == "S" and col.ndim == 1:
            return self.decode(field).tolist()
        if col.dtype.kind == "S":
            return [python_value(col, i) for i in range(self._n)]
        return col.tolist()

    def extend(self, *others: Dataset, repeat_allowed: bool = False) -> Dataset:
        """Append the rows of others to this dataset, in place; returns self.

        Every other dataset must have at least this dataset's fields (with the
        same dtypes; strings widen); their other fields are left out. Unless
        ``repeat_allowed``, a uid in two rows raises CsUidError, this
        dataset's rows included (cryosparc-tools checks only among others).
        """
        grown = joins.extend(self, others, repeat_allowed)
        if grown is not None:
            self._cols, self._n = grown._cols, grown._n
        return self

    def reassign_uids(self) -> Dataset:
        """Give every row a new uid."""
        self._cols["uid"] = generate_uids(self._n)
        return self

    # ------------------------------------------------------------- rows

    def _subset(self, index: np.ndarray) -> Dataset:
        """Rows at index: lazy for read-only columns, copies for owned ones."""
        composed: dict[tuple, Any] = {}  # lazy columns of one table share one row index
        cols: dict[str, np.ndarray | Rows] = {}
        for k, c in self._cols.items():
            rows = lazy(c, index, composed)
            cols[k] = gather(c, index) if rows is None else rows
        return type(self)._from_columns(len(index), cols, self._editable)

    def subset(self, rows: Collection[Row]) -> Dataset:
        """The given rows (Rows of this dataset), in that order."""
        return self.take([r.idx for r in rows])

    def take(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The rows at the given indices, in that order."""
        return self._subset(row_indices(indices, self._n))

    def mask(self, mask: Sequence[bool] | np.ndarray) -> Dataset:
        """The rows where mask is True."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != (self._n,):
            raise ValueError(f"mask of shape {m.shape} does not match {self._n} rows")
        return self._subset(np.flatnonzero(m))

    def slice(self, start: int = 0, stop: int | None = None, step: int = 1) -> Dataset:
        """Rows in range(start, stop, step); views for read-only columns."""
        s = slice(start, stop, step)
        n = len(range(*s.indices(self._n)))
        composed: dict[tuple, Any] = {}
        cols = {
            k: np.array(c[s])
            if isinstance(c, np.ndarray) and c.flags.writeable
            else row_slice(c, s, composed)
            for k, c in self._cols.items()
        }
        return type(self)._from_columns(n, cols, self._editable)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self._n:,} rows, {len(self._cols)} fields)"]
        groups: dict[str, list[str]] = {}
        for k, c in self._cols.items():
            head, sep, tail = k.partition("/")
            shape = f" {tuple(c.shape[1:])}" if len(c.shape) > 1 else ""
            groups.setdefault(head + sep, []).append(
                f"{tail if sep else ''}: {c.dtype.str}{shape}" if sep else f"{c.dtype.str}{shape}"
            )
        for head, items in groups.items():
            if head.endswith("/"):
                lines.append(f"  {head} " + ", ".join(items))
            else:
                lines.append(f"  {head}: {items[0]}")
        return "\n".join(lines)

    # --------------------------------------------------- combining datasets

    def _uids(self) -> np.ndarray:
        """The uid column as native uint64 (a strided view where possible)."""
        if "uid" not in self._cols:
            raise CsFieldError("dataset has no uid field; it cannot be joined or checked")
        col = self._read("uid")
        return col if col.dtype == NATIVE_UID else col.astype(NATIVE_UID)

    @classmethod
    def common_fields(cls, *datasets: Dataset, assert_same_fields: bool = False) -> list[Field]:
        """Fields present in every dataset, in the first one's order.

        String fields of different widths are common (at the widest width);
        the same name with any other dtype difference raises CsFieldError
        (cryosparc-tools leaves such a field out).
        """
        if not datasets:
            return []
        merged = joins.merge_fields(datasets, common=True, assert_same=assert_same_fields)
        return [(k, dt.str, shape) if shape else (k, dt.str) for k, (dt, shape) in merged.items()]

    def innerjoin(self, *others: Dataset, assert_no_drop: bool = False) -> Dataset:
        """Rows whose uid is in this dataset and every other, joined on uid.

        Output rows follow this dataset's order, its duplicate uids kept; for
        a uid repeated in a later dataset the last row holding it is used. A
        field in several datasets comes from the last one that has it.
        ``assert_no_drop`` raises CsUidError, before any column is copied,
        when a row of this dataset has no match.

        Differences from cryosparc-tools: fields are in order of first
        appearance across the inputs (uid where the first input has it); a
        string field takes the width of the input it comes from; a field
        with different dtypes (other than string widths) in two inputs raises
        CsFieldError naming it; every uid joins, 2**64 - 1 included (which
        cryosparc-tools 5.0 drops).
        """
        if not others:
            return self
        return joins.innerjoin(type(self), (self,) + others, assert_no_drop)

    @classmethod
    def innerjoin_many(cls, *datasets: Dataset) -> Dataset:
        """Inner join of any number of datasets on uid (see ``innerjoin``).

        No datasets give an empty dataset; one gives a copy of it.
        """
        if not datasets:
            return cls()
        if len(datasets) == 1:
            return cls(datasets[0])
        return joins.innerjoin(cls, datasets, False)

    def append(
        self, *others: Dataset, assert_same_fields: bool = False, repeat_allowed: bool = False
    ) -> Dataset:
        """Concatenate datasets (a new dataset); see ``append_many``."""
        if not others:
            return self
        return type(self).append_many(
            self, *others, assert_same_fields=assert_same_fields, repeat_allowed=repeat_allowed
        )

    @classmethod
    def append_many(
        cls, *datasets: Dataset, assert_same_fields: bool = False, repeat_allowed: bool = False
    ) -> Dataset:
        """Rows of every dataset in argument order; empty ones skipped.

        Columns are the fields common to all non-empty datasets, in the first
        one's order; string columns take the widest width. With
        ``assert_same_fields`` differing fields raise CsFieldError naming
        them. Unless ``repeat_allowed``, a uid in two rows raises CsUidError
        naming some of them and the datasets (argument positions) that hold
        them. No datasets give an empty dataset; only empty ones give a copy
        of the first.

        Differences from cryosparc-tools: an output field with two dtypes
        (other than string widths) raises CsFieldError where cryosparc-tools
        silently leaves it out; errors are CsError subclasses with messages,
        not bare AssertionErrors.
        """
        return joins.append(cls, datasets, assert_same_fields, repeat_allowed)

    def union(
        self, *others: Dataset, assert_same_fields: bool = False, assume_unique: bool = False
    ) -> Dataset:
        """Rows of every dataset, the first occurrence of each uid winning."""
        if not others:
            return self
        return type(self).union_many(
            self, *others, assert_same_fields=assert_same_fields, assume_unique=assume_unique
        )

    @classmethod
    def union_many(
        cls, *datasets: Dataset, assert_same_fields: bool = False, assume_unique: bool = False
    ) -> Dataset:
        """Union on uid in input order: the first row holding each uid is kept.

        Fields as in ``append_many`` (empty datasets skipped). ``assume_unique``
        is accepted for compatibility; the result is the same either way.
        """
        return joins.union(cls, datasets, assert_same_fields)

    def interlace(self, *datasets: Dataset, assert_same_fields: bool = False) -> Dataset:
        """Alternate rows: self[0], d1[0], d2[0], self[1], ...

        The datasets must have the same length (else CsError) and no uid in
        common (else CsUidError); fields as in ``append_many``.
        """
        if not datasets:
            return self
        return joins.interlace((self,) + datasets, assert_same_fields)

    def replace(
        self,
        query: Mapping[str, Any],
        *others: Dataset,
        assume_disjoint: bool = False,
        assume_unique: bool = False,
    ) -> Dataset:
        """Drop the rows matching query and the rows whose uid is in others, append others.

        Every non-empty dataset must have the same fields (else CsFieldError);
        the result has this dataset's field order. An empty query drops no
        row by itself. ``assume_disjoint`` skips the uid check (rows of others
        whose uid is also here are then kept twice); ``assume_unique`` is
        accepted for compatibility.
        """
        return joins.replace(self, query, others, assume_disjoint)

    # ------------------------------------------------------------- queries

    def query_mask(self, query: Mapping[str, Any], invert: bool = False) -> np.ndarray:
        """Rows whose every queried field is among the given values (ANDed).

        Each value is a scalar or a collection (a set too). ``uid`` and other
        uint64 fields are matched exactly through the hash kernel, even for a
        Python list mixing small ints and ints >= 2**63 (numpy, and so
        cryosparc-tools, compares those as float64: 2**64 - 2 matches
        2**64 - 1); negative or non-integer uids raise CsUidError. Python
        strings match UTF-8 bytes. A field the dataset lacks raises
        CsFieldError (a KeyError, as in cryosparc-tools); a sub-array field
        raises CsFieldError.
        """
        missing = [k for k in query if k not in self._cols]
        if missing:
            raise CsFieldError(f"fields not in dataset: {', '.join(map(str, missing))}")
        mask = None
        for k, values in query.items():
            found = self._isin(k, values)
            mask = found if mask is None else np.logical_and(mask, found, out=mask)
        if mask is None:
            mask = np.ones(self._n, dtype=bool)
        return np.logical_not(mask, out=mask) if invert else mask

    def _isin(self, field: str, values: Any) -> np.ndarray:
        if field == "uid":
            return spill.isin(self._uids(), uid_values(values, "query on uid"))
        col = self._read(field)
        if col.ndim != 1:
            raise CsFieldError(
                f"cannot query field {field!r}: it is a sub-array of shape {col.shape[1:]}"
            )
        if col.dtype.kind == "u" and col.dtype.itemsize == 8:
            return spill.isin(
                col if col.dtype == NATIVE_UID else col.astype(NATIVE_UID),
                uid_values(values, f"query on {field!r}"),
            )
        vals = np.asarray(list(values) if isinstance(values, (set, frozenset)) else values)
        if vals.size == 0:
            return np.zeros(self._n, dtype=bool)
        if col.dtype.kind == "S" and vals.dtype.kind == "U":
            vals = encode(vals, field)
        elif col.dtype.kind == "U" and vals.dtype.kind == "S":
            vals = decode(vals, field)
        return np.isin(col, vals)

    def query(self, query: Mapping[str, Any] | Callable[[Row], bool]) -> Dataset:
        """Rows matching a {field: value or values} query (see ``query_mask``).

        A function of a Row works too, slowly (as in cryosparc-tools).
        """
        if callable(query):
            keep = [bool(query(Row(self, i))) for i in range(self._n)]
            return self.mask(np.array(keep, dtype=bool).reshape(self._n))
        return self._subset(spill.nonzero_rows(self.query_mask(query)))

    def subset_uids(self, uids: Any) -> Dataset:
        """Rows whose uid is in uids, in this dataset's order (duplicates of this dataset kept)."""
        found = spill.isin(self._uids(), uid_values(uids, "subset_uids"))
        return self._subset(spill.nonzero_rows(found))

    def split_by(self, field: str) -> dict[Any, Dataset]:
        """{value: rows with that value} for every distinct value of a 1-D field.

        Keys are Python scalars in order of first appearance (as in
        cryosparc-tools), rows keep their order within each part. Each column
        is reordered once by value; the parts are read-only slices of that
        copy (lazy rows of a mapped column), so many small parts cost one pass.
        Differences from cryosparc-tools: keys of string columns are bytes,
        and every NaN falls in one part.
        """
        col = self._read(field)
        if col.ndim != 1:
            raise CsFieldError(f"split_by needs a 1-D field; {field!r} has shape {col.shape[1:]}")
        if self._n == 0:
            return {}
        values, first, inverse = np.unique(col, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        # Rows grouped by value (stable, so each part keeps the dataset's order).
        order = np.argsort(inverse, kind="stable")
        ends = np.cumsum(np.bincount(inverse, minlength=len(values))).tolist()
        composed: dict[tuple, Any] = {}
        grouped: dict[str, np.ndarray | Rows] = {}
        for k, c in self._cols.items():
            rows = lazy(c, order, composed)
            grouped[k] = readonly(gather(c, order)) if rows is None else rows
        keys = values.tolist()
        out: dict[Any, Dataset] = {}
        for j in np.argsort(first, kind="stable").tolist():
            part = slice(ends[j - 1] if j else 0, ends[j])
            cols = {k: row_slice(c, part, composed) for k, c in grouped.items()}
            out[keys[j]] = type(self)._from_columns(part.stop - part.start, cols, self._editable)
        return out

    # ----------------------------------------- conversions (csfast.convert)
    # Thin hooks into csfast.convert, each importing its module only when
    # called (the documented exception to "layers point down": see the
    # module docstring).

    def to_pandas(self, strings: Literal["bytes", "str"] = "bytes", *, copy: bool = True) -> Any:
        """A pandas DataFrame; see ``csfast.convert.to_pandas``."""
        from .convert.frames import to_pandas

        return to_pandas(self, strings=strings, copy=copy)

    @classmethod
    def from_pandas(cls, df: Any, *, copy: bool = True) -> Dataset:
        """A dataset from a DataFrame; see ``csfast.convert.from_pandas``."""
        from .convert.frames import from_pandas

        return from_pandas(df, cls, copy=copy)

    def to_arrow(self) -> Any:
        """A pyarrow Table; see ``csfast.convert.to_arrow``."""
        from .convert.arrow import to_arrow

        return to_arrow(self)

    @classmethod
    def from_arrow(cls, table: Any) -> Dataset:
        """A dataset from a pyarrow Table; see ``csfast.convert.from_arrow``."""
        from .convert.arrow import from_arrow

        return from_arrow(table, cls)

    def to_cryosparc(self) -> Any:
        """A cryosparc-tools Dataset; see ``csfast.convert.to_cryosparc``."""
        from .convert.cryosparc import to_cryosparc

        return to_cryosparc(self)

    @classmethod
    def from_cryosparc(cls, d: Any) -> Dataset:
        """A dataset from a cryosparc-tools Dataset; see ``csfast.convert.from_cryosparc``."""
        from .convert.cryosparc import from_cryosparc

        return from_cryosparc(d, cls)


def _names(ds: Dataset, most: int = 8) -> str:
    names = list(ds._cols)
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _offset(dtype: np.dtype, name: str) -> int:
    """The byte offset of a field in a structured dtype's row."""
    return dtype.fields[name][1]  # type: ignore[index]  # a structured dtype has fields


def _select_fields(
    info: CsInfo, fields: Collection[str] | None, results: Collection[str] | None
) -> list[str]:
    names = list(info.dtype.names or ())
    if fields is None and results is None:
        return names
    wanted = set(fields or ())
    missing = sorted(wanted - set(names))
    if missing:
        raise CsFieldError(f"{info.path}: no fields {missing}")
    wanted_results = set(results or ())
    have = {k.split("/", 1)[0] for k in names if "/" in k}
    if wanted_results - have:
        raise CsResultError(f"{info.path}: no results {sorted(wanted_results - have)}")
    return [
        k
        for k in names
        if k == "uid" or k in wanted or ("/" in k and k.split("/", 1)[0] in wanted_results)
    ]


def _column_array(col: Column) -> np.ndarray:
    """A column's values as an array, gathered (and not kept) if it is lazy."""
    return gather(col, None) if isinstance(col, Rows) else col


def _longest(col: Column) -> int:
    """The longest string of a string column, lazy or not, in characters."""
    if isinstance(col, Rows):
        return max((_core.str_maxlen(src, idx) for src, idx in col.pieces), default=0)
    return _core.str_maxlen(col)


def _whole_rows(cols: Mapping[str, Column], dtype: np.dtype) -> list[np.ndarray] | None:
    """The bytes of the rows to write as runs of whole rows of tables (mapped
    files) that already have dtype's exact layout, in order; None unless
    every column is such a run (a loaded file, an append of files of one
    layout), which then needs no gather: the runs are written as they lie.
    """
    runs: list[tuple[int, int, int]] | None = None  # (table id, first row, rows) per piece
    tables: dict[int, np.ndarray] = {}
    for k, col in cols.items():
        pieces = col.pieces if isinstance(col, Rows) else ((col, None),)
        mine = []
        for src, idx in pieces:
            table = root_array(src)
            if idx is not None or table.dtype != dtype or src.strides[0] != dtype.itemsize:
                return None
            skip = src.__array_interface__["data"][0] - table.__array_interface__["data"][0]
            first, field_at = divmod(skip, dtype.itemsize)
            if field_at != _offset(dtype, k) or not table.flags.c_contiguous:
                return None
            tables[id(table)] = table
            mine.append((id(table), first, len(src)))
        if runs is None:
            runs = mine
        elif mine != runs:
            return None
    if runs is None:
        return None
    return [tables[t][first : first + rows].view(np.uint8) for t, first, rows in runs if rows]


def _advise_scans(cols: Mapping[str, Column]) -> None:
    """Read-ahead for the mapped sources a save reads in row order: whole
    pieces and increasing row subsets (an append, a subset by uid, a loaded
    file), not a join's shuffled rows (read-ahead there only costs)."""
    tables = {}
    in_order: dict[int, bool] = {}  # the columns of one table share their index
    for col in cols.values():
        for src, idx in col.pieces if isinstance(col, Rows) else ((col, None),):
            if idx is not None and id(idx) not in in_order:
                in_order[id(idx)] = increasing(idx)
            if idx is None or in_order[id(idx)]:
                table = root_array(src)
                tables[id(table)] = table
    for table in tables.values():
        advise_scan(table)


def _stage(
    cols: Mapping[str, Column],
    n: int,
    parent: str | os.PathLike[str] | None,
    stack: contextlib.ExitStack,
) -> list[reorder.Staged]:
    """The columns read in shuffled order from tables larger than the memory
    budget (``reorder.far_groups``), staged by output range in a spill folder
    in parent, which stack removes; [] when there are none."""
    budget = spill.memory_limit()
    far = reorder.far_groups(cols, budget)
    if not far:
        return []
    folder = stack.enter_context(spill.SpillFolder(parent))
    row_bytes = sum(c.dtype.itemsize * int(np.prod(c.shape[1:])) for c in cols.values())
    ranges = reorder.range_rows(n, row_bytes, budget)
    return [reorder.Staged(group, ranges, budget, folder) for group in far]


def _write_staged(
    f: BinaryIO, cols: Mapping[str, Column], dtype: np.dtype, n: int, staged: list[reorder.Staged]
) -> None:
    """Write the rows of cols an output range at a time, the staged pieces'
    values read back from their range's bucket."""
    ranges = staged[0].ranges
    owner = {piece: s for s in staged for piece in s.group.pieces}
    for r, lo in enumerate(range(0, n, ranges)):
        hi = min(n, lo + ranges)
        # A group's values for the rows of this range it covers (its pieces here).
        values = {id(s): v for s in staged if (v := s.rows(r)) is not None}
        part: dict[str, Column] = {}
        for k, col in cols.items():
            if not isinstance(col, Rows):
                part[k] = col[lo:hi]
                continue
            pieces: list[tuple[np.ndarray, np.ndarray | None]] = []
            for i, src, idx, _, a, b in piece_spans(col, lo, hi):
                if (k, i) in owner:
                    pieces.append((values[id(owner[k, i])][k], None))
                elif idx is None:
                    pieces.append((src[a:b], None))
                else:
                    pieces.append((src, idx[a:b]))
            part[k] = Rows(pieces, col.dtype)
        write_rows(f, hi - lo, dtype.itemsize, functools.partial(_fill, part, dtype))


def _fill(cols: Mapping[str, Column], dtype: np.dtype, start: int, buf: np.ndarray) -> None:
    """Rows start.. of cols, packed as dtype's rows into buf (an (n, itemsize) uint8 array).

    Numeric arrays are interleaved by the pack kernel, which zero-fills each
    up to the next packed field's offset; then lazy and string columns are
    gathered straight into their fields of buf (strings zero-padded, or cut
    to dtype's width, which holds their longest value).
    """
    n = len(buf)
    if n == 0:
        return
    packed = {k: c for k, c in cols.items() if isinstance(c, np.ndarray) and c.dtype.kind != "S"}
    if packed:
        _core.pack(list(packed.values()), [_offset(dtype, k) for k in packed], start, buf)
    gathered = {
        k: c if isinstance(c, Rows) else Rows([(c, None)])
        for k, c in cols.items()
        if k not in packed
    }
    if gathered:
        rows = buf.reshape(-1).view(dtype)
        gather_columns(gathered, start, start + n, {k: rows[k] for k in gathered}, truncate=True)
