"""The .cs file format: numpy .npy headers, memory maps and atomic writes.

A .cs file is one 1-D structured numpy array in the .npy format (versions 1.0,
2.0 and 3.0). Headers are parsed here, without numpy's header size limit and
without ever unpickling; data is mapped (private: copy-on-write, read-only
until a dataset asks to write), so opening a file costs the same for ten rows
and fifty million.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import math
import os
import re
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from . import _core
from .errors import CsFieldError, CsFormatError
from .literal import LiteralError, parse_literal

__all__ = [
    "CsInfo",
    "inspect_npy",
    "read_header",
    "check_uid_field",
    "map_array",
    "map_file",
    "file_map_of",
    "atomic_write",
    "npy_header",
    "write_all",
    "hidden_name",
    "temp_files",
    "remove_stale_temps",
    "STALE_TEMP_SECONDS",
    "open_regular",
    "check_regular",
]

MAGIC = b"\x93NUMPY"
CSDAT_MAGIC = b"\x95CSDAT"
# Headers are capped far above real ones (about 100 kB for a 100-class table,
# 1 MB for 17,000 fields); beyond the caps the "header" is corruption or an
# attack. Worst cases measured at the caps: a plain header (the form numpy
# writes for flat tables, read field by field) of tiny fields costs about
# 1 s and 80 MB, most of it numpy building a dtype of 200,000 fields; any
# other form goes through csfast.literal, about 1 µs and 25 bytes a character.
MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_LITERAL_HEADER_BYTES = 2 * 1024 * 1024
_ARRAY_ALIGN = 64  # numpy >= 1.14 pads headers to 64 bytes
_GROWTH_AXIS_MAX_DIGITS = 21  # numpy >= 1.24 leaves room to grow the shape in place


@dataclass(frozen=True)
class CsInfo:
    """What the header of a table file says, read without touching its data.

    ``kind`` is ``"cs"`` for a numpy .cs file, ``"csdat"`` for a CSDAT
    stream (``csfast.tables.inspect`` reads either). A CSDAT stream has
    version (0, 0), ``data_offset`` at its first column, its string fields
    (``string_fields``, stored on a heap) shown as ``S1`` in ``dtype`` and
    as ``"|O"`` in ``fields``, and its ``compression`` and
    ``compressed_fields``; ``rows`` and the field names are exact.
    """

    path: str
    version: tuple[int, int]
    dtype: np.dtype
    rows: int
    data_offset: int
    file_size: int
    kind: Literal["cs", "csdat"] = "cs"
    compression: str | None = None
    compressed_fields: frozenset[str] = frozenset()
    string_fields: frozenset[str] = frozenset()

    @property
    def row_size(self) -> int:
        return self.dtype.itemsize

    @property
    def data_size(self) -> int:
        return self.rows * self.dtype.itemsize

    @property
    def fields(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(name, dtype string, sub-array shape) of every field, in file order
        (a CSDAT string field's dtype string is ``"|O"``)."""
        out = []
        for name in self.dtype.names or ():
            ft = self.dtype[name]
            base, shape = (ft.base, ft.shape) if ft.subdtype else (ft, ())
            out.append((name, "|O" if name in self.string_fields else base.str, tuple(shape)))
        return out


def inspect_npy(path: str | os.PathLike) -> CsInfo:
    """Header facts of a numpy .cs file (rows, fields, version, data offset, size);
    ``csfast.tables.inspect`` reads a CSDAT stream too.

    Reads only the header; raises CsFormatError for anything that is not a
    valid .cs file, and FileNotFoundError / PermissionError as they are.
    """
    with open_regular(path) as f:
        return read_header(f, os.fspath(path), os.fstat(f.fileno()).st_size)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """open(path, "rb"), refusing anything but a regular file (CsFormatError).

    A FIFO would block the open itself, then every read, until a writer
    comes; a device may never end. The file is opened non-blocking, checked
    with fstat (no race with a rename), then switched back to blocking.
    A directory raises IsADirectoryError, as open() does.
    """
    return open(path, "rb", opener=_open_regular_fd)


def check_regular(path: str | os.PathLike) -> None:
    """CsFormatError unless path is a regular file, for readers that open it
    themselves (Arrow, Parquet); FileNotFoundError etc. pass through."""
    _refuse_irregular(os.stat(path).st_mode, os.fspath(path))


def _open_regular_fd(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        _refuse_irregular(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_irregular(mode: int, name: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    kind = next((text for test, text in _KINDS if test(mode)), "a special file")
    raise CsFormatError(f"{name}: is {kind}, not a regular file; csfast reads only regular files")


def read_header(f: BinaryIO, name: str, file_size: int) -> CsInfo:
    """Parse and validate the .npy header at the current position of f."""
    start = f.read(10)
    if start[:6] == CSDAT_MAGIC:
        raise CsFormatError(f"{name}: is a CSDAT stream, not a numpy .cs file")
    if start[:6] != MAGIC:
        raise CsFormatError(f"{name}: not a .cs file (bad magic {start[:6]!r}, expected {MAGIC!r})")
    if len(start) < 8:
        raise CsFormatError(f"{name}: truncated: {len(start)} bytes, too short for a .npy header")
    version = (start[6], start[7])
    if version == (1, 0):
        prefix = 10
    elif version in ((2, 0), (3, 0)):
        prefix = 12
        start += f.read(2)
    else:
        raise CsFormatError(f"{name}: unsupported .npy format version {version[0]}.{version[1]}")
    if len(start) < prefix:
        raise CsFormatError(f"{name}: truncated: {len(start)} bytes, too short for a .npy header")
    (hlen,) = struct.unpack("<H" if prefix == 10 else "<I", start[8:prefix])
    if hlen > MAX_HEADER_BYTES:
        raise CsFormatError(
            f"{name}: header length {hlen} bytes is beyond any real .cs file "
            f"(csfast reads headers of up to {MAX_HEADER_BYTES} bytes)"
        )
    raw = f.read(hlen)
    if len(raw) < hlen:
        raise CsFormatError(f"{name}: truncated header: expected {hlen} bytes, found {len(raw)}")
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin1")
    except UnicodeDecodeError as e:
        raise CsFormatError(f"{name}: malformed header: not UTF-8 at byte {e.start}") from None
    header: object = _parse_plain_header(text)
    if header is None:
        if hlen > MAX_LITERAL_HEADER_BYTES:
            raise CsFormatError(
                f"{name}: header of {hlen} bytes is not in numpy's plain form, and beyond "
                f"{MAX_LITERAL_HEADER_BYTES} bytes only that form is read"
            )
        try:
            header = parse_literal(text)
        except LiteralError as e:
            raise CsFormatError(f"{name}: malformed header: {e}") from None
    dtype, rows = _validate_header(header, name)
    offset = prefix + hlen
    info = CsInfo(name, version, dtype, rows, offset, file_size)
    if file_size - offset < info.data_size:
        raise CsFormatError(
            f"{name}: truncated: header says {rows} rows of {dtype.itemsize} bytes "
            f"({info.data_size} bytes of data), found {max(file_size - offset, 0)} bytes"
        )
    return info


# The header numpy writes for a flat structured array, read field by field
# with one regular expression each: a fast path that makes a 1 MB header of
# 20,000 fields parse in milliseconds, in memory proportional to the fields
# (one regular expression over the whole header would keep a backtracking
# stack of about 17 bytes a character). Any other header (nested dtypes,
# escaped names, odd spacing, Python 2's 12L) goes through csfast.literal,
# which accepts every literal numpy may have written.
# Numbers of at most 20 digits (2**64 has 20): int() of longer ones is slow,
# and beyond 4,300 digits a ValueError; csfast.literal refuses them by name.
_FIELD_RE = re.compile(
    r"\('([^'\\]*)', '([<>|=]?[A-Za-z][A-Za-z0-9]*)'"
    r"(?:, \((\d{1,20}(?:, \d{1,20})*,?)\))?\)"
)
_PLAIN_START = "{'descr': ["
_PLAIN_END_RE = re.compile(
    r"\], 'fortran_order': (?P<fortran>False|True), "
    r"'shape': \((?P<rows>[1-9]\d{0,19}|0),\), \}\s*"
)


def _parse_plain_header(text: str) -> dict | None:
    if not text.startswith(_PLAIN_START):
        return None
    pos = len(_PLAIN_START)
    descr: list[tuple] = []
    field = _FIELD_RE.match
    while (m := field(text, pos)) is not None:
        name, dtype, shape = m.groups()
        if shape:
            descr.append((name, dtype, tuple(int(s) for s in shape.split(",") if s.strip())))
        else:
            descr.append((name, dtype))
        pos = m.end()
        if not text.startswith(", ", pos):
            break
        pos += 2
    else:
        if descr:  # a ", " not followed by a field
            return None
    end = _PLAIN_END_RE.fullmatch(text, pos)
    if end is None:
        return None
    return {
        "descr": descr,
        "fortran_order": end.group("fortran") == "True",
        "shape": (int(end.group("rows")),),
    }


def _validate_header(header: object, name: str) -> tuple[np.dtype, int]:
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= header.keys():
        raise CsFormatError(f"{name}: header is not a dict with descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape):
        raise CsFormatError(f"{name}: invalid shape {shape!r}")
    if len(shape) != 1:
        raise CsFormatError(f"{name}: a .cs table is 1-D, this array has shape {shape}")
    if header["fortran_order"] is not False:
        raise CsFormatError(f"{name}: fortran_order arrays are not .cs tables")
    descr = header["descr"]
    if not isinstance(descr, list):
        raise CsFormatError(f"{name}: not a structured array (descr {descr!r:.60})")
    if _has_object(descr):
        raise CsFormatError(
            f"{name}: has object ('|O') fields, which need pickle; refusing to load them"
        )
    try:
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as e:  # numpy raises TypeError, ValueError, KeyError... for bad descr
        raise CsFormatError(f"{name}: invalid field description ({e})") from None
    if dtype.names is None or len(dtype.names) == 0:
        raise CsFormatError(f"{name}: not a structured array with named fields")
    if dtype.hasobject:
        raise CsFormatError(f"{name}: has object fields, which need pickle; refusing to load them")
    if shape[0] and dtype.itemsize == 0:
        raise CsFormatError(f"{name}: rows of zero bytes")
    return dtype, shape[0]


def _has_object(descr: object) -> bool:
    """True if a descr (possibly nested) names an object type anywhere.

    Looks only at the type of each (name, type[, shape]) entry: a field may
    well be called "Omega".
    """
    if isinstance(descr, str):
        return descr.lstrip("|<>=")[:1] == "O"
    if isinstance(descr, list):
        return any(isinstance(d, tuple) and len(d) >= 2 and _has_object(d[1]) for d in descr)
    return False


def check_uid_field(info: CsInfo) -> None:
    """Refuse a table whose uid field cannot hold uids (a table without one passes).

    A uid is a 64-bit integer: ``<u8`` as cryoSPARC writes it, ``>u8`` (read
    by value), or ``<i8`` / ``>i8`` (read as the unsigned number with the same
    64 bits: -1 is the uid 2**64 - 1). Anything else (``|S8``, ``|V8``,
    ``<f8``, ``<u8`` with a sub-array shape, narrower integers) would make a
    join fail or silently truncate: CsFieldError naming the file and dtype.
    """
    if info.dtype.names is None or "uid" not in info.dtype.names:
        return
    ft = info.dtype["uid"]
    if ft.subdtype is not None:
        base, shape = ft.subdtype
        what = f"{base.str} with shape {shape}"
    elif ft.kind in "ui" and ft.itemsize == 8:
        return
    else:
        what = ft.str
    raise CsFieldError(
        f"{info.path}: field 'uid' is {what}; a uid column must hold 64-bit integers (<u8)"
    )


def map_array(path: str | os.PathLike) -> tuple[CsInfo, np.ndarray]:
    """Memory-map the table of a .cs file, private and read-only.

    Costs the same at any row count: reads the header, maps the file, and
    wraps the mapping; pages are read only when a column touches them. The
    file descriptor is closed before returning (the map stays valid), so
    thousands of open tables hold no descriptors. The table's base is a
    ``_core.FileMap`` (see ``file_map_of``): copy-on-write, so making it
    writable later never changes the file.
    """
    name = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        info = read_header(f, name, size)
        if info.data_size == 0:  # mmap cannot map zero bytes
            empty = np.empty(info.rows, dtype=info.dtype)
            empty.flags.writeable = False  # like a mapped table
            return info, empty
        fm = map_file(f.fileno(), info.data_offset + info.data_size, name)
    # FileMap is a buffer (Cython's __getbuffer__), which numpy's stubs do not see.
    arr = np.frombuffer(
        fm,
        dtype=info.dtype,
        count=info.rows,  # type: ignore[call-overload]
        offset=info.data_offset,
    )
    return info, arr


def map_file(fd: int, size: int, name: str) -> _core.FileMap:
    """A private read-only map of the first size bytes of an open file (fd may be closed after)."""
    try:
        return _core.FileMap(fd, size)
    except EOFError:  # the file shrank after its header was read
        raise CsFormatError(f"{name}: truncated while opening: expected {size} bytes") from None
    except OSError as e:
        raise OSError(e.errno, f"{name}: cannot map the file: {e.strerror}") from None


def file_map_of(a: np.ndarray) -> _core.FileMap | None:
    """The FileMap an array views (through views of views), or None."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, _core.FileMap) else None


def map_offset(fm: _core.FileMap, a: np.ndarray) -> int:
    """Where in fm's bytes array a (a view of fm) starts."""
    # A FileMap exports the buffer protocol, which _core.pyi cannot declare
    # (collections.abc.Buffer is Python 3.12+).
    whole = np.frombuffer(fm, dtype=np.uint8)  # type: ignore[call-overload]
    return a.__array_interface__["data"][0] - whole.__array_interface__["data"][0]


def advise_scan(a: np.ndarray, kind: Literal["sequential", "willneed"] = "sequential") -> None:
    """Ask the kernel to read ahead the map pages under a's rows, about to be
    read in row order (a copy of a mapped file's rows: 1.5-2x less CPU from a
    cold page cache, docs/performance.md), or with kind "willneed", to read
    them now; nothing for an array that views no map. Only advice: a refusal
    changes nothing but speed, and is ignored."""
    fm = file_map_of(a)
    if fm is None or len(a) == 0 or a.strides[0] <= 0:
        return
    span = (len(a) - 1) * a.strides[0] + a.dtype.itemsize * math.prod(a.shape[1:])
    try:
        fm.advise(kind, map_offset(fm, a), span)
    except (OSError, ValueError):
        pass


def npy_header(dtype: np.dtype, rows: int) -> bytes:
    """The .npy header numpy.save writes for a 1-D array of dtype and rows.

    Same bytes as numpy: sorted dict literal, room to grow the row count, the
    oldest format version that can hold it, padding to 64 bytes.
    """
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,)}
    text = "{" + "".join(f"'{k}': {v!r}, " for k, v in sorted(d.items())) + "}"
    text += " " * (_GROWTH_AXIS_MAX_DIGITS - len(repr(rows)))
    for version, fmt, encoding in (
        ((1, 0), "<H", "latin1"),
        ((2, 0), "<I", "latin1"),
        ((3, 0), "<I", "utf8"),
    ):
        try:
            body = text.encode(encoding)
        except UnicodeEncodeError:
            continue
        hlen = len(body) + 1
        pad = _ARRAY_ALIGN - ((len(MAGIC) + 2 + struct.calcsize(fmt) + hlen) % _ARRAY_ALIGN)
        if hlen + pad < 2 ** (8 * struct.calcsize(fmt)):
            return MAGIC + bytes(version) + struct.pack(fmt, hlen + pad) + body + b" " * pad + b"\n"
    raise CsFormatError(f"header of {len(text)} characters is too large for any .npy version")


# A temporary file of atomic_write is "." + the first _TEMP_STEM characters of
# the target's name + "." + a hash of the whole name + "." + 8 random
# characters + ".tmp": short enough that a target name of 255 bytes still has a
# legal temporary name, and recognizable as the temporary of that one target.
_TEMP_STEM = 24
# A temporary file older than this (by mtime) that no live writer holds locked
# is what a killed writer left behind; the next writer of its target removes it.
# Live writers hold an flock on their temporary file; the age is a second guard
# for filesystems where locks do not reach other hosts (every write and the
# final fsync of a live writer keep its mtime within minutes).
STALE_TEMP_SECONDS = 3600


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = True
) -> None:
    """Write a file atomically: a temporary file in the same folder, fsync, rename.

    ``write(f)`` gets a binary file whose ``write`` writes every byte it is
    given or raises (a plain unbuffered file may write part of a buffer, and
    one ``write`` call moves at most 2 GiB on Linux). On any failure the
    temporary file is removed and an existing file at path is left
    untouched. The new file takes the old file's permissions, or the usual
    ones for a new file.

    A symbolic link at path is followed: its target is replaced and the link
    stays. The temporary file, ``.<start of the name>.<hash>.<random>.tmp``,
    is locked while it is written; temporaries of the same target that a
    killed writer left (older than ``STALE_TEMP_SECONDS`` and not locked)
    are removed first.
    """
    path = Path(os.path.realpath(path))
    folder = path.parent
    prefix = hidden_name(path.name)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with _CompleteFile(fd, "wb") as f:
            _try_lock(fd)  # released by close: a dead writer's temporary is unlocked
            write(f)
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        old = _hold(path)
        os.replace(tmp, path)
        _release_later(old)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_dir(folder)


def _hold(path: Path) -> int | None:
    """A descriptor of the regular file at path, held across its replacement.

    Replacing a file drops its last name; the kernel then frees its page
    cache at once, in the renaming thread (0.4 to 0.7 s for a 384 MB file
    just written). Holding a descriptor moves that work to the last close,
    which ``_release_later`` does in a background thread.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # no old file (or not one to hold): nothing to free
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _release_later(fd: int | None) -> None:
    if fd is not None:
        threading.Thread(target=os.close, args=(fd,), name="csfast-release").start()


class _CompleteFile(io.FileIO):
    """A raw file whose write writes everything or raises."""

    def write(self, data) -> int:
        return write_all(super().write, data)


def write_all(write: Callable[[memoryview], int | None], data) -> int:
    """Call write until every byte of data (any contiguous buffer) is written.

    write is a raw ``write`` that may write part of what it is given;
    returns the byte count. A write that moves nothing raises OSError
    rather than loop forever.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = len(view)
    while view:
        written = write(view)
        if not written:  # None: would block; 0: the device takes no more
            raise OSError(errno.EIO, f"write wrote nothing ({len(view)} bytes left)")
        view = view[written:]
    return total


def hidden_name(path: str | os.PathLike) -> str:
    """``.<first 24 characters of the name>.<hash of the whole name>.``: the
    start of a hidden file's name that belongs to path (its temporary files,
    a group's lock), short whatever the length of path's name."""
    name = os.path.basename(os.fspath(path))
    digest = hashlib.blake2b(os.fsencode(name), digest_size=4).hexdigest()
    return f".{name[:_TEMP_STEM]}.{digest}."


def _try_lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a filesystem without locks: the age alone guards the temporary
        pass


def temp_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files atomic_write made (or a killed writer left) for path.

    Also those of csfast 0.1.0, named ``.<whole name>.<random>.tmp``.
    """
    path = Path(path)
    ours = re.compile(re.escape(hidden_name(path.name)) + r"[A-Za-z0-9_]{8}\.tmp")
    old = re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]{8}\.tmp")
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.endswith(".tmp")]
    except OSError:
        return []
    return [path.parent / n for n in names if ours.fullmatch(n) or old.fullmatch(n)]


def remove_stale_temps(path: str | os.PathLike, age: float = STALE_TEMP_SECONDS) -> int:
    """Remove temporaries of path left by killed writers; returns how many.

    A temporary is stale when its mtime is more than ``age`` seconds old and
    no process holds its lock. Errors (a file gone meanwhile, a folder not
    writable) are ignored: cleaning is a courtesy, never a reason to fail.
    """
    removed = 0
    now = time.time()
    for tmp in temp_files(path):
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime <= age:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer
            except OSError:
                pass  # no locks here: the age decides
            os.unlink(tmp)
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _mode_for(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some filesystems cannot open a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_rows(
    f: BinaryIO, rows: int, row_size: int, fill: Callable[[int, np.ndarray], None]
) -> None:
    """Write rows produced chunk by chunk: fill(start, buf) packs rows start.. into buf.

    Memory stays at one chunk of about 8 MB whatever the row count. (Filling
    one buffer while a thread writes the other measured within noise of this.)
    """
    buf = np.empty((0, row_size), np.uint8)
    for start, stop in iter_chunks(rows, row_size):
        if buf.shape[0] < stop - start:
            buf = np.empty((stop - start, row_size), np.uint8)
        fill(start, buf[: stop - start])
        write_all(f.write, buf[: stop - start])


def iter_chunks(rows: int, row_size: int, target_bytes: int = 8 << 20) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of about target_bytes each, for streaming writes."""
    step = max(1, target_bytes // max(row_size, 1))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)
