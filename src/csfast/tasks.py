"""The everyday particle-set chores, one call each: union, filter, fields, split, sets.

Each function opens its inputs by their headers (mapped, nothing read yet),
checks every field and value it was given against those headers before any
work, does the work with the Dataset's C kernels, and writes its outputs
atomically: a failed call leaves no output behind and an existing output
unchanged. Outputs that are row subsets of mapped inputs (filter, fields,
split, sets) are lazy datasets, which ``Dataset.save`` gathers chunk by
chunk into the file: never held whole in memory. Functions that write
several files (``split_file``, ``sets_files``) write them all under
temporary names first and publish them together.

Every function returns what it did (row counts, the files written) and takes
an optional ``progress(done, total, what)`` callback, called before each step;
nothing here prints. Inputs may be ``.cs`` files, CSDAT streams, or ``.csg``
result groups (loaded as their joined table, ``ResultGroup.load``).
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import json
import math
import operator
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import spill
from .dataset import Dataset
from .errors import CsArgumentError, CsError, CsFieldError, CsFormatError, CsUidError
from .format import (
    _fsync_dir,
    atomic_write,
    check_regular,
)
from .groups import ResultGroup
from .strings import factorize
from .tables import inspect

__all__ = [
    "Written",
    "Condition",
    "open_table",
    "union_files",
    "parse_condition",
    "condition_mask",
    "read_uids",
    "filter_table",
    "filter_file",
    "select_fields",
    "fields_file",
    "split_file",
    "sets_files",
    "GroupInfo",
    "group_info",
    "part_name",
]

Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    pass


@dataclass(frozen=True)
class Written:
    """One output file: its path, its rows, and what it holds (a value, a set name)."""

    path: str
    rows: int
    label: str = ""


def open_table(path: str | os.PathLike, format: str | None = None, **options: Any) -> Dataset:
    """A table from any file csfast reads: a .cs file or CSDAT stream (mapped), a
    .csg result group (its results joined on uid, passthrough included), or any
    format of ``csfast.convert.files`` (chosen by extension unless ``format``).
    ``fields=[...]`` keeps only those fields (and uid)."""
    if format == "csg" or (format is None and os.fspath(path).endswith(".csg")):
        fields = options.pop("fields", None)
        if options:
            raise CsArgumentError(
                f"{os.fspath(path)}: {', '.join(options)} do not apply to a result group"
            )
        ds = ResultGroup.from_csg(path).load()
        return ds if fields is None else ds.filter_fields(list(fields))
    from .convert import files

    fmt = format or files.FORMATS.get(Path(path).suffix.lower())
    if fmt in (None, "cs", "csdat"):  # None: told by its magic, whatever its name
        # Read-only columns: row subsets stay lazy views of the map.
        return Dataset.load(path, writable=False, **options)
    return files.read(path, format, **options)  # type: ignore[arg-type]


def _check_folder(path: str | os.PathLike) -> str:
    """An output folder that exists or can be made (its parent exists)."""
    folder = os.fspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CsArgumentError(f"{folder}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise CsArgumentError(f"{folder}: its parent folder {parent} does not exist")
    return folder


@contextmanager
def _staged(folder: str) -> Iterator[Callable[[str], str]]:
    """Write several files into folder, then publish them all or none.

    Creates folder if missing. Yields ``stage(name) -> temporary path``: each
    output is written (by an atomic save, without its own fsync) to a hidden
    temporary name beside its final one; when the block ends without error,
    one ``os.sync`` makes them all durable (a thousand per-file fsyncs took
    seconds), then every file is renamed into place. On an error every
    temporary file is removed, and the folder too if this call made it.
    """
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    pending: list[tuple[str, str]] = []

    def stage(name: str) -> str:
        final = os.path.join(folder, name)
        pending.append((os.path.join(folder, f".{name}.csfast-staged"), final))
        return pending[-1][0]

    try:
        yield stage
    except BaseException:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if made:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: someone else wrote there meanwhile
                pass
        raise
    os.sync()
    for tmp, final in pending:
        os.replace(tmp, final)
    _fsync_dir(Path(folder))


# ------------------------------------------------------------------- union


@dataclass(frozen=True)
class UnionReport:
    rows_in: list[int]
    rows: int
    dropped_fields: list[str]


@spill.spills_beside("output")
def union_files(
    paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    progress: Progress | None = None,
) -> UnionReport:
    """Rows of every input in order, the first row holding each uid kept
    (``Dataset.union_many``); fields are those every input has. Writes output."""
    step = progress or _no_progress
    if not paths:
        raise CsArgumentError("union needs at least one input")
    step(0, 2, "matching uids")
    tables = [open_table(p) for p in paths]
    ds = Dataset.union_many(*tables)
    dropped = sorted({f for t in tables for f in t.fields()} - set(ds.fields()))
    step(1, 2, f"writing {os.fspath(output)}")
    ds.save(output)
    step(2, 2, "done")
    return UnionReport([len(t) for t in tables], len(ds), dropped)


# ------------------------------------------------------------------ filter

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SYMBOL = re.compile(r"^\s*(?P<field>[^\s<>=!]+)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.*?)\s*$")
_WORD = re.compile(r"^\s*(?P<field>\S+)\s+(?P<op>not\s+in|in)\s+(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """``field op value``: op one of in, not in, ==, !=, <, <=, >, >=; values as text."""

    field: str
    op: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.field} {self.op} {','.join(self.values)}"


def parse_condition(text: str) -> Condition:
    """``"alignments3D/class in 0,3"``, ``"ctf/df1_A < 30000"`` -> Condition.

    A list after ``in`` / ``not in`` is comma-separated; a value holding a
    comma or spaces is written in double quotes (``in "a b.mrc","c,d.mrc"``).
    """
    m = _SYMBOL.match(text) or _WORD.match(text)
    if m is None:
        raise CsArgumentError(
            f"condition {text!r}: expected 'FIELD OP VALUE' with OP one of "
            "in, not in, ==, !=, <, <=, >, >="
        )
    op = " ".join(m.group("op").split())
    raw = m.group("value")
    if not raw:
        raise CsArgumentError(f"condition {text!r}: no value after {op!r}")
    if op in ("in", "not in"):
        values = tuple(v.strip() for v in next(csv.reader([raw], skipinitialspace=True)))
    else:
        values = (next(csv.reader([raw]))[0] if raw.startswith('"') else raw,)
    if op in ("in", "not in") and any(v == "" for v in values):
        raise CsArgumentError(
            f'condition {text!r}: an empty item in the list (for the empty string, write == "")'
        )
    return Condition(m.group("field"), op, values)


def _field_error(ds: Dataset, name: str, what: str) -> CsFieldError:
    close = difflib.get_close_matches(name, ds.fields(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return CsFieldError(f"{what}: no field {name!r}{hint}")


def _typed_value(text: str, dtype: np.dtype, cond: Condition) -> Any:
    """A condition's value as the Python scalar numpy compares the column with."""
    kind = dtype.kind
    try:
        if kind in "ui":
            return int(text)
        if kind == "f":
            return float(text)
        if kind == "b":
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError(text)
    except ValueError:
        what = {"u": "an integer", "i": "an integer", "f": "a number", "b": "true or false"}[kind]
        raise CsArgumentError(
            f"condition '{cond}': {text!r} is not {what}, as field {cond.field!r} ({dtype}) needs"
        ) from None
    if kind == "S":
        return text.encode("utf-8")
    if kind == "U":
        return text
    raise CsFieldError(
        f"condition '{cond}': field {cond.field!r} of dtype {dtype} cannot be compared"
    )


def condition_mask(ds: Dataset, cond: Condition) -> np.ndarray:
    """The rows of ds that satisfy cond, as a boolean array.

    Values are parsed by the field's dtype and compared as numpy compares the
    column with a Python scalar: integers exactly (uids too), floats in the
    column's precision, strings as UTF-8 bytes (byte order, which is code point
    order). Raises CsFieldError for an unknown or sub-array field and
    CsArgumentError for a value of the wrong kind.
    """
    return _evaluate(cond, *_checked(ds, cond))


def _checked(ds: Dataset, cond: Condition) -> tuple[np.ndarray, list[Any]]:
    """(column, typed values) of a condition, every check done (no data read for a
    mapped column: its dtype and shape come from the header)."""
    if cond.field not in ds:
        raise _field_error(ds, cond.field, f"condition '{cond}'")
    col = ds.view(cond.field)
    if col.ndim != 1:
        raise CsFieldError(
            f"condition '{cond}': field {cond.field!r} is a sub-array of "
            f"shape {col.shape[1:]}; conditions apply to 1-D fields"
        )
    return col, [_typed_value(v, col.dtype, cond) for v in cond.values]


def _evaluate(cond: Condition, col: np.ndarray, values: list[Any]) -> np.ndarray:
    if cond.op in ("in", "not in"):
        if col.dtype.kind in "ui":
            info = np.iinfo(col.dtype)
            members = np.array(
                [v for v in values if info.min <= v <= info.max], dtype=col.dtype
            )  # values out of range match no row
            found = (
                spill.isin(col.astype(np.uint64), members.astype(np.uint64))
                if col.dtype.kind == "u"
                else np.isin(col, members)
            )
        else:
            found = np.isin(col, np.array(values))
        return np.logical_not(found, out=found) if cond.op == "not in" else found
    return np.asarray(_OPS[cond.op](col, values[0]), dtype=bool)


def read_uids(path: str | os.PathLike) -> np.ndarray:
    """uids listed in a file: ``.npy`` (an integer array, loaded without pickle), a
    ``.cs`` file (its uid column), or text (one uid per line, ``#`` comments)."""
    name = os.fspath(path)
    check_regular(name)  # np.load and open would wait on a FIFO
    if name.endswith(".npy"):
        try:
            a = np.load(name, allow_pickle=False)
        except (ValueError, EOFError) as e:  # EOFError: an empty file
            raise CsFormatError(f"{name}: not a plain numpy array file ({e})") from None
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "ui":
            raise CsUidError(
                f"{name}: uids must be an integer array, not "
                f"{getattr(a, 'dtype', type(a).__name__)}"
            )
        a = a.reshape(-1)
        if a.dtype.kind == "i" and len(a) and a.min() < 0:
            raise CsUidError(f"{name}: uid values must be non-negative, found {a.min()}")
        return a.astype(np.uint64)
    if name.endswith((".cs", ".csg")):
        return np.asarray(open_table(name, fields=[]).view("uid"), dtype=np.uint64)
    out = []
    with open(name, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                v = int(text)
            except ValueError:
                raise CsUidError(f"{name}, line {lineno}: {text[:40]!r} is not a uid") from None
            if not 0 <= v < 2**64:
                raise CsUidError(f"{name}, line {lineno}: {v} is outside [0, 2**64)")
            out.append(v)
    return np.array(out, dtype=np.uint64)


@dataclass(frozen=True)
class FilterReport:
    rows_in: int
    rows: int
    counts: list[tuple[str, int]] = field(default_factory=list)  # rows passing each test


def filter_table(
    ds: Dataset,
    where: Sequence[str | Condition] = (),
    uids: np.ndarray | None = None,
    invert: bool = False,
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """(mask of the rows passing every condition and, if given, whose uid is in uids
    (inverted with invert), rows passing each test alone)."""
    conds = [c if isinstance(c, Condition) else parse_condition(c) for c in where]
    checked = [_checked(ds, c) for c in conds]  # every field and value before any work
    mask = np.ones(len(ds), dtype=bool)
    counts = []
    for c, (col, values) in zip(conds, checked, strict=True):
        m = _evaluate(c, col, values)
        counts.append((str(c), int(np.count_nonzero(m))))
        mask &= m
    if uids is not None:
        m = spill.isin(np.asarray(ds.view("uid"), dtype=np.uint64), uids)
        counts.append((f"uid in list of {len(uids):,}", int(np.count_nonzero(m))))
        mask &= m
    if invert:
        np.logical_not(mask, out=mask)
    return mask, counts


@spill.spills_beside("output")
def filter_file(
    path: str | os.PathLike,
    output: str | os.PathLike,
    where: Sequence[str | Condition] = (),
    uids: str | os.PathLike | None = None,
    invert: bool = False,
    *,
    progress: Progress | None = None,
) -> FilterReport:
    """Keep the rows of path that pass every condition (and whose uid is listed in
    the file uids); with invert, the other rows. Writes output."""
    step = progress or _no_progress
    conds = [c if isinstance(c, Condition) else parse_condition(c) for c in where]
    if not conds and uids is None:
        raise CsArgumentError("filter needs at least one --where condition or --uids")
    ds = open_table(path)
    listed = read_uids(uids) if uids is not None else None
    step(0, 2, "selecting rows")
    mask, counts = filter_table(ds, conds, listed, invert)
    out = ds.mask(mask)
    step(1, 2, f"writing {os.fspath(output)}")
    out.save(output)
    step(2, 2, "done")
    return FilterReport(len(ds), len(out), counts)


# ------------------------------------------------------------------ fields


def _matches(name: str, pattern: str) -> bool:
    """A glob pattern over a field's result (``blob``, ``alignments_class_*``) or
    its full name (``ctf/tilt_A``, ``*/psize_A``)."""
    result = name.split("/", 1)[0]
    return fnmatch.fnmatchcase(result, pattern) or fnmatch.fnmatchcase(name, pattern)


def select_fields(
    names: Sequence[str], keep: Sequence[str] | None = None, drop: Sequence[str] = ()
) -> list[str]:
    """The fields left after keeping those matching any ``keep`` pattern (all if None)
    and dropping those matching any ``drop`` pattern; uid always stays.

    A pattern that matches no field raises CsFieldError (a typo would otherwise
    silently change nothing); dropping uid is refused.
    """
    for what, patterns in (("--keep", keep or ()), ("--drop", drop)):
        for p in patterns:
            if p == "uid" and what == "--drop":
                raise CsFieldError("cannot drop the uid field")
            if not any(_matches(n, p) for n in names):
                results = list(dict.fromkeys(n.split("/", 1)[0] for n in names if n != "uid"))
                shown = ", ".join(results[:12]) + (", ..." if len(results) > 12 else "")
                raise CsFieldError(f"{what} {p!r} matches no result or field (results: {shown})")
    out = [n for n in names if n == "uid" or keep is None or any(_matches(n, p) for p in keep)]
    return [n for n in out if n == "uid" or not any(_matches(n, p) for p in drop)]


@dataclass(frozen=True)
class FieldsReport:
    rows: int
    fields_in: int
    fields: list[str]


@spill.spills_beside("output")
def fields_file(
    path: str | os.PathLike,
    output: str | os.PathLike,
    keep: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    *,
    progress: Progress | None = None,
) -> FieldsReport:
    """Write only some fields of a table (glob patterns, see ``select_fields``).

    Reads only the kept columns: the fix for files whose 100-class headers
    other readers cannot open.
    """
    step = progress or _no_progress
    if keep is None and not drop:
        raise CsArgumentError("fields needs --keep or --drop")
    name = os.fspath(path)
    full = open_table(name) if name.endswith(".csg") else Dataset.load(name)
    names = full.fields()
    kept = select_fields(names, keep, drop)
    ds = full.filter_fields(kept)
    step(0, 1, f"writing {os.fspath(output)}")
    ds.save(output)
    step(1, 1, "done")
    return FieldsReport(len(ds), len(names), kept)


# ------------------------------------------------------------------- split

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_MAX = 80


def part_name(value: Any) -> str:
    """A file-name-safe text for a value: ASCII letters, digits, ``.``, ``_``, ``-``.

    Strings are decoded as UTF-8, and a path (a value with ``/``) gives its
    last component; every run of other characters becomes one ``_``; leading
    and trailing ``.`` / ``_`` go (no hidden files, no ``..``); the last 80
    characters are kept (the end is what tells micrographs apart); nothing
    left gives ``empty``. Different values may give the same text: part files
    are numbered as well.
    """
    text = _text(value)
    if "/" in text.rstrip("/"):
        text = text.rstrip("/").rsplit("/", 1)[1]
    slug = _UNSAFE.sub("_", text).strip("._")
    return slug[-_SLUG_MAX:].lstrip("._") or "empty"


def _text(value: Any) -> str:
    """A value as text: bytes decoded as UTF-8 (undecodable bytes as \\x escapes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes) or (isinstance(value, float) and not math.isfinite(value)):
        return _text(value)
    return value


@spill.spills_beside("folder")
def split_file(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    by: str | None = None,
    batches: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> list[Written]:
    """Split a table into parts, written to folder (created if missing).

    ``by``: one part per distinct value of a 1-D field, in order of first
    appearance, rows in input order; files ``<stem>_<k>_<value>.cs`` (k from 1,
    zero-padded; value through ``part_name``). ``batches``: n parts of
    near-equal size (sizes differ by at most one, larger ones first), files
    ``<stem>_batch_<k>.cs``; with ``seed`` rows are dealt to batches at random
    (each batch keeps input order), else in consecutive runs. Either way a
    manifest ``<stem>_split.json`` lists every part's file, rows and value.
    All files appear together or not at all.
    """
    step = progress or _no_progress
    if (by is None) == (batches is None):
        raise CsArgumentError("split needs exactly one of --by FIELD or --batches N")
    if seed is not None and batches is None:
        raise CsArgumentError("--random applies to --batches only")
    folder = _check_folder(folder)
    ds = open_table(path)
    stem = Path(os.fspath(path)).stem
    parts: list[tuple[Any, Dataset]] = []
    if by is not None:
        if by not in ds:
            raise _field_error(ds, by, "split --by")
        if ds.view(by).ndim != 1:
            raise CsFieldError(
                f"split --by {by!r}: a sub-array field of shape "
                f"{ds.view(by).shape[1:]}; choose a 1-D field"
            )
        step(0, 1, f"grouping by {by}")
        parts = list(ds.split_by(by).items())
    else:
        assert batches is not None
        if batches < 1:
            raise CsArgumentError(f"--batches {batches}: need at least 1")
        if batches > len(ds):
            raise CsArgumentError(f"--batches {batches}: more batches than the {len(ds):,} rows")
        order = np.arange(len(ds))
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(ds))
        for k, rows in enumerate(np.array_split(order, batches), 1):
            parts.append((k, ds.take(np.sort(rows))))
    width = max(3, len(str(len(parts))))
    written = []
    with _staged(folder) as stage:
        for k, (value, part) in enumerate(parts, 1):
            step(k - 1, len(parts) + 1, f"writing part {k} of {len(parts)}")
            name = (
                f"{stem}_batch_{k:0{width}d}.cs"
                if by is None
                else f"{stem}_{k:0{width}d}_{part_name(value)}.cs"
            )
            part.save(stage(name), fsync=False)
            written.append(
                Written(os.path.join(folder, name), len(part), "" if by is None else _text(value))
            )
        manifest = {
            "input": os.fspath(path),
            "by": by,
            "batches": batches,
            "seed": seed,
            "parts": [
                {
                    "file": os.path.basename(w.path),
                    "rows": w.rows,
                    "value": _json_value(v) if by is not None else None,
                }
                for w, (v, _) in zip(written, parts, strict=True)
            ],
        }
        text = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
        atomic_write(stage(f"{stem}_split.json"), lambda f: f.write(text), fsync=False)
    step(len(parts) + 1, len(parts) + 1, "done")
    return written


# -------------------------------------------------------------------- sets

SET_FILES = {
    "intersect": ("intersect_A.cs", "intersect_B.cs"),
    "subtract": ("A_minus_B.cs", "B_minus_A.cs"),
}
_SET_LABELS = {
    "intersect_A.cs": "rows of A found in B",
    "intersect_B.cs": "rows of B found in A",
    "A_minus_B.cs": "rows of A not in B",
    "B_minus_A.cs": "rows of B not in A",
}


def _keys(a: Dataset, b: Dataset, on: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One uint64 key per row of a and of b: equal keys <=> equal values of every
    ``on`` field (uids as they are; other fields factorized over both tables)."""
    if list(on) == ["uid"]:
        return (
            np.asarray(a.view("uid"), dtype=np.uint64),
            np.asarray(b.view("uid"), dtype=np.uint64),
        )
    codes = np.zeros(len(a) + len(b), dtype=np.uint64)
    for i, name in enumerate(on):
        ca, cb = a.view(name), b.view(name)
        if ca.ndim != 1 or cb.ndim != 1:
            raise CsFieldError(f"--on {name!r}: a sub-array field; choose 1-D fields")
        if (ca.dtype.kind in "SU") != (cb.dtype.kind in "SU") or (
            ca.dtype.kind in "SU" and ca.dtype.kind != cb.dtype.kind
        ):
            raise CsFieldError(
                f"--on {name!r} is {ca.dtype} in A and {cb.dtype} in B; "
                "the values cannot be compared"
            )
        both = np.concatenate([ca, cb])
        if both.dtype.kind == "S":
            uniq, inv = factorize(both)
        else:
            uniq, inv = np.unique(both, return_inverse=True)
        codes = codes * np.uint64(len(uniq)) + inv.reshape(-1).astype(np.uint64)
        if i + 1 < len(on):  # renumber so the next field's radix cannot overflow
            codes = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.uint64)
    return codes[: len(a)], codes[len(a) :]


@spill.spills_beside("folder")
def sets_files(
    a_path: str | os.PathLike,
    b_path: str | os.PathLike,
    folder: str | os.PathLike,
    operations: Sequence[str],
    on: Sequence[str] = ("uid",),
    *,
    progress: Progress | None = None,
) -> list[Written]:
    """cryoSPARC's Particle Sets Tool: intersect and/or subtract tables A and B.

    Rows match when their ``on`` fields are equal (``uid``, or e.g.
    ``blob/path, blob/idx`` for tables of the same images with different
    uids). Each output holds one side's rows, with that side's columns and
    row order: ``intersect_A.cs`` (rows of A that match a row of B),
    ``intersect_B.cs`` (rows of B that match a row of A), ``A_minus_B.cs``
    (rows of A matching no row of B), ``B_minus_A.cs``. Written to folder
    (created if missing), all together or not at all.
    """
    step = progress or _no_progress
    ops = list(dict.fromkeys(operations))
    unknown = [o for o in ops if o not in SET_FILES]
    if not ops or unknown:
        raise CsArgumentError(
            f"sets: operations must be among {', '.join(SET_FILES)}; got {', '.join(ops) or 'none'}"
        )
    on = [f.strip() for f in on if f.strip()]
    if not on or ("uid" in on and len(on) > 1):
        raise CsArgumentError("--on is uid, or one or more fields other than uid")
    folder = _check_folder(folder)
    a, b = open_table(a_path), open_table(b_path)
    for name in on:
        for label, t in (("A", a), ("B", b)):
            if name not in t:
                raise _field_error(t, name, f"--on (table {label})")
    step(0, 2, "matching rows")
    ka, kb = _keys(a, b, on)
    a_in_b = spill.isin(ka, kb)  # rows of A whose key is in B
    b_in_a = spill.isin(kb, ka)
    outputs = []
    for op in ops:
        name_a, name_b = SET_FILES[op]
        if op == "intersect":
            outputs += [(name_a, a, a_in_b), (name_b, b, b_in_a)]
        else:
            outputs += [(name_a, a, ~a_in_b), (name_b, b, ~b_in_a)]
    written = []
    with _staged(folder) as stage:
        for name, table, mask in outputs:
            step(1, 2, f"writing {name}")
            part = table.mask(mask)
            part.save(stage(name), fsync=False)
            written.append(Written(os.path.join(folder, name), len(part), _SET_LABELS[name]))
    step(2, 2, "done")
    return written


# ------------------------------------------------------------- group info


@dataclass(frozen=True)
class MetafileInfo:
    path: str
    rows: int | None  # None: missing or unreadable (see problem)
    size: int
    problem: str = ""


@dataclass(frozen=True)
class GroupInfo:
    """What a .csg says and what its files hold (headers only)."""

    group: ResultGroup
    files: dict[str, MetafileInfo]  # every metafile of every version, in result order


def group_info(path: str | os.PathLike) -> GroupInfo:
    """A .csg's results, versions and files, with each file's rows from its header.

    A missing or broken metafile is reported in its MetafileInfo, not raised:
    the point of looking is often to find it.
    """
    group = ResultGroup.from_csg(path)
    files: dict[str, MetafileInfo] = {}
    for r in group.results.values():
        for meta in r.versions.values():
            if meta in files:
                continue
            try:
                info = inspect(meta)
                files[meta] = MetafileInfo(meta, info.rows, info.file_size)
            except (CsError, OSError) as e:
                files[meta] = MetafileInfo(
                    meta,
                    None,
                    0,
                    e.strerror
                    if isinstance(e, OSError) and not isinstance(e, CsError) and e.strerror
                    else str(e),
                )
    return GroupInfo(group, files)
