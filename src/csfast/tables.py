"""Table files of either kind, numpy .cs or CSDAT, told apart in one place.

``inspect`` reads the header of either kind (a ``CsInfo`` whose ``kind`` says
which); ``open_columns`` opens the columns of either kind, from a path
(mapped) or from bytes or an open binary file. Every reader of table files
(``Dataset.load``, input checks, the command line, the chores of
``csfast.tasks``) decides the kind here, by the file's magic, never by its
name. This module sits above ``format`` and ``csdat`` and below the Dataset:
it hands out columns, not datasets.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from . import _core, csdat
from .errors import CsFieldError, CsFormatError
from .format import (
    CSDAT_MAGIC,
    MAGIC,
    CsInfo,
    check_uid_field,
    file_map_of,
    map_array,
    open_regular,
    read_header,
)

__all__ = ["inspect", "open_columns", "OpenColumns", "Source"]

#: What ``open_columns`` reads: a path, bytes, or an open binary file.
Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
#: The fields to keep: names, or a function of the header that returns them.
FieldChoice = Collection[str] | Callable[[CsInfo], Collection[str]] | None


def inspect(path: str | os.PathLike) -> CsInfo:
    """Header facts of a table file, a numpy .cs file or a CSDAT stream (told by its
    magic): rows, fields, ``kind``, and what the kind adds (see ``CsInfo``).

    Reads only the header; raises CsFormatError for anything that is neither
    kind, FileNotFoundError / PermissionError as they are.
    """
    with open_regular(path) as f:
        read = csdat.read_info if _is_csdat(f) else read_header
        return read(f, os.fspath(path), os.fstat(f.fileno()).st_size)


def _is_csdat(f: BinaryIO) -> bool:
    """True if f starts with the CSDAT magic; f is left at its start."""
    is_csdat = f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC
    f.seek(0)
    return is_csdat


@dataclass(frozen=True)
class OpenColumns:
    """The columns ``open_columns`` opened, with the header they came from.

    Columns of a numpy .cs file are read-only views (of the file's private
    map, or of immutable bytes); a CSDAT stream's are read-only views of its
    map where it stores them plainly and mmap was asked, new writable arrays
    otherwise.
    """

    info: CsInfo
    columns: dict[str, np.ndarray]

    @property
    def maps(self) -> list[_core.FileMap]:
        """The distinct file maps the columns view (none for bytes or streams)."""
        found = {id(m): m for m in map(file_map_of, self.columns.values()) if m is not None}
        return list(found.values())


def open_columns(
    source: Source,
    fields: FieldChoice = None,
    *,
    mmap: bool = True,
) -> OpenColumns:
    """Open the columns of a numpy .cs file or CSDAT stream, told by its magic.

    ``fields`` keeps only those fields (in file order), or is a function of
    the header that returns them (the header is read once). From a path,
    columns are mapped; with ``mmap=False`` a CSDAT stream is read into
    memory instead (a .cs file's columns stay views of its map: the caller
    copies what it wants to own). Bytes and open binary files are read
    whole and viewed without another copy. Nothing is ever unpickled. A
    uid field that cannot hold uids is refused (``format.check_uid_field``).
    """
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        return _open_buffer(source, fields)  # type: ignore[arg-type]
    path = source
    assert isinstance(path, (str, os.PathLike))
    with open_regular(path) as f:
        is_csdat = _is_csdat(f)
    if is_csdat:
        info = inspect(path)
        names = _chosen(info, fields)
        _, cols = csdat.read(path, names, mmap=mmap)
        return OpenColumns(info, {k: cols[k] for k in names})
    info, arr = map_array(path)
    return OpenColumns(info, {k: arr[k] for k in _chosen(info, fields)})


def _open_buffer(
    source: BinaryIO | bytes | bytearray | memoryview, fields: FieldChoice
) -> OpenColumns:
    """Columns from bytes or an open binary file (read to its end)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        # bytearray / memoryview are copied once: the columns never alias a
        # caller's mutable buffer; bytes(bytes) is the same object.
        name, data = "<bytes>", bytes(source)
    else:
        name, data = str(getattr(source, "name", "<stream>")), source.read()
    reader = io.BytesIO(data)
    if data[: len(CSDAT_MAGIC)] == CSDAT_MAGIC:
        info = csdat.read_info(reader, name, len(data))
        names = _chosen(info, fields)
        _, cols = csdat.read(data, names)
        return OpenColumns(info, {k: cols[k] for k in names})
    if data[: len(MAGIC)] != MAGIC:
        raise CsFormatError(
            f"{name}: neither a .cs file nor a CSDAT stream (starts with {data[:6]!r})"
        )
    info = read_header(reader, name, len(data))
    # Read-only views of immutable bytes: an edit copies the column first.
    arr = np.frombuffer(data, dtype=info.dtype, count=info.rows, offset=info.data_offset)
    return OpenColumns(info, {k: arr[k] for k in _chosen(info, fields)})


def _chosen(info: CsInfo, fields: FieldChoice) -> list[str]:
    """The fields to open, in file order; first, the table's uid field must hold uids."""
    check_uid_field(info)
    if fields is None:
        return list(info.dtype.names or ())
    wanted = set(fields(info) if callable(fields) else fields)
    missing = sorted(wanted - set(info.dtype.names or ()))
    if missing:
        raise CsFieldError(f"{info.path}: no fields {missing}")
    return [k for k in info.dtype.names or () if k in wanted]
