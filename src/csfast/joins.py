"""Combining datasets on uid: inner join, append, union, interlace, replace.

The bodies of the ``Dataset`` methods of the same names (the methods, with
their docstrings, say what each operation means; each calls the function of
its name here), and what they share: the output fields of a combination
(``merge_fields``), the uid checks (``check_unique``, ``check_shared``) and
``concat_rows``. Every row copy goes through the C gather kernels
(column.gather_jobs); uids are matched by the C hash kernels, through spill.py
when their index would exceed the memory budget.

``join_tables`` joins the tables of a result group or input and, given their
names, refuses tables that share no uid (one rule for the CLI and inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import spill
from .column import (
    NATIVE_UID,
    Column,
    Rows,
    combinable,
    gather_columns,
    lazy,
    wider_dtype,
)
from .errors import CsArgumentError, CsFieldError, CsUidError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = [
    "append",
    "check_shared",
    "check_unique",
    "concat_rows",
    "extend",
    "innerjoin",
    "interlace",
    "join_tables",
    "merge_fields",
    "replace",
    "union",
]

_SHOW_UIDS = 5  # how many offending uids an error message names

Fields = dict[str, tuple[np.dtype, tuple[int, ...]]]


def _some(uids: np.ndarray) -> str:
    more = ", ..." if len(uids) > _SHOW_UIDS else ""
    return ", ".join(str(int(u)) for u in uids[:_SHOW_UIDS]) + more


def _field_type(dt: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{dt.str}{shape}" if shape else dt.str


def merge_fields(
    datasets: Sequence[Dataset],
    common: bool,
    assert_same: bool = False,
    labels: Sequence[int] | None = None,
) -> Fields:
    """Output fields of a combination: {name: (dtype, sub-array shape)}.

    common: the fields every dataset has, in the first one's order; else every
    field, in order of first appearance. An output field must have one dtype
    and shape wherever it appears, except that strings of one kind widen to
    the widest; a field left out of the output is not checked. uid is always
    native uint64. labels: each dataset's argument position, for messages.
    """
    labels = list(range(len(datasets))) if labels is None else list(labels)
    if common:
        keep = set(datasets[0]._cols).intersection(*(d._cols for d in datasets[1:]))
        if assert_same:
            extra: dict[str, list[int]] = {}
            for d, lab in zip(datasets, labels, strict=True):
                for k in d._cols:
                    if k not in keep:
                        extra.setdefault(k, []).append(lab)
            if extra:
                shown = [
                    f"{k!r} only in dataset{'s' if len(v) > 1 else ''} {', '.join(map(str, v))}"
                    for k, v in list(extra.items())[:8]
                ]
                raise CsFieldError(
                    "datasets do not have the same fields: "
                    + "; ".join(shown)
                    + ("; ..." if len(extra) > 8 else "")
                )
        names = [k for k in datasets[0]._cols if k in keep]
    else:
        names = list(dict.fromkeys(k for d in datasets for k in d._cols))
    out: Fields = {}
    for k in names:
        if k == "uid":
            out[k] = (NATIVE_UID, ())
            continue
        seen: tuple[int, np.dtype, tuple[int, ...]] | None = None
        for d, lab in zip(datasets, labels, strict=True):
            c = d._cols.get(k)
            if c is None:
                continue
            dt, shape = c.dtype, tuple(c.shape[1:])
            if seen is None:
                seen = (lab, dt, shape)
                out[k] = (dt, shape)
            elif shape != seen[2] or not combinable(seen[1], dt):
                raise CsFieldError(
                    f"field {k!r} is {_field_type(seen[1], seen[2])} in dataset {seen[0]} and "
                    f"{_field_type(dt, shape)} in dataset {lab}; cannot combine them"
                )
            else:
                out[k] = (wider_dtype(out[k][0], dt), shape)
    return out


def check_unique(datasets: Sequence[Dataset], labels: Sequence[int], what: str) -> None:
    """Raise CsUidError if a uid appears in two rows of the datasets (hash kernel)."""
    uids = [d._uids() for d in datasets]
    # Ask for more rows than shown: a uid repeated many times should be named once.
    count, rep, first = spill.repeats(uids, 4 * _SHOW_UIDS)
    if count == 0:
        return
    labels = list(labels)
    starts = np.cumsum([0] + [len(u) for u in uids])

    def locate(row: int) -> tuple[int, int]:
        i = int(np.searchsorted(starts, row, side="right")) - 1
        return i, row - int(starts[i])

    examples: dict[int, str] = {}
    for r, f in zip(rep.tolist(), first.tolist(), strict=True):
        (i, ri), (j, _) = locate(r), locate(f)
        uid = int(uids[i][ri])
        if uid not in examples and len(examples) < _SHOW_UIDS:
            where = (
                f"datasets {labels[j]} and {labels[i]}"
                if i != j
                else f"twice in dataset {labels[i]}"
            )
            examples[uid] = f"{uid} ({where})"
    raise CsUidError(
        f"{what}: {count} row{'s repeat' if count > 1 else ' repeats'} the uid of an earlier "
        f"row, e.g. uid {', '.join(examples.values())}"
        + (", ..." if count > len(examples) else "")
        + (
            "; pass repeat_allowed=True if repeats are intended"
            if what in ("append", "extend")
            else ""
        )
    )


def uid_column(d: Dataset) -> Column:
    """d's uid column as native uint64: the column itself where it is one (no copy)."""
    col = d._cols.get("uid")
    if col is not None and col.dtype == NATIVE_UID:
        return col
    return d._uids()


def combine(
    n: int, sources: Mapping[str, tuple[np.dtype, Sequence[tuple[Column, np.ndarray | None]]]]
) -> dict[str, Column]:
    """Output columns of n rows: field k is the rows of each (column, index or
    None) of sources[k] one after the other, as dtype.

    Lazy (row indices into the sources) where every source is read-only;
    gathered now where one is owned (writable), which keeps owned arrays
    unshared. The gathers of all such fields run together.
    """
    composed: dict[tuple, Any] = {}
    cols: dict[str, Column] = {}
    eager: dict[str, Rows] = {}
    for k, (dtype, parts) in sources.items():
        pieces: list[tuple[np.ndarray, np.ndarray | None]] = []
        owned = False
        for col, ix in parts:
            rows = lazy(col, ix, composed)
            if rows is None:
                owned = True
                pieces.append((col, ix))  # type: ignore[arg-type]
            else:
                pieces.extend(rows.pieces)
        cols[k] = Rows(pieces, dtype)
        if owned:
            eager[k] = cols[k]  # type: ignore[assignment]
    outs = {k: np.empty(c.shape, dtype=c.dtype) for k, c in eager.items()}
    gather_columns(eager, 0, n, outs)
    cols.update(outs)
    return cols


def check_shared(joined: Dataset, tables: Sequence[Dataset], names: Sequence[str]) -> None:
    """CsUidError when tables that all have rows joined to none: they describe
    different items (names: one per table, for the message)."""
    if len(joined) == 0 and len(tables) > 1 and all(len(t) for t in tables):
        raise CsUidError(
            f"{' and '.join(map(str, names))} share no uid: the tables describe different items"
        )


def join_tables(tables: Sequence[Dataset], names: Sequence[str] | None = None) -> Dataset:
    """Inner join on uid; a single table is returned as is (still mapped, no copy).

    With names (one per table), tables that share no uid raise CsUidError
    naming them (``check_shared``).
    """
    if len(tables) == 1:
        return tables[0]
    joined = type(tables[0]).innerjoin_many(*tables)
    if names is not None:
        check_shared(joined, tables, names)
    return joined


def innerjoin(cls: type[Dataset], datasets: Sequence[Dataset], assert_no_drop: bool) -> Dataset:
    """The rows of ``Dataset.innerjoin`` (see there)."""
    merge_fields(datasets, common=False)  # dtype conflicts fail before any work
    first = datasets[0]
    index = spill.join_index([d._uids() for d in datasets])
    if assert_no_drop and len(index[0]) != len(first):
        kept = np.zeros(len(first), dtype=bool)
        kept[index[0]] = True
        dropped = np.flatnonzero(~kept)
        raise CsUidError(
            f"innerjoin dropped {len(dropped)} of {len(first)} rows of the first dataset; "
            f"uids without a match include {_some(first._uids()[dropped[: _SHOW_UIDS + 1]])}"
        )
    n = len(index[0])
    rows: list[np.ndarray | None] = list(index)
    if n == len(first):
        # index[0] is increasing with no repeat, so every row in order.
        rows[0] = None
    owner: dict[str, int] = {}
    for i, d in enumerate(datasets):
        owner.update(dict.fromkeys(d._cols, i))
    sources = {}
    for k, i in owner.items():  # dict order: first appearance
        # uid: every input holds the same value; the first's rows are read in order.
        col = uid_column(first) if k == "uid" else datasets[i]._cols[k]
        sources[k] = (col.dtype, [(col, rows[0 if k == "uid" else i])])
    return cls._from_columns(n, combine(n, sources))


def concat_rows(
    cls: type[Dataset],
    parts: Sequence[Dataset],
    indexes: Sequence[np.ndarray | None],
    merged: Fields,
) -> Dataset:
    """parts[0][indexes[0]], parts[1][indexes[1]], ... (None: every row) for merged fields."""
    n = sum(len(d) if ix is None else len(ix) for d, ix in zip(parts, indexes, strict=True))
    sources = {
        k: (
            dt,
            [
                (uid_column(d) if k == "uid" else d._cols[k], ix)
                for d, ix in zip(parts, indexes, strict=True)
            ],
        )
        for k, (dt, _) in merged.items()
    }
    return cls._from_columns(n, combine(n, sources))


def _nonempty(
    cls: type[Dataset],
    datasets: Sequence[Dataset],
    assert_same_fields: bool,
) -> tuple[Dataset | None, list[Dataset], list[int], Fields]:
    """(the result when there is nothing to combine, else None; the non-empty
    datasets; their argument positions; their merged fields)."""
    if not datasets:
        return cls(), [], [], {}
    pos = [i for i, d in enumerate(datasets) if len(d)]
    if not pos:
        return cls(datasets[0]), [], [], {}
    parts = [datasets[i] for i in pos]
    return (
        None,
        parts,
        pos,
        merge_fields(parts, common=True, assert_same=assert_same_fields, labels=pos),
    )


def append(
    cls: type[Dataset], datasets: Sequence[Dataset], assert_same_fields: bool, repeat_allowed: bool
) -> Dataset:
    """The rows of ``Dataset.append_many`` (see there)."""
    done, parts, pos, merged = _nonempty(cls, datasets, assert_same_fields)
    if done is not None:
        return done
    if not repeat_allowed:
        check_unique(parts, pos, "append")
    return concat_rows(cls, parts, [None] * len(parts), merged)


def extend(ds: Dataset, others: Sequence[Dataset], repeat_allowed: bool) -> Dataset | None:
    """The rows of ``Dataset.extend`` as a new dataset (None: nothing to add)."""
    parts = [d for d in others if len(d)]
    if not parts:
        return None
    for i, d in enumerate(others):
        missing = [k for k in ds._cols if k not in d._cols]
        if len(d) and missing:
            raise CsFieldError(f"extend: dataset {i} lacks fields {missing[:8]}")
    parts = [ds] + parts
    merged = merge_fields(parts, common=True)
    if not repeat_allowed:
        check_unique(parts, range(len(parts)), "extend")
    return concat_rows(type(ds), parts, [None] * len(parts), merged)


def union(cls: type[Dataset], datasets: Sequence[Dataset], assert_same_fields: bool) -> Dataset:
    """The rows of ``Dataset.union_many`` (see there)."""
    done, parts, _, merged = _nonempty(cls, datasets, assert_same_fields)
    if done is not None:
        return done
    masks = spill.first_occurrence([d._uids() for d in parts])
    indexes = [None if m.all() else spill.nonzero_rows(m) for m in masks]
    return concat_rows(cls, parts, indexes, merged)


def interlace(datasets: Sequence[Dataset], assert_same_fields: bool) -> Dataset:
    """The rows of ``Dataset.interlace`` (see there); datasets[0] is the one called."""
    first = datasets[0]
    n = len(first)
    if any(len(d) != n for d in datasets):
        raise CsArgumentError(
            f"interlace needs datasets of the same length; got {[len(d) for d in datasets]} rows"
        )
    merged = merge_fields(datasets, common=True, assert_same=assert_same_fields)
    check_unique(datasets, range(len(datasets)), "interlace")
    step = len(datasets)
    cols = {k: np.empty((n * step,) + shape, dtype=dt) for k, (dt, shape) in merged.items()}
    for i, d in enumerate(datasets):
        gather_columns(
            {k: uid_column(d) if k == "uid" else d._cols[k] for k in cols},
            0,
            n,
            {k: out[i::step] for k, out in cols.items()},
        )
    return type(first)._from_columns(n * step, cols)


def replace(
    ds: Dataset, query: Mapping[str, Any], others: Sequence[Dataset], assume_disjoint: bool
) -> Dataset:
    """The rows of ``Dataset.replace`` (see there)."""
    others = tuple(d for d in others if len(d))
    merged = merge_fields((ds,) + others, common=True, assert_same=True)
    keep = np.ones(len(ds), dtype=bool)
    if not assume_disjoint and others:
        uids = ds._uids()
        for other in others:
            found = spill.isin(uids, other._uids())
            np.logical_and(keep, np.logical_not(found, out=found), out=keep)
    if query:
        np.logical_and(keep, ds.query_mask(query, invert=True), out=keep)
    first = None if keep.all() else spill.nonzero_rows(keep)
    return concat_rows(type(ds), (ds,) + others, [first] + [None] * len(others), merged)
