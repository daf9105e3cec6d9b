"""Files of every format csfast converts between, chosen by extension.

===============================  =============================================
``.cs``                          numpy .cs (read: also CSDAT, told by magic)
``.csdat``, ``.csl``             CSDAT stream (cryosparc-tools), LZ4 columns
``.parquet``, ``.pq``            Parquet (through Arrow; schema record kept)
``.arrow``, ``.feather``,        Arrow IPC file, uncompressed so that reading
``.ipc``                         maps it without copying numeric columns
``.star``                        RELION 3.1+ STAR (``csfast.convert.star``)
===============================  =============================================

Every write is atomic: a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CsArgumentError, CsFormatError
from ..format import atomic_write, check_regular

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = [
    "FORMATS",
    "format_of",
    "read",
    "write",
    "convert",
    "write_parquet",
    "read_parquet",
    "write_arrow",
    "read_arrow",
    "write_csdat",
]

FORMATS = {
    ".cs": "cs",
    ".csdat": "csdat",
    ".csl": "csdat",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".star": "star",
}

Format = Literal["cs", "csdat", "parquet", "arrow", "star"]


def format_of(path: str | os.PathLike) -> str:
    """The format a path's extension names; CsError for an unknown one."""
    ext = Path(path).suffix.lower()
    try:
        return FORMATS[ext]
    except KeyError:
        raise CsArgumentError(
            f"{os.fspath(path)}: unknown extension {ext!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None


def write_parquet(ds: Dataset, path: str | os.PathLike, **options: Any) -> None:
    """Write a Parquet file, a row group at a time (``options`` go to
    ``pyarrow.parquet.ParquetWriter``; ``row_group_bytes``, default 64 MiB,
    sizes the groups).

    Each group's rows are gathered when it is written (from the mapped
    sources of a lazy dataset), so memory holds one group, whatever the
    table's size.
    """
    import pyarrow.parquet as pq

    from .arrow import arrow_batches

    batches = arrow_batches(ds, options.pop("row_group_bytes", 64 << 20))
    first = next(batches)

    def body(f: Any) -> None:
        with pq.ParquetWriter(f, first.schema, **options) as writer:
            writer.write_table(first, row_group_size=max(len(first), 1))
            for table in batches:
                writer.write_table(table, row_group_size=max(len(table), 1))

    atomic_write(path, body)


@contextlib.contextmanager
def _arrow_errors(path: str | os.PathLike) -> Iterator[None]:
    """pyarrow's complaints about a file's content become CsFormatError naming
    it; errors of the system (with an errno) stay OSError."""
    import pyarrow as pa

    try:
        yield
    except pa.ArrowException as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise CsFormatError(f"{os.fspath(path)}: {str(e).splitlines()[0][:200]}") from None


def read_parquet(path: str | os.PathLike, fields: list[str] | None = None) -> Dataset:
    """Read a Parquet file (only ``fields`` and uid, if given)."""
    import pyarrow.parquet as pq

    from .arrow import from_arrow

    columns = None if fields is None else ["uid", *[f for f in fields if f != "uid"]]
    check_regular(path)
    with _arrow_errors(path):
        table = pq.read_table(path, columns=columns, memory_map=True)
    return from_arrow(table, source=os.fspath(path))


def write_arrow(ds: Dataset, path: str | os.PathLike) -> None:
    """Write an Arrow IPC file (uncompressed, so it can be mapped), a record
    batch of about 64 MiB at a time (see ``write_parquet``)."""
    import pyarrow as pa

    from .arrow import arrow_batches

    batches = arrow_batches(ds)
    first = next(batches)

    def body(f: Any) -> None:
        with pa.ipc.new_file(f, first.schema) as writer:
            writer.write_table(first)
            for table in batches:
                writer.write_table(table)

    atomic_write(path, body)


def read_arrow(path: str | os.PathLike) -> Dataset:
    """Read an Arrow IPC file by mapping it: numeric columns are views of the map."""
    import pyarrow as pa

    from .arrow import from_arrow

    check_regular(path)
    with _arrow_errors(path):
        table = pa.ipc.open_file(pa.memory_map(os.fspath(path), "r")).read_all()
    return from_arrow(table, source=os.fspath(path))


def write_csdat(
    ds: Dataset, path: str | os.PathLike, compression: Literal["lz4"] | None = "lz4"
) -> None:
    """Write a CSDAT file (cryosparc-tools' ``save(format=CSDAT_FORMAT)`` layout)."""
    from .. import csdat

    csdat.write(path, ds.cols(), len(ds), compression)


def read(path: str | os.PathLike, format: Format | None = None, **options: Any) -> Dataset:
    """Read a dataset from any supported file (format from the extension if not given)."""
    from ..dataset import Dataset

    fmt = format or format_of(path)
    if fmt in ("cs", "csdat"):
        return Dataset.load(path, **options)
    if fmt == "parquet":
        return read_parquet(path, **options)
    if fmt == "arrow":
        return read_arrow(path)
    if fmt == "star":
        from .star import from_star

        return from_star(path, **options)
    raise CsArgumentError(f"unknown format {fmt!r}")


def write(
    ds: Dataset, path: str | os.PathLike, format: Format | None = None, **options: Any
) -> list[str]:
    """Write a dataset in any supported format; returns the fields not written
    (only STAR leaves some out)."""
    fmt = format or format_of(path)
    if fmt == "cs":
        ds.save(path)
    elif fmt == "csdat":
        write_csdat(ds, path, **options)
    elif fmt == "parquet":
        write_parquet(ds, path, **options)
    elif fmt == "arrow":
        write_arrow(ds, path)
    elif fmt == "star":
        from .star import to_star

        return to_star(ds, path, **options)
    else:
        raise CsArgumentError(f"unknown format {fmt!r}")
    return []


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    src_format: Format | None = None,
    dst_format: Format | None = None,
    read_options: dict[str, Any] | None = None,
    write_options: dict[str, Any] | None = None,
) -> list[str]:
    """Convert a file to another format; returns the fields not written."""
    ds = read(src, src_format, **(read_options or {}))
    return write(ds, dst, dst_format, **(write_options or {}))
