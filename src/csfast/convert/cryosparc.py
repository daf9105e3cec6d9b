"""To and from an in-memory cryosparc-tools ``Dataset``.

Both directions go through the CSDAT stream format, which both libraries
read and write in compiled code: cryosparc-tools keeps strings as Python
``str`` objects, csfast as fixed-width UTF-8 bytes, and the stream's string
heap is the cheapest exact bridge between the two. Fields, dtypes, sub-array
shapes and values are kept; string columns come back as ``S<longest + 1>``.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from .. import csdat

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["to_cryosparc", "from_cryosparc"]


def to_cryosparc(ds: Dataset) -> Any:
    """A ``cryosparc.dataset.Dataset`` with the same fields and values.

    String columns become cryosparc-tools' ``str`` object columns (decoded
    from UTF-8). One uncompressed CSDAT stream of the table is built in
    memory and loaded by cryosparc-tools.
    """
    from cryosparc.dataset import Dataset as CsDataset

    buf = io.BytesIO()
    csdat.write(buf, ds.cols(), len(ds), compression=None)
    buf.seek(0)
    return CsDataset.load(buf)


def from_cryosparc(d: Any, cls: type[Dataset] | None = None) -> Dataset:
    """A csfast Dataset from a ``cryosparc.dataset.Dataset`` (a copy).

    Python ``str`` columns become ``S<longest + 1>`` UTF-8 columns; every
    other column keeps its dtype and shape.
    """
    if cls is None:
        from ..dataset import Dataset

        cls = Dataset
    data = b"".join(bytes(chunk) for chunk in d.stream(compression=None))
    n, cols = csdat.read(data, mmap=False)
    return cls.from_columns(cols, n)
