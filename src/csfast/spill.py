"""The uid kernels in bounded memory: join index, repeats, first occurrence, isin.

Each function returns exactly what its namesake in ``_core`` returns. When
the in-memory kernel's working set (its hash partitions and tables, and the
arrays it returns; ``kernel_bytes``) fits the memory budget
(``memory_limit``), the ``_core`` kernel runs as is. Otherwise the uids are
partitioned by a hash of uid into files of (uid, row) records in a spill
folder, one pass reading each input's uid column once; each partition is
then matched in memory by the same ``_core`` kernel, and its per-row results
are scattered into arrays that live in files of the spill folder, mapped
(file pages, which the kernel can write back and drop, not anonymous
memory). A uid's rows all land in one partition, in row order, so "first"
and "last" occurrence mean the same there as in the whole input.

The spill folder (``SpillFolder``) is removed when the function returns or
raises; the returned arrays stay valid because a mapped file outlives its
name. A folder left by a killed run is removed by the next run in the same
parent folder. Its parent is the ``folder=`` argument, else that of the
innermost ``spill_folder(...)`` block (the commands and the functions that
write a file open one beside their output), else ``CSFAST_SPILL_DIR``, else
the system's temporary folder.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import numpy as np

from . import _core
from .errors import CsArgumentError
from .format import write_all

__all__ = [
    "DEFAULT_FRACTION",
    "SpillFolder",
    "beside",
    "clean_stale",
    "first_occurrence",
    "isin",
    "join_index",
    "kernel_bytes",
    "memory_limit",
    "nonzero_rows",
    "physical_memory",
    "repeats",
    "spill_folder",
    "spill_parent",
    "spills_beside",
]

# The default budget: this fraction of physical memory (or of the memory
# cgroup's limit, when smaller). The rest is left to the page cache, which
# holds the mapped inputs and the spilled files, and to the caller.
DEFAULT_FRACTION = 0.5
ENV = "CSFAST_MEMORY_LIMIT"
DIR_ENV = "CSFAST_SPILL_DIR"
PREFIX = ".csfast-spill-"
_STALE = re.compile(re.escape(PREFIX) + r"(\d+)-")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# A spilled uid and its row (global: inputs numbered one after the other).
RECORD = _core.RECORD
# Bytes a row of the partition pass holds at once: its record, and room for
# the caller's chunks of the join's last pass (a row and its matches).
_PASS_ROW_BYTES = 32
# Partition files are written through open descriptors, one a partition.
_MAX_PARTS = 1 << 12


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if m is None or float(m.group(1)) * _UNITS[m.group(2)] < 1:
        raise CsArgumentError(
            f"{ENV}={text!r}: expected a positive number of bytes, optionally with a "
            "K, M, G or T suffix (powers of 1024), e.g. 2G"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_limits() -> Iterator[int]:
    """The memory limits of this process's cgroups and their ancestors (v1 and v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            roots, name = [Path("/sys/fs/cgroup/memory")], "memory.limit_in_bytes"
        elif controllers == "":
            roots, name = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")], "memory.max"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for root in roots:
            for depth in range(len(parts) + 1):
                limit = _read_int(root.joinpath(*parts[:depth], name))
                if limit is not None:
                    yield limit


@functools.cache
def physical_memory() -> int:
    """Bytes of memory this process can use: MemTotal, or the smaller limit
    of its memory cgroup (v1 memory.limit_in_bytes, v2 memory.max) or an
    ancestor's. Read once per process (about a millisecond of file reads)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    return min([total, *_cgroup_limits()])


def memory_limit() -> int:
    """The memory budget in bytes: CSFAST_MEMORY_LIMIT (bytes, or with a K, M, G
    or T suffix), else DEFAULT_FRACTION of ``physical_memory()``."""
    text = os.environ.get(ENV, "").strip()
    if text:
        return _parse_size(text)
    return int(physical_memory() * DEFAULT_FRACTION)


# ---------------------------------------------------------------- estimates

# From csrc/hash.c: a partitioned lookup holds the build side's keys, rows
# and partition ids (8 + 8 + 2 bytes a row) and the probe side's keys and
# ids (8 + 2; its row-order copy reuses the output); first-row kernels hold
# keys, rows, ids and the first-row array (8 + 8 + 2 + 8). Tables are per
# partition (about 16k rows) and per thread: small beside these.
_BUILD, _PROBE, _FIRST = 18, 10, 26


def kernel_bytes(op: str, sizes: Sequence[int]) -> int:
    """Anonymous memory the in-memory ``_core`` kernel `op` needs for inputs of
    these row counts (for isin: values, members), outputs included."""
    if op == "join_index":
        if len(sizes) < 2:
            return 8 * sum(sizes)
        n0 = sizes[0]
        keys = 8 * n0 if len(sizes) > 2 else 0
        # The outputs, plus the copies made when fewer than half the rows match.
        return 12 * len(sizes) * n0 + keys + _BUILD * max(sizes[1:]) + _PROBE * n0
    if op == "isin":
        values, members = sizes
        return _BUILD * members + (_PROBE + 8 + 1) * values
    if op in ("repeats", "first_occurrence"):
        # repeats returns at most one repeat and one first row per row.
        return (_FIRST + (16 if op == "repeats" else 1)) * sum(sizes)
    raise ValueError(f"unknown kernel {op!r}")


# ------------------------------------------------------------- spill folder


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if unknown): with
    the pid, it names a process (pids are reused, start times are not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _owner() -> str:
    return f"{socket.gethostname()}\n{os.getpid()}\n{_start_time(os.getpid())}\n"


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return not started or _start_time(pid) in ("", started)


def clean_stale(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove the spill folders in `parent` whose process is gone; returns them.

    A folder is stale when its owner file names this host and a process that
    no longer runs (or a pid now held by a process started at another time).
    Folders of other hosts (a shared file system) are left alone.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            m = _STALE.match(entry.name)
            if m is None or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                host, pid, started = (Path(entry.path) / "owner").read_text().split("\n")[:3]
            except (OSError, ValueError):
                host, pid, started = socket.gethostname(), m.group(1), ""
            if host != socket.gethostname() or _alive(int(pid), started):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


# The parent of the spill folders of kernels called without folder=, set by
# spill_folder(): a context variable, so each thread and asyncio task sees
# its own (a new thread starts with none).
_PARENT: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "csfast_spill_parent", default=None
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def spill_parent(folder: str | os.PathLike[str] | None = None) -> Path:
    """Where a spill folder goes: `folder`, else the innermost ``spill_folder``
    block's parent, else CSFAST_SPILL_DIR, else the system's temporary folder."""
    if folder is not None:
        return Path(folder)
    return _PARENT.get() or Path(os.environ.get(DIR_ENV) or tempfile.gettempdir())


@contextlib.contextmanager
def spill_folder(parent: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, the kernels called without ``folder=`` spill in
    `parent` (None: back to CSFAST_SPILL_DIR or the temporary folder). Blocks
    nest; leaving one restores the outer block's parent."""
    token = _PARENT.set(None if parent is None else Path(parent))
    try:
        yield
    finally:
        _PARENT.reset(token)


def beside(output: str | os.PathLike[str] | None) -> Path | None:
    """The parent for spills of work that writes `output`: output itself when
    it is an existing folder, else the folder it is in (a file, or a folder
    yet to be made); None when there is no output or that folder is missing
    (the write will say so)."""
    if output is None:
        return None
    path = Path(os.path.abspath(output))
    folder = path if path.is_dir() else path.parent
    return folder if folder.is_dir() else None


def spills_beside(param: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: the function runs inside ``spill_folder(beside(<its argument
    named param>))``, so what it matches spills on the disk of its output."""

    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            output = signature.bind(*args, **kwargs).arguments.get(param)
            with spill_folder(beside(output)):
                return func(*args, **kwargs)

        return run

    return decorate


class SpillFolder:
    """A temporary folder ``.csfast-spill-<pid>-<random>`` inside `parent`
    (default: ``spill_parent()``), removed on exit, success or failure.
    Entering it first removes the stale folders of killed runs."""

    def __init__(self, parent: str | os.PathLike[str] | None = None):
        self.parent = spill_parent(parent)
        self.path: Path | None = None

    def __enter__(self) -> Path:
        clean_stale(self.parent)
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent))
        (self.path / "owner").write_text(_owner())
        return self.path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _mapped(path: Path, dtype: Any, n: int, fill: Any = None) -> np.ndarray:
    """A new file of n items, mapped read-write (zeros, or `fill`).

    The blocks are allocated first: a full disk is then an OSError here,
    not a SIGBUS when a page of a sparse file is first written.
    """
    size = n * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(n, dtype=dtype)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    arr = np.memmap(path, dtype=dtype, mode="r+", shape=(n,)).view(np.ndarray)
    if fill is not None:
        arr.fill(fill)
    return arr


# --------------------------------------------------------------- partitions


def _chunk_rows(budget: int) -> int:
    return max(256, budget // (4 * _PASS_ROW_BYTES))


def _part_bits(rows: int, row_bytes: int, budget: int) -> int:
    """Partition bits so that a partition's working set takes about half the
    budget (room for uneven partitions and for what the caller holds)."""
    # More partitions than rows would only add files.
    most = max(1, min(_MAX_PARTS.bit_length() - 1, rows.bit_length() - 1))
    bits = 1
    while bits < most and (rows * row_bytes) >> bits > budget // 2:
        bits += 1
    return bits


# Keyed from the kernels' own per-process key, so CSFAST_HASH_SEED reproduces
# the partitions too (csrc/partition.h: a different function from the
# kernels' hash, so the uids of one partition still spread over its table).
_SEED = _core._hash_key[0] ^ _core._hash_key[3]


class _Partitions:
    """The (uid, global row) records of some uid arrays, in 2**bits files by
    a hash of uid; each file holds its rows input by input, in row order."""

    def __init__(self, folder: Path, arrays: Sequence[np.ndarray], bits: int, chunk: int):
        self.starts = np.cumsum([0] + [len(a) for a in arrays]).tolist()
        self.paths = [folder / f"part-{p:04d}" for p in range(1 << bits)]
        fds: list[int] = []
        try:
            for path in self.paths:
                fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            for a, start in zip(arrays, self.starts, strict=False):
                for lo in range(0, len(a), chunk):
                    self._write(fds, a[lo : lo + chunk], start + lo, bits)
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def _write(fds: list[int], uids: np.ndarray, start: int, bits: int) -> None:
        # One read of the (often strided, mapped) uid column per chunk.
        rec, counts = _core.partition(uids, start, _SEED, bits)
        lo = 0
        for p, hi in enumerate(np.cumsum(counts).tolist()):
            if hi > lo:
                # A full disk writes part of a record run, then raises ENOSPC.
                write_all(functools.partial(os.write, fds[p]), rec[lo:hi])
            lo = hi

    def __iter__(self) -> Iterator[np.ndarray]:
        """The records of each partition in turn (each file is removed once read)."""
        for path in self.paths:
            rec = np.fromfile(path, dtype=RECORD)
            path.unlink()
            yield rec

    def split(self, rec: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """A partition's records per input: (uids, rows within the input)."""
        cut = np.searchsorted(rec["row"], self.starts).tolist()
        return [
            (
                np.ascontiguousarray(rec["uid"][cut[i] : cut[i + 1]]),
                rec["row"][cut[i] : cut[i + 1]] - self.starts[i],
            )
            for i in range(len(self.starts) - 1)
        ]


def _spill(op: str, arrays: list[np.ndarray], budget: int, folder: Path) -> _Partitions:
    """Partitions of the arrays small enough for kernel `op` within the budget."""
    sizes = [len(a) for a in arrays]
    rows = sum(sizes)
    if op in ("repeats", "first_occurrence"):
        sizes = [rows]
    # A partition's records (16 bytes a row) are in memory while it is matched.
    row_bytes = -(-kernel_bytes(op, sizes) // max(rows, 1)) + RECORD.itemsize
    return _Partitions(folder, arrays, _part_bits(rows, row_bytes, budget), _chunk_rows(budget))


def _budget(budget: int | None) -> int:
    return memory_limit() if budget is None else int(budget)


# ----------------------------------------------------------------- kernels


def join_index(
    keys: Sequence[Any], *, budget: int | None = None, folder: str | os.PathLike[str] | None = None
) -> list[np.ndarray]:
    """``_core.join_index(keys)`` within `budget` bytes (default ``memory_limit()``).

    Row indices of a multi-way inner join on uid: output rows follow keys[0]
    (repeats kept), each later input's row is the last one holding the uid.
    Spilled results are mapped files, created with the spill folder in
    `folder` (default: ``spill_parent()``).
    """
    arrays = [_core._as_uids(k) for k in keys]
    sizes = [len(a) for a in arrays]
    budget = _budget(budget)
    if not arrays or kernel_bytes("join_index", sizes) <= budget:
        return list(_core.join_index(arrays))
    n0, m = sizes[0], len(arrays)
    chunk = _chunk_rows(budget)
    with SpillFolder(folder) as tmp:
        if m == 1:  # every row, in order
            rows = _mapped(tmp / "index-0", np.intp, n0)
            for lo in range(0, n0, chunk):
                rows[lo : lo + chunk] = np.arange(lo, min(lo + chunk, n0))
            return [rows]
        parts = _spill("join_index", arrays, budget, tmp)
        # Per row of the first input, its matched row in input k, plus one (0: none).
        match = [_mapped(tmp / f"match-{k}", np.int64, n0) for k in range(1, m)]
        for rec in parts:
            part = parts.split(rec)
            local = _core.join_index([u for u, _ in part])
            first = part[0][1][local[0]]
            for k in range(1, m):
                match[k - 1][first] = part[k][1][local[k]] + 1
        n = sum(int(np.count_nonzero(match[0][lo : lo + chunk])) for lo in range(0, n0, chunk))
        out = [_mapped(tmp / f"index-{k}", np.intp, n) for k in range(m)]
        at = 0
        for lo in range(0, n0, chunk):
            hit = np.flatnonzero(match[0][lo : lo + chunk])
            out[0][at : at + len(hit)] = hit + lo
            for k in range(1, m):
                out[k][at : at + len(hit)] = match[k - 1][lo + hit] - 1
            at += len(hit)
    return out


def _first_rows(arrays: list[np.ndarray], budget: int, tmp: Path) -> tuple[int, np.ndarray]:
    """(count, first): first[r] is 1 + the global row of the first occurrence of
    row r's uid when r repeats an earlier row, else 0 (a mapped file)."""
    parts = _spill("repeats", arrays, budget, tmp)
    first = _mapped(tmp / "first", np.int64, parts.starts[-1])
    count = 0
    for rec in parts:
        uids, rows = np.ascontiguousarray(rec["uid"]), rec["row"]
        c, rep, fst = _core.repeats([uids], len(uids))
        first[rows[rep]] = rows[fst] + 1
        count += c
    return count, first


def repeats(
    keys: Sequence[Any],
    limit: int,
    *,
    budget: int | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> tuple[int, np.ndarray, np.ndarray]:
    """``_core.repeats(keys, limit)`` within `budget` bytes: (count, repeat rows,
    first rows) of the rows (of the concatenation of keys) whose uid appeared
    in an earlier row, at most `limit` of them listed."""
    arrays = [_core._as_uids(k) for k in keys]
    total = sum(len(a) for a in arrays)
    budget = _budget(budget)
    if kernel_bytes("repeats", [total]) <= budget:
        return _core.repeats(arrays, limit)
    with SpillFolder(folder) as tmp:
        # The whole input as one: only global rows matter here.
        count, first = _first_rows(arrays, budget, tmp)
        k = min(count, max(limit, 0), total)
        rep = _mapped(tmp / "repeat-rows", np.int64, k)
        fst = _mapped(tmp / "first-rows", np.int64, k)
        chunk, at = _chunk_rows(budget), 0
        for lo in range(0, total, chunk):
            if at == k:
                break
            hit = np.flatnonzero(first[lo : lo + chunk])[: k - at]
            rep[at : at + len(hit)] = hit + lo
            fst[at : at + len(hit)] = first[lo + hit] - 1
            at += len(hit)
    return count, rep, fst


def first_occurrence(
    keys: Sequence[Any], *, budget: int | None = None, folder: str | os.PathLike[str] | None = None
) -> list[np.ndarray]:
    """``_core.first_occurrence(keys)`` within `budget` bytes: per input, a mask
    of the rows whose uid appears in no earlier row of any input."""
    arrays = [_core._as_uids(k) for k in keys]
    total = sum(len(a) for a in arrays)
    budget = _budget(budget)
    if kernel_bytes("first_occurrence", [total]) <= budget:
        return list(_core.first_occurrence(arrays))
    with SpillFolder(folder) as tmp:
        parts = _spill("first_occurrence", arrays, budget, tmp)
        mask = _mapped(tmp / "first", np.bool_, total, fill=True)
        for rec in parts:
            _, rep, _ = _core.repeats([np.ascontiguousarray(rec["uid"])], len(rec))
            mask[rec["row"][rep]] = False
    return [mask[s:e] for s, e in zip(parts.starts, parts.starts[1:], strict=False)]


def nonzero_rows(
    mask: np.ndarray, *, budget: int | None = None, folder: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """``np.flatnonzero(mask)`` of a 1-D mask within `budget` bytes: the rows
    a subset or union keeps, as an index array (a mapped file when the
    index exceeds the budget)."""
    budget = _budget(budget)
    chunk = _chunk_rows(budget)
    n = len(mask)
    count = sum(int(np.count_nonzero(mask[lo : lo + chunk])) for lo in range(0, n, chunk))
    if count * np.dtype(np.intp).itemsize <= budget:
        return np.flatnonzero(mask)
    with SpillFolder(folder) as tmp:
        rows = _mapped(tmp / "rows", np.intp, count)
        at = 0
        for lo in range(0, n, chunk):
            hit = np.flatnonzero(mask[lo : lo + chunk])
            rows[at : at + len(hit)] = hit + lo
            at += len(hit)
    return rows


def isin(
    values: Any,
    members: Any,
    *,
    budget: int | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """``_core.isin(values, members)`` within `budget` bytes: whether each value
    is among the members (a mask of values' shape)."""
    shape = np.shape(values)
    v, mem = _core._as_uids(values), _core._as_uids(members)
    budget = _budget(budget)
    if kernel_bytes("isin", [len(v), len(mem)]) <= budget:
        return _core.isin(v, mem).reshape(shape)
    with SpillFolder(folder) as tmp:
        parts = _spill("isin", [v, mem], budget, tmp)
        out = _mapped(tmp / "isin", np.bool_, len(v))
        for rec in parts:
            (pv, rows), (pm, _) = parts.split(rec)
            out[rows[_core.isin(pv, pm)]] = True
    return out.reshape(shape)
