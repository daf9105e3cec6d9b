"""Write .npy / .cs files by hand, including the odd ones numpy no longer writes.

Every helper builds the bytes itself (magic, version, header length, dict
literal, padding) so that tests do not depend on the code under test.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np

MAGIC = b"\x93NUMPY"


def header_text(
    descr: object, rows: int, fortran_order: bool = False, shape: tuple[int, ...] | None = None
) -> str:
    shape = (rows,) if shape is None else shape
    return repr({"descr": descr, "fortran_order": fortran_order, "shape": shape})


def npy_bytes(
    descr: object | str,
    data: bytes = b"",
    rows: int = 0,
    *,
    version: tuple[int, int] = (1, 0),
    align: int = 64,
    pad_to: int | None = None,
    text: str | None = None,
    fortran_order: bool = False,
    shape: tuple[int, ...] | None = None,
) -> bytes:
    """A complete .npy file: header written by hand, then data.

    descr is a numpy descr (list of tuples) or a dtype; text replaces the whole
    dict literal; align pads the data offset to that many bytes; pad_to pads
    the header so that the data starts exactly there.
    """
    if isinstance(descr, np.dtype):
        descr = np.lib.format.dtype_to_descr(descr)
    body = text if text is not None else header_text(descr, rows, fortran_order, shape)
    raw = body.encode("utf-8" if version == (3, 0) else "latin1")
    prefix = 10 if version == (1, 0) else 12
    used = prefix + len(raw) + 1  # the header ends with "\n"
    if pad_to is not None:
        pad = pad_to - used
        assert pad >= 0, "header longer than pad_to"
    else:
        pad = -used % align
    raw = raw + b" " * pad + b"\n"
    fmt = "<H" if version == (1, 0) else "<I"
    return MAGIC + bytes(version) + struct.pack(fmt, len(raw)) + raw + data


def write_npy(path: Path, descr: object, data: bytes = b"", rows: int = 0, **kw) -> Path:
    Path(path).write_bytes(npy_bytes(descr, data, rows, **kw))
    return Path(path)


def write_array(path: Path, arr: np.ndarray, **kw) -> Path:
    """arr written with a hand-made header (version, align...) and its raw bytes."""
    return write_npy(path, arr.dtype, arr.tobytes(), len(arr), **kw)


def numpy_save_bytes(arr: np.ndarray) -> bytes:
    """What numpy.save writes through a file handle (warnings about the
    format version it had to choose are expected for big headers)."""
    fh = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.save(fh, arr)
    return fh.getvalue()


def numpy_save(path: Path, arr: np.ndarray) -> Path:
    Path(path).write_bytes(numpy_save_bytes(arr))
    return Path(path)


def numpy_load(path: Path, **kw) -> np.ndarray:
    """numpy's own reading of a file, without numpy's header size limit."""
    return np.load(path, allow_pickle=False, max_header_size=1 << 30, **kw)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and raw bytes (NaNs of the same bits compare equal)."""
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )
