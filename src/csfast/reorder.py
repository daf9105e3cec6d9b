"""Rows of a mapped table larger than memory, read in shuffled order, in sequential passes.

A join's output follows its first table; the other tables' rows are read
through a row index in shuffled order. When such a table is larger than the
memory budget (``spill.memory_limit()``), the page cache cannot hold it, and
every row read becomes a random read of the disk: at 0.2 ms each on the
development machine, three hours for 50M rows. ``Staged`` instead reads
the table in row order a block at a time (a block fits the budget) and
appends each row to the bucket file of the output range that needs it;
``save`` then reads one range's bucket back, scatters its rows into place
in memory and writes the range. Every access to the disk is sequential: the
fields needed are written once more and read once more.

The bucket files live in a spill folder beside the output (``SpillFolder``),
removed when the save ends, however it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _core
from .column import Column, Rows, gather_jobs, increasing, piece_spans, root_array
from .format import advise_scan, file_map_of, write_all

__all__ = ["Group", "Staged", "far_groups", "range_rows"]

# A row of the first pass: where in the output, which row of the table.
_PAIR = np.dtype([("at", "<i8"), ("row", "<i8")])
# Open files at once: one per block in the first pass, one per range in the second.
_MAX_FILES = 1024
# A block of table rows, an output range's staged rows and a chunk of the
# first pass each take a quarter of the budget, up to this: larger parts
# save no disk traffic (measured: 50M rows, 256 MiB parts in a 2 GiB cgroup
# ran 352 s; 3 GiB parts under a 12 GiB budget, 385 s and 8.2 GB of memory).
_MAX_PART = 256 << 20


def _part(budget: int) -> int:
    """Bytes of one block, range or chunk of the staging passes."""
    return min(budget // 4, _MAX_PART)


@dataclass
class Group:
    """Pieces of columns to stage together: they read one table through one
    row index, for the output rows [offset, offset + len(index))."""

    index: np.ndarray
    offset: int
    srcs: dict[str, np.ndarray] = field(default_factory=dict)  # column -> source
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (column, piece number)


def far_groups(cols: Mapping[str, Column], budget: int) -> list[Group]:
    """The pieces of lazy columns to stage, grouped by the table, row index
    and output rows they share: those read in shuffled order (an index that
    goes back) from a mapped table larger than `budget` bytes."""
    groups: dict[tuple[int, int, int], Group] = {}
    in_order: dict[int, bool] = {}
    for k, col in cols.items():
        if not isinstance(col, Rows) or col.dtype.kind == "U":
            continue
        for i, src, idx, at, _, _ in piece_spans(col, 0, len(col)):
            table = root_array(src)
            if idx is None or table.nbytes <= budget or file_map_of(table) is None:
                continue
            if id(idx) not in in_order:
                in_order[id(idx)] = increasing(idx)
            if not in_order[id(idx)]:
                group = groups.setdefault((id(table), id(idx), at), Group(idx, at))
                group.srcs[k] = src
                group.pieces.append((k, i))
    return list(groups.values())


def _runs(ends: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(i, start, end) of each non-empty run i, given the runs' cumulative ends."""
    start = 0
    for i, end in enumerate(ends.tolist()):
        if end > start:
            yield i, start, end
        start = end


def range_rows(rows: int, row_bytes: int, budget: int) -> int:
    """Rows of an output range: its staged rows take a quarter of the budget (at most _MAX_PART)."""
    return max(1, _part(budget) // max(row_bytes, 1), -(-rows // _MAX_FILES))


class Staged:
    """The rows of one ``Group``, distributed to one bucket file per output
    range of `ranges` rows that the group covers; ``rows(r)`` gives range r's."""

    def __init__(self, group: Group, ranges: int, budget: int, folder: Path):
        self.group, self.ranges = group, ranges
        self._index, self._srcs = group.index, group.srcs
        self._table = root_array(next(iter(group.srcs.values())))
        self.dtype = np.dtype(
            [("at", "<i8")] + [(k, a.dtype, a.shape[1:]) for k, a in self._srcs.items()]
        )
        #: The longest value of each string column, in bytes (found while staging).
        self.longest = {k: 0 for k, a in self._srcs.items() if a.dtype.kind == "S"}
        # Output ranges the group covers (its rows are output rows offset..).
        self._first = group.offset // ranges
        self._last = (group.offset + len(self._index) - 1) // ranges
        self._folder = folder / f"staged-{id(self)}"
        self._folder.mkdir()
        rows = len(self._table)
        block = max(1, _part(budget) // self._table.dtype.itemsize, -(-rows // _MAX_FILES))
        self._distribute(self._by_block(block, budget), block)

    def _by_block(self, block: int, budget: int) -> list[Path]:
        """First pass, over the row index in order: (output row, table row)
        pairs, one file per block of table rows, output rows ascending."""
        blocks = -(-len(self._table) // block)
        paths = [self._folder / f"pairs-{j}" for j in range(blocks)]
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(p, "wb")) for p in paths]
            step = max(1, _part(budget) // (3 * _PAIR.itemsize))
            for lo in range(0, len(self._index), step):
                rows = np.asarray(self._index[lo : lo + step], dtype=np.int64)
                which = (rows // block).astype(np.uint16)  # a radix sort: _MAX_FILES blocks
                order = np.argsort(which, kind="stable")
                pairs = np.empty(len(rows), _PAIR)
                pairs["at"] = order + (lo + self.group.offset)
                pairs["row"] = rows[order]
                for j, a, b in _runs(np.cumsum(np.bincount(which, minlength=blocks))):
                    write_all(files[j].write, pairs[a:b])
        return paths

    def _distribute(self, pair_files: list[Path], block: int) -> None:
        """Second pass, over the table in order, a block at a time: each
        needed row, with its output row, appended to its range's bucket."""
        covered = range(self._first, self._last + 1)
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(self._bucket(r), "wb")) for r in covered]
            for j, path in enumerate(pair_files):
                pairs = np.fromfile(path, _PAIR)
                path.unlink()
                if len(pairs) == 0:
                    continue
                # The block is read ahead whole: its rows are then gathered from the page cache.
                advise_scan(self._table[j * block : (j + 1) * block], "willneed")
                staged = np.empty(len(pairs), self.dtype)
                staged["at"] = pairs["at"]
                gather_jobs([(a, pairs["row"], staged[k]) for k, a in self._srcs.items()])
                for k in self.longest:
                    self.longest[k] = max(self.longest[k], _core.str_maxlen(staged[k]))
                # Output rows ascend within a block: each range's rows are one run.
                bounds = (np.arange(self._first, self._last + 1) + 1) * self.ranges
                ends = np.searchsorted(pairs["at"], bounds)
                for r, a, b in _runs(ends):
                    write_all(files[r].write, staged[a:b])

    def _bucket(self, r: int) -> Path:
        return self._folder / f"range-{r}"

    def rows(self, r: int) -> dict[str, np.ndarray] | None:
        """The columns' values for the output rows of range r (rows
        [r * ranges, (r + 1) * ranges)) that the group covers, in order;
        None if it covers none. The bucket file is then deleted."""
        if not self._first <= r <= self._last:
            return None
        staged = np.fromfile(self._bucket(r), self.dtype)
        self._bucket(r).unlink()
        lo = max(r * self.ranges, self.group.offset)
        n = min((r + 1) * self.ranges, self.group.offset + len(self._index)) - lo
        if len(staged) != n:
            raise RuntimeError(f"staged range {r} holds {len(staged)} rows, not {n}")
        at = staged["at"] - lo
        out = {}
        for k, a in self._srcs.items():
            out[k] = np.empty((n,) + a.shape[1:], a.dtype)
            out[k][at] = staged[k]
        return out
