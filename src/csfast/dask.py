"""csfast on Dask: the dataset operations across the partitions of many files (docs/dask.md).

``read_cs`` gives a ``Partitioned``: a dataset cut into partitions, each a
csfast ``Dataset`` made by a Dask task. Not a ``dask.dataframe``: a data
frame holds neither sub-array fields (``alignments3D/pose``, 3 x float32)
nor fixed-width byte strings (``S96`` paths), so every dtype would come
back changed. A partition of a file is a recipe, ``(path, first row, last
row, fields)``: the task that needs it maps the file (csfast reads only the
header) and slices its rows, so what the scheduler sends a worker is the
path and the row range, never the rows. The workers must see the files at
the same paths (a shared file system, as cryoSPARC projects are).

``innerjoin``, ``append``, ``union`` and ``subset_uids`` keep the meaning of
the ``Dataset`` methods of the same names. Rows meet by a seeded splitmix64
hash of their uid, modulo the number of hash buckets: each input partition
sends to each bucket its uids and row numbers (16 bytes a row), a bucket
task matches them and sends back row numbers. A join's partition task reads
the matched rows of later inputs from their files itself; rows move between
processes only at the final gather (``compute``), or in a join whose later
input was made by another operation (its matched rows, to the partition of
the first input they join).

This module imports dask; ``import csfast`` never imports it (install the
extra ``csfast[dask]``).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import dask
import numpy as np
from dask.delayed import Delayed, delayed

from .dataset import Dataset, Field
from .errors import CsArgumentError, CsUidError, CsVersionError
from .groups import ResultGroup
from .groups import write_output as _write_group
from .tables import inspect

__all__ = [
    "DEFAULT_ROWS_PER_PARTITION",
    "ROWS_PER_BUCKET",
    "Partitioned",
    "append",
    "innerjoin",
    "read_cs",
    "subset_uids",
    "union",
]

DEFAULT_ROWS_PER_PARTITION = 1_000_000
# Rows of the inputs per hash bucket by default: 32 MB of uids and row numbers.
ROWS_PER_BUCKET = 2_000_000
_SHOW_UIDS = 5  # how many offending uids an error message names, as Dataset.append_many

_U64 = np.uint64


class _Slice(NamedTuple):
    """A partition of a .cs file: rows [start, stop) of these fields (None: all).

    A NamedTuple is a literal to Dask (it does not look inside), so a task
    receives it as it is and opens the file where it runs.
    """

    path: str
    start: int
    stop: int
    fields: tuple[str, ...] | None


Part: TypeAlias = "_Slice | Delayed"  # a partition: a file slice, or a task giving a Dataset


def _open(part: _Slice | Dataset) -> Dataset:
    """The dataset of a partition, inside a task (a file slice is mapped, not read)."""
    if isinstance(part, Dataset):
        return part
    return _mapped(part.path, part.fields).slice(part.start, part.stop)


def _mapped(path: str, fields: tuple[str, ...] | None) -> Dataset:
    """The file mapped read-only, shared by the tasks of this worker process.

    Reading a header of many fields costs milliseconds, and a join's tasks
    open each file of a later input: the mapped dataset is kept, per file
    identity (device, inode, size, modification time), so a replaced file is
    opened again. Never edited: tasks take slices and row subsets of it.
    """
    st = os.stat(path)
    return _mapped_at(path, fields, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _mapped_at(path: str, fields: tuple[str, ...] | None, identity: tuple) -> Dataset:
    return Dataset.load(path, fields=fields, writable=False)


def _compact(ds: Dataset) -> Dataset:
    """ds with every column a contiguous array of its own, for a task to return.

    Dask may send a task's result to another process: a lazy row subset of a
    mapped file (and a lazy join or append) would be pickled with its whole
    source columns, and a strided column is copied field by field by pickle.
    Gathered here instead, every field of a mapped row in one pass
    (``materialize``), the columns are then sent as they are, without
    another copy.
    """
    ds.materialize()
    if all(ds.view(k).flags.c_contiguous for k in ds.fields()):
        return ds
    # Strided views of a map: a lazy take of every row, gathered the same way.
    whole = ds.take(np.arange(len(ds))).materialize()
    return Dataset.from_columns({k: whole.view(k) for k in whole.fields()}, rows=len(ds))


def _empty(ds: Dataset) -> Dataset:
    """A dataset of ds's fields and no rows, holding no file map."""
    return ds.slice(0, 0).copy()


# ----------------------------------------------------------------- hashing


def _bucket_of(uids: np.ndarray, buckets: int, seed: int) -> np.ndarray:
    """Each uid's hash bucket: splitmix64(uid + seed) modulo buckets.

    Seeded per operation, so no choice of uids can pile them into one bucket
    on purpose. numpy's uint64 array arithmetic wraps, as splitmix64 wants.
    """
    z = uids + _U64(seed)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return (z % _U64(buckets)).astype(np.intp)


def _split(part: _Slice | Dataset, buckets: int, seed: int, *after: Any) -> list[tuple]:
    """(uids, row numbers) of a partition for each hash bucket, rows ascending."""
    ds = _open(part)
    uids = np.asarray(ds.view("uid"), dtype=_U64)
    bucket = _bucket_of(uids, buckets, seed)
    order = np.argsort(bucket, kind="stable")
    ends = np.cumsum(np.bincount(bucket, minlength=buckets)).tolist()
    out = []
    start = 0
    for end in ends:
        rows = order[start:end]
        out.append((uids[rows], rows.astype(np.int64)))
        start = end
    return out


def _flat(pieces: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uids, partition numbers and row numbers of one input's pieces of a bucket,
    in (partition, row) order."""
    if not pieces:
        return np.empty(0, _U64), np.empty(0, np.int64), np.empty(0, np.int64)
    uids = np.concatenate([u for u, _ in pieces])
    parts = np.repeat(np.arange(len(pieces), dtype=np.int64), [len(u) for u, _ in pieces])
    rows = np.concatenate([r for _, r in pieces])
    return uids, parts, rows


def _by_part(parts: np.ndarray, rows: np.ndarray, nparts: int) -> list[np.ndarray]:
    """rows grouped by partition number, ascending within each."""
    order = np.lexsort((rows, parts))
    ends = np.cumsum(np.bincount(parts, minlength=nparts)).tolist()
    sorted_rows = rows[order]
    return [sorted_rows[s:e] for s, e in zip([0] + ends[:-1], ends, strict=True)]


# ------------------------------------------------------- bucket matching


def _member(uids: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Which uids are in distinct (sorted, no repeat)."""
    at = np.minimum(np.searchsorted(distinct, uids), max(len(distinct) - 1, 0))
    return distinct[at] == uids if len(distinct) else np.zeros(len(uids), dtype=bool)


def _join_bucket(
    direct: Sequence[bool], first: Sequence[tuple], *others: Sequence[tuple]
) -> list[Any]:
    """The row requests of an inner join in one bucket, for each later input in turn.

    A uid is in the join if every input holds it; the later input's row is
    its last row holding the uid, as ``Dataset.innerjoin`` takes; it goes to
    every partition of the first input that holds the uid. For an input of
    file slices (``direct``): for each partition of the first input, a (2, n)
    array of the input's partition numbers and row numbers it reads itself.
    Otherwise: for each of the input's partitions, a (2, n) array of row
    numbers and the first input's partition each is sent to. Last: (rows of
    the first input, how many have no match, some of their uids).
    """
    u0, p0, _ = _flat(first)
    keep = np.ones(len(u0), dtype=bool)
    chosen = []
    for pieces in others:
        u, p, r = _flat(pieces)
        order = np.argsort(u, kind="stable")  # a uid's rows stay in (partition, row) order
        su = u[order]
        last = np.append(su[1:] != su[:-1], True)[: len(su)]  # the last row of each uid
        distinct, at = su[last], order[last]
        chosen.append((distinct, p[at], r[at]))
        np.logical_and(keep, _member(u0, distinct), out=keep)
    # Each (uid, first-input partition) once, by uid.
    ku, kp = u0[keep], p0[keep]
    order = np.lexsort((kp, ku))
    ku, kp = ku[order], kp[order]
    new = np.append(True, (ku[1:] != ku[:-1]) | (kp[1:] != kp[:-1]))[: len(ku)]
    pair_uids, dest = ku[new], kp[new]
    out: list[Any] = []
    for (distinct, parts, rows), pieces, reads in zip(chosen, others, direct, strict=True):
        at = np.searchsorted(distinct, pair_uids)
        if reads:
            out += [
                np.stack([parts[at][dest == d], rows[at][dest == d]]) for d in range(len(first))
            ]
        else:
            out += [
                np.stack([rows[at][parts[at] == q], dest[parts[at] == q]])
                for q in range(len(pieces))
            ]
    dropped = u0[~keep]
    out.append((len(u0), len(dropped), dropped[: _SHOW_UIDS + 1].tolist()))
    return out


def _first_bucket(*inputs: Sequence[tuple]) -> list[list[np.ndarray]]:
    """For each input partition, the rows holding the first occurrence of their
    uid across the inputs in order (``Dataset.union_many``)."""
    flat = [piece for pieces in inputs for piece in pieces]
    uids, parts, rows = _flat(flat)
    _, first = np.unique(uids, return_index=True)  # concatenation order is input order
    kept = _by_part(parts[first], rows[first], len(flat))
    out, start = [], 0
    for pieces in inputs:
        out.append(kept[start : start + len(pieces)])
        start += len(pieces)
    return out


def _isin_bucket(first: Sequence[tuple], uids: Sequence[tuple]) -> list[list[np.ndarray]]:
    """For each partition of the first input, its rows whose uid is among uids."""
    u0, p0, r0 = _flat(first)
    wanted, _, _ = _flat(uids)
    keep = np.isin(u0, wanted)
    return [_by_part(p0[keep], r0[keep], len(first))]


def _repeats_bucket(*inputs: Sequence[tuple]) -> tuple[int, list[tuple[int, int, int]]]:
    """(rows repeating the uid of an earlier row, some (uid, input of the first
    row, input of the repeat)) in one bucket."""
    uids = [np.concatenate([u for u, _ in pieces]) for pieces in inputs if pieces]
    labels = [
        np.full(sum(len(u) for u, _ in pieces), i, dtype=np.int64)
        for i, pieces in enumerate(inputs)
        if pieces
    ]
    if not uids:
        return 0, []
    u, lab = np.concatenate(uids), np.concatenate(labels)
    order = np.argsort(u, kind="stable")  # stable: a run of one uid stays in input order
    su = u[order]
    repeat = np.flatnonzero(su[1:] == su[:-1]) + 1
    if len(repeat) == 0:
        return 0, []
    run_starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    examples: dict[int, tuple[int, int, int]] = {}
    for pos in repeat.tolist():
        uid = int(su[pos])
        if uid in examples:
            continue
        start = int(run_starts[np.searchsorted(run_starts, pos, side="right") - 1])
        examples[uid] = (uid, int(lab[order[start]]), int(lab[order[pos]]))
        if len(examples) == _SHOW_UIDS:
            break
    return len(repeat), list(examples.values())


def _check_no_drop(*found: tuple[int, int, list[int]]) -> bool:
    """Raise CsUidError if a row of the first input has no match (``assert_no_drop``)."""
    rows = sum(n for n, _, _ in found)
    dropped = sum(d for _, d, _ in found)
    if dropped == 0:
        return True
    uids = [u for _, _, some in found for u in some]
    raise CsUidError(
        f"innerjoin dropped {dropped} of {rows} rows of the first dataset; uids without a "
        f"match include {', '.join(map(str, uids[:_SHOW_UIDS]))}"
        + (", ..." if len(uids) > _SHOW_UIDS else "")
    )


def _check_unique(*found: tuple[int, list[tuple[int, int, int]]]) -> bool:
    """Raise CsUidError if any bucket found a repeated uid (as Dataset.append_many)."""
    count = sum(c for c, _ in found)
    if count == 0:
        return True
    shown = [e for _, examples in found for e in examples][:_SHOW_UIDS]
    text = [
        f"{uid} (datasets {a} and {b})" if a != b else f"{uid} (twice in dataset {a})"
        for uid, a, b in shown
    ]
    raise CsUidError(
        f"append: {count} row{'s repeat' if count > 1 else ' repeats'} the uid of an earlier "
        f"row, e.g. uid {', '.join(text)}"
        + (", ..." if count > len(shown) else "")
        + "; pass repeat_allowed=True if repeats are intended"
    )


# ------------------------------------------------------ partition tasks


def _take(part: _Slice | Dataset, fields: Sequence[str] | None, *rows: np.ndarray) -> Dataset:
    """The given rows of a partition (ascending), with only these fields (None: all)."""
    ds = _open(part)
    index = np.sort(np.concatenate(rows)) if rows else np.empty(0, np.int64)
    out = ds.take(index)
    return _compact(out if fields is None else out.filter_fields(fields))


def _requested(part: _Slice | Dataset, nfirst: int, *requests: np.ndarray) -> list[Dataset]:
    """For each partition of the first input of a join, the rows of this partition it needs."""
    ds = _open(part)
    req = np.concatenate(requests, axis=1) if requests else np.empty((2, 0), np.int64)
    by_dest = _by_part(req[1], req[0], nfirst)
    return [_compact(ds.take(rows)) for rows in by_dest]


def _join_part(first: _Slice | Dataset, *others: tuple) -> Dataset:
    """A partition of the first input joined with the rows of the others it needs.

    Each other input gives ``("read", its file slices, requests)``: the
    (partition, row) pairs to read from its files here; or ``("sent", None,
    pieces)``: the datasets its partitions' tasks sent.
    """
    gathered = []
    for how, slices, got in others:
        if how == "read":
            req = np.concatenate(got, axis=1) if got else np.empty((2, 0), np.int64)
            rows = _by_part(req[0], req[1], len(slices))
            in_file: dict[tuple, list[np.ndarray]] = {}  # each file read once, rows ascending
            for sl, r in zip(slices, rows, strict=True):
                in_file.setdefault((sl.path, sl.fields), []).append(r + sl.start)
            got = [_mapped(*key).take(np.concatenate(r)) for key, r in in_file.items()]
        gathered.append(Dataset.append_many(*got, repeat_allowed=True))
    return _compact(_open(first).innerjoin(*gathered))


def _select(part: _Slice | Dataset, fields: Sequence[str], *after: Any) -> Dataset:
    """A partition with only these fields (and uid)."""
    return _compact(_open(part).filter_fields(fields, copy=False))


def _subset_part(part: _Slice | Dataset, uids: Any, *after: Any) -> Dataset:
    """A partition's rows whose uid is in uids."""
    return _compact(_open(part).subset_uids(uids))


def _materialize(part: _Slice | Dataset, *after: Any) -> Dataset:
    """A partition as a dataset to send (after the checks it waits for)."""
    return _compact(_open(part))


def _save_part(part: _Slice | Dataset, path: str, *after: Any, fsync: bool = True) -> str:
    """Write a partition as a .cs file (``Dataset.save``); its path."""
    _open(part).save(path, fsync=fsync)
    return path


def _parquet_part(part: _Slice | Dataset, path: str, *after: Any) -> str:
    """Write a partition as Parquet (csfast's Arrow converter); its path."""
    from .convert import write_parquet

    write_parquet(_open(part), path)
    return path


def _assemble(shards: Sequence[str], tmp: str, args: tuple, options: dict[str, Any]) -> ResultGroup:
    """One output group from the shards, on a worker; the shards are removed."""
    try:
        parts = [Dataset.load(p, writable=False) for p in shards]
        table = Dataset.append_many(*parts, repeat_allowed=True)
        folder, job, name, item_type, results = args
        return _write_group(folder, job, name, table, item_type, results, **options)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------- collection


@dataclass(frozen=True, eq=False)
class Partitioned:
    """A dataset in partitions, each a csfast ``Dataset`` made by a Dask task.

    ``parts`` are file slices (mapped by the task that needs them) or Dask
    ``Delayed`` objects; ``meta`` is an empty dataset with the fields of
    every partition (string widths may differ between partitions: the
    result takes the widest, as ``Dataset.append_many``); ``lengths`` the
    row count of each partition where known before computing; ``checks``
    tasks that must succeed first (the uid check of an append). Nothing is
    read until ``compute``, ``persist`` or a ``to_*`` writer runs.
    """

    parts: tuple[Part, ...]
    meta: Dataset
    lengths: tuple[int | None, ...]
    checks: tuple[Delayed, ...] = ()

    @property
    def npartitions(self) -> int:
        return len(self.parts)

    def __repr__(self) -> str:
        known = None if None in self.lengths else sum(self.lengths)  # type: ignore[arg-type]
        rows = f"{known:,} rows" if known is not None else "rows unknown"
        return (
            f"Partitioned({self.npartitions} partitions, {rows}, {len(self.meta.fields())} fields)"
        )

    def fields(self, exclude_uid: bool = False) -> list[str]:
        return self.meta.fields(exclude_uid)

    def descr(self, exclude_uid: bool = False) -> list[Field]:
        return self.meta.descr(exclude_uid)

    def known_rows(self) -> int | None:
        """The row count, if known without computing (file slices, appends of them)."""
        return None if None in self.lengths else sum(self.lengths)  # type: ignore[arg-type]

    def to_delayed(self) -> list[Delayed]:
        """One Delayed per partition, each giving a csfast Dataset."""
        return [delayed(_materialize)(p, *self.checks) for p in self.parts]

    def compute(self, **kwargs: Any) -> Dataset:
        """The whole dataset, gathered here (``Dataset.append_many`` of the partitions).

        ``kwargs`` go to ``dask.compute``."""
        parts = dask.compute(*self.to_delayed(), **kwargs)
        return Dataset.append_many(*parts, repeat_allowed=True)

    def persist(self, **kwargs: Any) -> Partitioned:
        """The partitions computed and kept on the workers."""
        parts = dask.persist(*self.to_delayed(), **kwargs)
        return Partitioned(tuple(parts), self.meta, self.lengths)

    # ------------------------------------------------------------ operations

    def innerjoin(
        self, *others: Partitioned, assert_no_drop: bool = False, buckets: int | None = None
    ) -> Partitioned:
        """See ``innerjoin``."""
        return innerjoin(self, *others, assert_no_drop=assert_no_drop, buckets=buckets)

    def append(
        self,
        *others: Partitioned,
        assert_same_fields: bool = False,
        repeat_allowed: bool = False,
        buckets: int | None = None,
    ) -> Partitioned:
        """See ``append``."""
        return append(
            self,
            *others,
            assert_same_fields=assert_same_fields,
            repeat_allowed=repeat_allowed,
            buckets=buckets,
        )

    def union(
        self, *others: Partitioned, assert_same_fields: bool = False, buckets: int | None = None
    ) -> Partitioned:
        """See ``union``."""
        return union(self, *others, assert_same_fields=assert_same_fields, buckets=buckets)

    def subset_uids(self, uids: Any, buckets: int | None = None) -> Partitioned:
        """See ``subset_uids``."""
        return subset_uids(self, uids, buckets=buckets)

    # --------------------------------------------------------------- writing

    def to_cs(
        self, folder: str | os.PathLike, stem: str = "part", *, fsync: bool = True
    ) -> list[str]:
        """Write each partition as ``<folder>/<stem>.<number>.cs``, on the workers; the paths.

        Each worker writes the partitions it holds (atomically, as
        ``Dataset.save``, with its ``fsync``): no row crosses the network.
        ``read_cs(paths)`` reads them back.
        """
        return self._write(folder, stem, ".cs", functools.partial(_save_part, fsync=fsync))

    def to_parquet(self, folder: str | os.PathLike, stem: str = "part") -> list[str]:
        """Write each partition as ``<folder>/<stem>.<number>.parquet`` (csfast's Arrow
        converter, extra ``csfast[arrow]``), on the workers; the paths."""
        return self._write(folder, stem, ".parquet", _parquet_part)

    def _write(
        self, folder: str | os.PathLike, stem: str, ext: str, task: Callable[..., str]
    ) -> list[str]:
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        width = max(5, len(str(self.npartitions - 1)))
        paths = [
            os.path.join(folder, f"{stem}.{i:0{width}d}{ext}") for i in range(self.npartitions)
        ]
        tasks = [
            delayed(task)(p, path, *self.checks) for p, path in zip(self.parts, paths, strict=True)
        ]
        return list(dask.compute(*tasks))

    def write_output(
        self,
        folder: str | os.PathLike,
        job: str,
        name: str,
        item_type: str,
        results: Sequence[str],
        **options: Any,
    ) -> ResultGroup:
        """Write a job's output group (``csfast.write_output``: one .cs and the .csg).

        The workers write their partitions as .cs shards in a hidden folder
        inside ``folder``; then one worker maps the shards, appends them and
        calls ``csfast.write_output`` (``options``: its keyword arguments,
        ``version``, ``passthrough``, ``title``...), and removes the shards.
        Rows cross the network only through the shared file system.
        """
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{job}_{name}.shards-", dir=folder)
        try:
            width = max(5, len(str(self.npartitions - 1)))
            shards = [
                delayed(_save_part)(  # temporary: write_output syncs what it writes
                    p, os.path.join(tmp, f"part.{i:0{width}d}.cs"), *self.checks, fsync=False
                )
                for i, p in enumerate(self.parts)
            ]
            args = (folder, job, name, item_type, list(results))
            group = delayed(_assemble)(shards, tmp, args, options)
            return dask.compute(group)[0]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------- reading


def read_cs(
    source: str | os.PathLike | Iterable[str | os.PathLike] | ResultGroup,
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
    *,
    fields: Sequence[str] | None = None,
    results: Sequence[str] | None = None,
    version: int | None = None,
) -> Partitioned:
    """A Partitioned of .cs files: partitions of at most ``rows_per_partition``
    consecutive rows of one file.

    ``source``: a path, several (their rows one after the other, fields the
    ones every file has, as ``Dataset.append_many``; no uid check), or a
    ``ResultGroup`` (its results' metafiles joined on uid, as
    ``ResultGroup.load``: rows follow the first result's metafile;
    ``version`` picks a version). ``fields`` / ``results`` keep only those
    fields, as ``Dataset.load``. Only headers are read here. A CSDAT stream
    cannot be sliced in place: it is one partition, read whole by its task
    (and here, for its string widths).
    """
    if rows_per_partition < 1:
        raise CsArgumentError(f"rows_per_partition must be at least 1, not {rows_per_partition}")
    if isinstance(source, ResultGroup):
        if fields is not None:
            raise CsArgumentError("read_cs of a result group takes results=, not fields=")
        return _read_group(source, rows_per_partition, results, version)
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not paths:
        raise CsArgumentError("read_cs needs at least one path")
    metas, parts, lengths = [], [], []
    for path in [os.path.abspath(os.fspath(p)) for p in paths]:
        head = Dataset.load(path, fields=fields, results=results, writable=False)
        metas.append(_empty(head))
        info = inspect(path)
        names = tuple(head.fields())
        step = info.rows if info.kind == "csdat" else rows_per_partition
        for start in range(0, max(info.rows, 1), max(step, 1)):
            stop = min(start + step, info.rows)
            parts.append(_Slice(path, start, stop, names))
            lengths.append(stop - start)
        del head
    meta = _common(metas, [1] * len(metas), False)
    names = tuple(meta.fields())
    parts = [p._replace(fields=names) for p in parts]
    return Partitioned(tuple(parts), meta, tuple(lengths))


def _read_group(
    group: ResultGroup, rows_per_partition: int, results: Sequence[str] | None, version: int | None
) -> Partitioned:
    """The results' metafiles, each read once for the results it holds, joined on uid."""
    names = list(results) if results is not None else list(group.results)
    by_file: dict[str, list[str]] = {}
    for n in names:
        r = group[n]
        path = group.passthrough_metafile(n, version) if r.passthrough else r.metafile_of(version)
        if path is None:  # a passthrough result not written with this version
            if results is not None:
                raise CsVersionError(
                    f"passthrough result {r.label} is not part of version "
                    f"{group.version if version is None else version}"
                )
            continue
        by_file.setdefault(path, []).append(n)
    tables = [read_cs(p, rows_per_partition, results=ns) for p, ns in by_file.items()]
    return tables[0] if len(tables) == 1 else innerjoin(*tables)


# ------------------------------------------------------------- operations


def _common(metas: Sequence[Dataset], lengths: Sequence[int | None], same: bool) -> Dataset:
    """An empty dataset of the fields an append of these datasets keeps
    (those of the ones that may have rows; CsFieldError on a dtype conflict)."""
    full = [m for m, n in zip(metas, lengths, strict=True) if n != 0] or [metas[0]]
    if len(full) == 1 and not same:
        return full[0]
    fields = Dataset.common_fields(*full, assert_same_fields=same)
    columns = {f[0]: np.empty((0, *(f[2] if len(f) > 2 else ())), dtype=f[1]) for f in fields}
    return Dataset.from_columns(columns, rows=0)


def _buckets(inputs: Sequence[Partitioned], buckets: int | None) -> int:
    """The number of hash buckets: as asked, else one per ROWS_PER_BUCKET rows of
    the inputs (where known), at most the largest partition count.

    Each bucket is a task, and each input partition sends each bucket a piece:
    fewer buckets, fewer tasks, as long as a bucket's uids stay small.
    """
    n = buckets
    if n is None:
        n = max(c.npartitions for c in inputs)
        rows = [c.known_rows() for c in inputs]
        if None not in rows:
            n = min(n, max(1, -(-sum(rows) // ROWS_PER_BUCKET)))  # type: ignore[arg-type]
    if n < 1:
        raise CsArgumentError(f"buckets must be at least 1, not {n}")
    return n


def _shuffle(
    inputs: Sequence[Partitioned], nbuckets: int, match: Callable[..., Any], *args: Any
) -> list[Delayed]:
    """One task per hash bucket: ``match(*args, ...)`` of that bucket's (uids, rows)
    pieces of every input partition (one list per input)."""
    seed = secrets.randbits(64)
    splits = [
        [delayed(_split, nout=nbuckets)(p, nbuckets, seed, *c.checks) for p in c.parts]
        for c in inputs
    ]
    return [
        delayed(match)(*args, *[[s[b] for s in per_input] for per_input in splits])
        for b in range(nbuckets)
    ]


def _checks(inputs: Iterable[Partitioned]) -> tuple[Delayed, ...]:
    seen: dict[str, Delayed] = {}
    for c in inputs:
        for d in c.checks:
            seen.setdefault(d.key, d)
    return tuple(seen.values())


def innerjoin(
    *inputs: Partitioned, assert_no_drop: bool = False, buckets: int | None = None
) -> Partitioned:
    """Rows whose uid is in every input, joined on uid (``Dataset.innerjoin``).

    The output has the first input's partitions and row order, its
    duplicate uids kept; for a uid repeated in a later input its last row is
    used; a field in several inputs comes from the last one. What crosses
    the network: uids and row numbers to the hash buckets (``buckets`` of
    them, by default one per ROWS_PER_BUCKET rows), row numbers back. The
    task of each partition of the first input then reads the matched rows
    of later inputs that are file slices from their files itself; a later
    input made by an operation sends it the matched rows (never a whole
    partition). ``assert_no_drop``: a row of the first input without a match
    makes the computation raise CsUidError (checked in the buckets).
    """
    if not inputs:
        raise CsArgumentError("innerjoin needs at least one input")
    if len(inputs) == 1:
        return inputs[0]
    meta = inputs[0].meta.innerjoin(*(c.meta for c in inputs[1:]))  # field conflicts fail here
    meta = _empty(meta)
    k = _buckets(inputs, buckets)
    first = inputs[0]
    # A later input of file slices is read by the first input's partition tasks
    # themselves; another one's partitions send them the rows they need.
    direct = tuple(all(isinstance(p, _Slice) for p in c.parts) for c in inputs[1:])
    matched: list[Any] = _shuffle(inputs, k, _join_bucket, direct)  # Delayed: indexable
    nfirst = first.npartitions
    wanted: list[list[tuple]] = []  # per later input, per first-input partition
    at = 0  # where the input's requests start in each bucket's list
    for c, reads in zip(inputs[1:], direct, strict=True):
        if reads:
            wanted.append([("read", c.parts, [m[at + d] for m in matched]) for d in range(nfirst)])
            at += nfirst
            continue
        sent = [
            delayed(_requested, nout=nfirst)(p, nfirst, *[m[at + q] for m in matched])
            for q, p in enumerate(c.parts)
        ]
        wanted.append([("sent", None, [s[d] for s in sent]) for d in range(nfirst)])
        at += c.npartitions
    parts = tuple(
        delayed(_join_part)(p, *[per_input[d] for per_input in wanted])
        for d, p in enumerate(first.parts)
    )
    checks = _checks(inputs)
    if assert_no_drop:
        checks = (*checks, delayed(_check_no_drop)(*[m[at] for m in matched]))
    return Partitioned(parts, meta, (None,) * nfirst, checks)


def append(
    *inputs: Partitioned,
    assert_same_fields: bool = False,
    repeat_allowed: bool = False,
    buckets: int | None = None,
) -> Partitioned:
    """Every input's partitions in order (``Dataset.append_many``): no row moves.

    Fields are those every input that may have rows has. Unless
    ``repeat_allowed``, a uid in two rows (across all partitions) makes the
    computation raise CsUidError naming some of them and the inputs
    (argument positions) that hold them; the check sends uids and row
    numbers to the hash buckets and nothing back but the count.
    """
    meta, full = _rows_of("append", inputs, assert_same_fields)
    names = meta.fields()
    checks = _checks(inputs)
    if not repeat_allowed:
        k = _buckets(full, buckets)
        found = _shuffle(full, k, _repeats_bucket)
        checks = (*checks, delayed(_check_unique)(*found))
    parts: list[Part] = []
    for c in full:
        for p in c.parts:
            if isinstance(p, _Slice):
                parts.append(p._replace(fields=tuple(names)))
            else:
                parts.append(delayed(_select)(p, names))
    all_lengths = tuple(n for c in full for n in c.lengths)
    return Partitioned(tuple(parts), meta, all_lengths, checks)


def _rows_of(
    what: str, inputs: Sequence[Partitioned], assert_same_fields: bool
) -> tuple[Dataset, Sequence[Partitioned]]:
    """(an empty dataset of the output fields, the inputs to take rows from) of an
    append or union: inputs known to have no rows are skipped, fields and all,
    as Dataset.append_many skips empty datasets (the first is kept if all are)."""
    if not inputs:
        raise CsArgumentError(f"{what} needs at least one input")
    lengths = [c.known_rows() for c in inputs]
    meta = _common([c.meta for c in inputs], lengths, assert_same_fields)
    full = [c for c in inputs if c.known_rows() != 0]
    return meta, full or inputs[:1]


def _keep_rows(
    inputs: Sequence[Partitioned], kept: list[Any], which: int, fields: Sequence[str] | None
) -> list[Delayed]:
    """The partitions of input ``which``, each keeping the rows the buckets named."""
    c = inputs[which]
    return [delayed(_take)(p, fields, *[b[which][q] for b in kept]) for q, p in enumerate(c.parts)]


def union(
    *inputs: Partitioned, assert_same_fields: bool = False, buckets: int | None = None
) -> Partitioned:
    """Rows of every input, the first occurrence of each uid in input order kept
    (``Dataset.union_many``).

    The output has every input's partitions, each keeping its first
    occurrences in row order. Only uids and row numbers cross the network.
    """
    meta, full = _rows_of("union", inputs, assert_same_fields)
    names = meta.fields()
    k = _buckets(full, buckets)
    kept = _shuffle(full, k, _first_bucket)
    parts = [part for i in range(len(full)) for part in _keep_rows(full, kept, i, names)]
    return Partitioned(tuple(parts), meta, (None,) * len(parts), _checks(inputs))


def subset_uids(data: Partitioned, uids: Any, buckets: int | None = None) -> Partitioned:
    """Rows whose uid is in uids, in order (``Dataset.subset_uids``).

    ``uids``: an array of uids, sent once to each worker, or a Partitioned
    whose uids are wanted (then both are hashed to buckets: only uids and row
    numbers cross the network).
    """
    if isinstance(uids, Partitioned):
        k = _buckets([data, uids], buckets)
        kept = _shuffle([data, uids], k, _isin_bucket)
        parts = _keep_rows([data, uids], kept, 0, None)
        return Partitioned(tuple(parts), data.meta, (None,) * len(parts), _checks([data, uids]))
    data.meta.subset_uids(uids)  # bad uids (negative, not integers) fail here, not in a task
    if not isinstance(uids, np.ndarray):  # valid Python ints, some maybe >= 2**63
        uids = np.array(list(uids), dtype=_U64)
    wanted = delayed(uids)
    parts = [delayed(_subset_part)(p, wanted, *data.checks) for p in data.parts]
    return Partitioned(tuple(parts), data.meta, (None,) * len(parts), data.checks)
