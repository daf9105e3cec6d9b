"""RELION STAR files (3.1+ layout: a ``data_optics`` and a ``data_particles`` table).

Files are read and written with the ``starfile`` library (``csfast[star]``).

The mapping, cryoSPARC field -> RELION label (``to_star``; ``from_star`` is
its inverse):

========================================  ==========================================
``blob/idx``, ``blob/path``               ``rlnImageName`` = ``f"{idx + 1:06d}@{path}"``
                                          (RELION counts images from 1; a leading
                                          ``>`` of the path is stripped)
``blob/psize_A``                          ``rlnImagePixelSize`` (optics), Angstrom
``blob/shape``                            ``rlnImageSize`` (optics) = ``shape[0]``, pixels
``ctf/accel_kv``                          ``rlnVoltage`` (optics), kV
``ctf/cs_mm``                             ``rlnSphericalAberration`` (optics), mm
``ctf/amp_contrast``                      ``rlnAmplitudeContrast`` (optics), fraction
``ctf/exp_group_id``                      ``rlnOpticsGroup``: groups numbered 1..k in
                                          order of exp_group_id, named
                                          ``exp_group_<id>`` (``rlnOpticsGroupName``)
                                          so the id itself comes back
``ctf/df1_A``, ``ctf/df2_A``              ``rlnDefocusU``, ``rlnDefocusV``, Angstrom
``ctf/df_angle_rad``                      ``rlnDefocusAngle`` = degrees(radians)
``ctf/phase_shift_rad``                   ``rlnPhaseShift`` = degrees(radians)
``ctf/bfactor``                           ``rlnCtfBfactor``, A^2
``ctf/scale``                             ``rlnCtfScalefactor``
``ctf/tilt_A``, ``ctf/cs_mm``             ``rlnBeamTiltX``, ``rlnBeamTiltY`` (optics),
                                          mrad = 1e3 * arcsin(tilt_A / (cs_mm * 1e7)):
                                          cryoSPARC holds beam tilt as the Angstrom
                                          of Cs it amounts to (the relation pyem's
                                          csparc2star code states)
``ctf/anisomag``                          ``rlnMagMat00``, ``01``, ``10``, ``11``
                                          (optics) = identity + anisomag, row-major:
                                          cryoSPARC stores the 2 x 2 matrix with the
                                          identity subtracted (assumed to be the
                                          matrix RELION applies; not yet checked
                                          against a RELION refinement)
``location/micrograph_path``              ``rlnMicrographName`` (leading ``>`` stripped)
``location/center_x_frac``,               ``rlnCoordinateX`` = x_frac * micrograph_shape[1];
``location/center_y_frac``,               ``rlnCoordinateY`` = (1 - y_frac) *
``location/micrograph_shape``             micrograph_shape[0] (y flipped; with
                                          ``flip_y=False``: y_frac * shape[0]); pixels
``alignments3D/pose``                     ``rlnAngleRot``, ``rlnAngleTilt``,
                                          ``rlnAnglePsi``: ZYZ Euler angles in degrees
                                          of the transposed Rodrigues matrix (see
                                          ``csfast.convert.poses``)
``alignments3D/shift``,                   ``rlnOriginXAngst``, ``rlnOriginYAngst`` =
``alignments3D/psize_A``                  shift (pixels) * psize_A (Angstrom / pixel)
``alignments3D/class``                    ``rlnClassNumber`` = class + 1
``alignments3D/split``                    ``rlnRandomSubset`` = split + 1
``alignments2D/pose``                     ``rlnAnglePsi`` = degrees(in-plane angle, radians)
``alignments2D/shift``, ``class``,        as for alignments3D (used when the table has
``split``, ``psize_A``                    no alignments3D)
``star/<label>``                          ``<label>`` as it is (what ``from_star`` kept)
========================================  ==========================================

Every other field has no RELION label: ``to_star`` returns their names (it
never drops a field silently). Among them ``ctf/trefoil_A``, ``ctf/tetra_A``
and ``ctf/shift_A``: RELION holds such aberrations as Zernike coefficients
(``rlnOddZernike``, ``rlnEvenZernike``), but no source states how cryoSPARC's
values in Angstrom map to them (pyem leaves them out too), so csfast does not
guess. Optics values are per optics group: when a
field varies within one group, the group's first value is written and a
``StarWarning`` says so. ``from_star`` keeps every label it cannot map as a
field ``star/<label>``, so nothing read is dropped either.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..csdat import StringBudget
from ..errors import CsArgumentError, CsError, CsFieldError, CsFormatError
from ..format import atomic_write, open_regular
from ..strings import decoded_objects, decoded_values, fixed_width
from .poses import euler_to_rotvec, rotvec_to_euler

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["to_star", "from_star", "StarWarning"]

_STAR_PREFIX = "star/"
_GROUP_NAME = re.compile(r"^exp_group_(\d+)$")
_F4 = np.float32
_U4 = np.uint32
_U4_MAX = 2**32 - 1


# Stands in for '"' in values STAR quotes (those with spaces, or empty) while
# Arrow writes the CSV body: a control character no path holds.
_QUOTE = "\x1f"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]+")
_MAG_MAT = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")


def _beam_tilt_mrad(tilt_A: np.ndarray, cs_mm: np.ndarray) -> np.ndarray:
    """Beam tilt in mrad (RELION) from cryoSPARC's ``ctf/tilt_A`` (Angstrom):
    ``1e3 * arcsin(tilt_A / Cs)`` with Cs in Angstrom, ``cs_mm * 1e7``. NaN
    where no angle gives that tilt (a Cs of 0 with a nonzero tilt)."""
    tilt = tilt_A.astype(np.float64)
    cs_A = cs_mm.astype(np.float64)[:, None] * 1e7
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tilt == 0, 0.0, 1e3 * np.arcsin(tilt / cs_A))


class StarWarning(UserWarning):
    """A value that a STAR file cannot hold exactly (e.g. optics that vary within a group)."""


def _image_names(idx: np.ndarray, path: np.ndarray, suffix: str | None = None) -> Any:
    """``NNNNNN@path`` per row, 1-based index zero-padded to six digits; with
    suffix, each path's extension replaced by it (``.mrc`` -> ``.mrcs``).

    An Arrow string array when pyarrow is there (built in C), else an object array.
    """
    paths, codes = decoded_values(path, "blob/path")
    paths = [v[1:] if v.startswith(">") else v for v in paths]
    if suffix is not None:
        paths = [os.path.splitext(v)[0] + suffix for v in paths]
    number = idx.astype(np.int64) + 1
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        import pandas as pd

        objs = np.empty(len(paths), dtype=object)
        objs[:] = paths
        names = pd.Series(number).astype(str).str.zfill(6) + "@" + pd.Series(objs[codes])
        return names.to_numpy(dtype=object)
    digits = pc.utf8_lpad(pc.cast(pa.array(number), pa.string()), 6, "0")
    where = pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(paths, type=pa.string())
    ).cast(pa.string())
    return pc.binary_join_element_wise(digits, where, "@")


def _decimal(
    values: np.ndarray, original: np.ndarray, back: Callable[[np.ndarray], np.ndarray]
) -> Any:
    """Converted values (float64) as decimals that ``from_star`` turns back into
    exactly the original float32 values, as short as that allows.

    Each value is written as its shortest float32 decimal (``439.8537``) where
    reading that back and undoing the conversion (``back``) gives the
    original float32, else as its shortest float64 decimal. An Arrow string
    array; without pyarrow, the float64 values.
    """
    if original.dtype != _F4:
        return values
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return values
    short = pc.cast(pa.array(values.astype(_F4)), pa.string())
    reread = pc.cast(short, pa.float64()).to_numpy(zero_copy_only=False)
    ok = back(reread).astype(_F4) == original
    if ok.all():
        return short
    return pc.if_else(pa.array(ok), short, pc.cast(pa.array(values), pa.string()))


# Rows per chunk of the particles loop by default: about 16 MiB of input
# rows, at most _CHUNK_ROWS. A row's Arrow columns and text take several
# times its input bytes; at 1M rows, chunks of 50k rows peaked 80 MiB above
# the start (155k rows: 180 MiB) and took no more CPU time.
_CHUNK_BYTES = 16 << 20
_CHUNK_ROWS = 50_000

# Per-row fields that RELION holds per optics group: (field, label).
_OPTICS_FIELDS = (
    ("ctf/accel_kv", "rlnVoltage"),
    ("ctf/cs_mm", "rlnSphericalAberration"),
    ("ctf/amp_contrast", "rlnAmplitudeContrast"),
    ("blob/psize_A", "rlnImagePixelSize"),
    ("blob/shape", "rlnImageSize"),
)


def to_star(
    ds: Dataset,
    path: str | os.PathLike,
    *,
    flip_y: bool = True,
    float_format: str = "%.9g",
    image_suffix: str | None = None,
    rows_per_chunk: int | None = None,
) -> list[str]:
    """Write a particle dataset as a RELION 3.1+ STAR file (optics + particles).

    See the module docstring for every label and unit conversion. Particle
    floats are written as the shortest decimal that reads back as the same
    value (float32 fields as float32, converted values in float64), so
    ``from_star`` restores float32 fields exactly; ``float_format`` is used
    for the optics table and, without pyarrow, by starfile's writer.
    ``image_suffix`` (e.g. ``".mrcs"``, the extension RELION expects for
    image stacks) replaces the extension of every stack path in
    ``rlnImageName``; the stacks themselves are not renamed.
    The particles are converted and written ``rows_per_chunk`` rows at a
    time (by default about 16 MiB of input rows), each chunk a slice of the
    dataset (of a lazy dataset, only its rows are gathered); the file does
    not depend on the chunk size.
    The file is written atomically. Returns the fields that were not written
    (no RELION label), in dataset order.
    """
    if image_suffix is not None and not _SUFFIX.fullmatch(image_suffix):
        raise CsArgumentError(
            f"image suffix {image_suffix!r}: expected a dot and letters or digits, such as .mrcs"
        )
    if rows_per_chunk is not None and rows_per_chunk < 1:
        raise CsArgumentError(f"rows_per_chunk {rows_per_chunk}: expected at least 1")
    import pandas as pd
    import starfile

    n = len(ds)
    step = rows_per_chunk or _default_chunk_rows(ds)
    used: set[str] = set()
    group_ids, optics = _optics(ds, step, used)
    optics_df = pd.DataFrame(optics)

    def write(f: Any) -> None:
        writer = starfile.writer.StarWriter({"optics": optics_df}, float_format=float_format)
        f.write(writer.to_string().encode("utf-8"))
        for start in range(0, max(n, 1), step):  # one chunk of 0 rows for an empty table
            part = ds.slice(start, start + step)
            columns = _particle_columns(part, group_ids, used, flip_y, image_suffix)
            if start == 0:
                f.write(_loop_head("particles", columns))
            if len(part):
                _write_rows(f, columns, float_format)
        f.write(b"\n\n")

    atomic_write(path, write)
    return [name for name in ds.fields() if name not in used]


def _default_chunk_rows(ds: Dataset) -> int:
    row_bytes = sum(
        np.dtype(f[1]).itemsize * math.prod(f[2] if len(f) > 2 else ()) for f in ds.descr()
    )
    return max(1, min(_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1)))


def _chunks(ds: Dataset, step: int) -> Iterator[tuple[int, Dataset]]:
    """(first row, slice) of about step rows each, over every row."""
    for start in range(0, len(ds), step):
        yield start, ds.slice(start, start + step)


def _particle_columns(
    ds: Dataset,
    group_ids: np.ndarray | None,
    used: set[str],
    flip_y: bool,
    image_suffix: str | None,
) -> dict[str, Any]:
    """The particles loop's columns (label -> values) of the rows of ds (a chunk),
    with group_ids the table's sorted exp_group_ids; adds the fields read to used."""

    def has(*names: str) -> bool:
        return all(f in ds for f in names)

    def get(name: str) -> np.ndarray:
        used.add(name)
        return ds.view(name)

    particles: dict[str, Any] = {}
    if has("blob/idx", "blob/path"):
        particles["rlnImageName"] = _image_names(get("blob/idx"), get("blob/path"), image_suffix)
    if has("location/micrograph_path"):
        particles["rlnMicrographName"] = decoded_objects(
            get("location/micrograph_path"), "location/micrograph_path", strip_gt=True
        )
    if has("location/center_x_frac", "location/center_y_frac", "location/micrograph_shape"):
        shape = get("location/micrograph_shape").astype(np.float64)
        x_frac, y_frac = get("location/center_x_frac"), get("location/center_y_frac")
        ny, nx = shape[:, 0], shape[:, 1]
        y64 = y_frac.astype(np.float64)
        particles["rlnCoordinateX"] = _decimal(x_frac * nx, x_frac, lambda d: d / nx)
        if flip_y:
            particles["rlnCoordinateY"] = _decimal((1.0 - y64) * ny, y_frac, lambda d: 1.0 - d / ny)
        else:
            particles["rlnCoordinateY"] = _decimal(y64 * ny, y_frac, lambda d: d / ny)
    for field, label, fn in (
        ("ctf/df1_A", "rlnDefocusU", None),
        ("ctf/df2_A", "rlnDefocusV", None),
        ("ctf/df_angle_rad", "rlnDefocusAngle", np.degrees),
        ("ctf/phase_shift_rad", "rlnPhaseShift", np.degrees),
        ("ctf/bfactor", "rlnCtfBfactor", None),
        ("ctf/scale", "rlnCtfScalefactor", None),
    ):
        if has(field):
            v = get(field)
            particles[label] = (
                _decimal(np.degrees(v.astype(np.float64)), v, np.radians) if fn else v
            )

    align = (
        "alignments3D"
        if has("alignments3D/pose")
        else ("alignments2D" if has("alignments2D/pose") else None)
    )
    if align == "alignments3D":
        # float32 like the pose they come from (the pose comes back as the same
        # rotation, not the same vector, whatever the precision).
        euler = rotvec_to_euler(get("alignments3D/pose")).astype(_F4)
        particles["rlnAngleRot"] = euler[:, 0]
        particles["rlnAngleTilt"] = euler[:, 1]
        particles["rlnAnglePsi"] = euler[:, 2]
    elif align == "alignments2D":
        pose2d = get("alignments2D/pose")
        particles["rlnAnglePsi"] = _decimal(
            np.degrees(pose2d.astype(np.float64)), pose2d, np.radians
        )
    if align and has(f"{align}/shift", f"{align}/psize_A"):
        shift = get(f"{align}/shift").astype(np.float64)
        psize = get(f"{align}/psize_A").astype(np.float64)
        shift32 = ds.view(f"{align}/shift")
        for j, label in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
            particles[label] = _decimal(shift[:, j] * psize, shift32[:, j], lambda d: d / psize)
    if align and has(f"{align}/class"):
        particles["rlnClassNumber"] = get(f"{align}/class").astype(np.int64) + 1
    if align and has(f"{align}/split"):
        particles["rlnRandomSubset"] = get(f"{align}/split").astype(np.int64) + 1
    particles["rlnOpticsGroup"] = _group_of_row(ds, group_ids).astype(np.int64) + 1

    for name in ds.fields():
        if name.startswith(_STAR_PREFIX) and ds.view(name).ndim == 1:
            col = get(name)
            is_text = col.dtype.kind in "SU"
            particles[name[len(_STAR_PREFIX) :]] = decoded_objects(col, name) if is_text else col
    return particles


def _group_of_row(ds: Dataset, group_ids: np.ndarray | None) -> np.ndarray:
    """The optics group (0-based) of each row of ds: the position of its
    exp_group_id among the table's sorted group_ids (one group without)."""
    if group_ids is None:
        return np.zeros(len(ds), dtype=np.intp)
    return np.searchsorted(group_ids, ds.view("ctf/exp_group_id"))


class _PerGroup:
    """One optics label over the chunks: the value of each group's first row,
    and the rows that differ from it."""

    def __init__(self, label: str, field: str) -> None:
        self.label, self.field = label, field
        self.first: np.ndarray | None = None  # per group
        self.differ = 0  # rows that differ from their group's first value
        self.group = 0  # the group of the first such row

    def add(
        self, v: np.ndarray, group: np.ndarray, new: np.ndarray, at: np.ndarray, k: int
    ) -> None:
        """Rows v of groups group; new: groups seen first in them, at their rows at."""
        if self.first is None:
            self.first = np.zeros(k, dtype=v.dtype)
        self.first[new] = v[at]
        varies = np.flatnonzero(v != self.first[group])
        if len(varies) and not self.differ:
            self.group = int(group[varies[0]])
        self.differ += len(varies)


def _optics_sources(ds: Dataset) -> list[tuple[str, tuple[str, ...], Callable[[Dataset], list]]]:
    """(field, its labels, the per-row values of each label in a chunk) of
    every optics label ds has fields for."""
    sources: list[tuple[str, tuple[str, ...], Callable[[Dataset], list]]] = []
    for field, label in _OPTICS_FIELDS:
        if field in ds:
            sources.append((field, (label,), _first_elements(field)))
    if "ctf/tilt_A" in ds and "ctf/cs_mm" in ds:

        def tilt(part: Dataset) -> list:
            mrad = _beam_tilt_mrad(part.view("ctf/tilt_A"), part.view("ctf/cs_mm"))
            return [mrad[:, 0], mrad[:, 1]]

        sources.append(("ctf/tilt_A", ("rlnBeamTiltX", "rlnBeamTiltY"), tilt))
    if "ctf/anisomag" in ds:

        def mag(part: Dataset) -> list:
            m = part.view("ctf/anisomag").astype(np.float64) + np.array([1.0, 0.0, 0.0, 1.0])
            return [m[:, j] for j in range(len(_MAG_MAT))]

        sources.append(("ctf/anisomag", _MAG_MAT, mag))
    return sources


def _first_elements(field: str) -> Callable[[Dataset], list]:
    """The per-row values of field in a chunk: its first element where a row holds several."""

    def read(part: Dataset) -> list:
        v = part.view(field)
        return [v[:, 0] if v.ndim > 1 else v]

    return read


def _optics(ds: Dataset, step: int, used: set[str]) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The sorted exp_group_ids (None without that field) and the data_optics
    table (label -> values per group) of ds, read step rows at a time.

    Optics groups are numbered 1..k in order of exp_group_id; each takes the
    values of its first row, with a StarWarning per field that varies within
    a group. Adds the fields read to used.
    """
    n = len(ds)
    group_ids = None
    if "ctf/exp_group_id" in ds:
        used.add("ctf/exp_group_id")
        empty = ds.slice(0, 0).view("ctf/exp_group_id")
        group_ids = np.unique(
            np.concatenate(
                [empty]
                + [np.unique(part.view("ctf/exp_group_id")) for _, part in _chunks(ds, step)]
            )
        )
        names = [f"exp_group_{int(i)}" for i in group_ids]
    else:
        names = ["opticsGroup1"]
    k = len(names)
    sources = _optics_sources(ds) if n else []
    stats = [_PerGroup(label, field) for field, labels, _ in sources for label in labels]
    first_row = np.full(k, n, dtype=np.intp)
    for start, part in _chunks(ds, step):
        group = _group_of_row(part, group_ids)
        present, at = np.unique(group, return_index=True)
        fresh = first_row[present] == n
        new, at = present[fresh], at[fresh]
        first_row[new] = start + at
        values = [v for _, _, fn in sources for v in fn(part)]
        for s, v in zip(stats, values, strict=True):
            s.add(v, group, new, at, k)
    used.update(field for field, _, _ in sources)

    per_group: dict[str, np.ndarray] = {}
    for s in stats:
        assert s.first is not None  # set by the first chunk (stats exist only for rows)
        per_group[s.label] = s.first
    if "rlnBeamTiltX" in per_group:
        undefined = np.flatnonzero(
            np.isnan(per_group["rlnBeamTiltX"]) | np.isnan(per_group["rlnBeamTiltY"])
        )
        if len(undefined):
            i = int(first_row[undefined[0]])
            row = ds.slice(i, i + 1)
            raise CsFieldError(
                f"ctf/tilt_A {row.view('ctf/tilt_A')[0].tolist()} with ctf/cs_mm "
                f"{row.view('ctf/cs_mm')[0]} (row {i}, optics group "
                f"{names[undefined[0]]}) is no beam tilt: |tilt_A| must be "
                "at most Cs in Angstrom"
            )
    optics: dict[str, Any] = {
        "rlnOpticsGroupName": names,
        "rlnOpticsGroup": np.arange(1, k + 1, dtype=np.int64),
    }
    warned: set[str] = set()  # one warning per field (tilt_A gives two labels)
    for s in stats:
        if s.differ and s.field not in warned:
            warned.add(s.field)
            warnings.warn(
                f"{s.field} varies within optics group {s.group + 1} ({names[s.group]}); "
                f"RELION holds one value per group, the group's first is written "
                f"({s.differ} rows differ)",
                StarWarning,
                stacklevel=4,
            )
        first = per_group[s.label]
        if s.label == "rlnImageSize":
            optics[s.label] = first.astype(np.int64)
        elif first.dtype == _F4:
            # the shortest decimal that reads back as the same float32: 2.7, not 2.70000005
            optics[s.label] = [float(str(x)) for x in first]
        else:  # converted in float64: every digit, so from_star recovers the float32 field
            optics[s.label] = [repr(float(x)) for x in first]
    if "rlnImageSize" in optics:
        optics["rlnImageDimensionality"] = np.full(k, 2, dtype=np.int64)
    if n == 0:
        optics = {key: [] for key in optics}
    return group_ids, optics


def _loop_head(block: str, columns: dict[str, Any]) -> bytes:
    """A loop block's header, laid out as ``starfile`` lays it out."""
    head = [f"data_{block}", "", "loop_"] + [f"_{c} #{i}" for i, c in enumerate(columns, 1)]
    return ("\n".join(head) + "\n").encode("utf-8")


def _write_rows(f: Any, columns: dict[str, Any], float_format: str) -> None:
    """The rows of a loop block (at least one), laid out as ``starfile`` lays
    them out (its own writer without pyarrow), each row whatever the others.

    starfile formats every cell in Python (about 50 s for a million
    particles); Arrow's CSV writer formats columns in C, each value as the
    shortest decimal that reads back as the same number (float32 fields as
    float32; values converted in float64, such as degrees, as float64).
    Strings are quoted as starfile quotes them: when empty or holding a space.
    """
    import starfile

    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        import pandas as pd

        df = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
        text = starfile.writer.StarWriter({"rows": df}, float_format=float_format).to_string()
        # Without starfile's banner (3 lines), the block header (3 + a line a
        # label) and the two blank lines that end the block.
        f.write(text.split("\n", 6 + len(columns))[-1][:-2].encode("utf-8"))
        return
    arrays = []
    quoted = False
    for v in columns.values():
        if isinstance(v, (pa.Array, pa.ChunkedArray)):
            arrays.append(_quote_arrow(v))
            quoted = quoted or arrays[-1] is not v
        elif v.dtype.kind == "f":
            arrays.append(pa.array(v))
        elif v.dtype.kind in "iu":
            arrays.append(pa.array(v))
        else:
            codes, uniq = _factorize_objects(v)
            text = [f"{_QUOTE}{x}{_QUOTE}" if (" " in x or not x) else x for x in uniq]
            quoted = quoted or text != uniq
            arrays.append(
                pa.DictionaryArray.from_arrays(
                    pa.array(codes), pa.array(text, type=pa.string())
                ).cast(pa.string())
            )
    table = pa.Table.from_arrays(arrays, names=list(columns))
    options = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    if not quoted:
        pcsv.write_csv(table, f, options)
    else:  # Arrow refuses '"' in unquoted CSV: write a stand-in, then the quote
        body = io.BytesIO()
        pcsv.write_csv(table, body, options)
        f.write(body.getvalue().replace(_QUOTE.encode(), b'"'))


def _quote_arrow(v: Any) -> Any:
    import pyarrow.compute as pc

    needs = pc.or_(pc.match_substring(v, " "), pc.equal(pc.utf8_length(v), 0))
    if not pc.any(needs).as_py():
        return v
    return pc.if_else(needs, pc.binary_join_element_wise(_QUOTE, v, _QUOTE, ""), v)


def _factorize_objects(v: np.ndarray) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    codes, uniq = pd.factorize(v)
    return codes.astype(np.int32), [str(x) for x in uniq]


def _column(df: Any, label: str) -> np.ndarray | None:
    return df[label].to_numpy() if label in df.columns else None


def from_star(
    path: str | os.PathLike, *, micrograph_shape: tuple[int, int] | None = None, flip_y: bool = True
) -> Dataset:
    """Read a RELION STAR file (3.1+ optics + particles, or a single 3.0 table).

    The inverse of ``to_star`` (see the module docstring for units):
    ``rlnDefocusAngle`` / ``rlnPhaseShift`` degrees -> radians; origins in
    Angstrom / ``rlnImagePixelSize`` -> pixels (RELION 3.0 ``rlnOriginX``
    is pixels already); Euler angles -> axis-angle pose (radians); class,
    subset and image index 1-based -> 0-based. Coordinates need the
    micrograph size, which STAR files do not hold: give
    ``micrograph_shape=(ny, nx)`` in pixels to get ``location/center_*_frac``;
    without it they are kept as ``star/rlnCoordinateX`` / ``Y``. Every label
    without a mapping is kept as a field ``star/<label>``. uids are new.
    A value that does not convert (text in a numeric column, an index,
    class or group that is not a whole number in range) raises
    CsFormatError naming the file, and the label and row where it can.
    """
    try:
        return _from_star(path, micrograph_shape, flip_y)
    except (CsError, OSError):
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise CsFormatError(f"{os.fspath(path)}: {e}") from None


def _whole(
    values: Any,
    label: str,
    name: str,
    low: int = 0,
    high: int = _U4_MAX,
) -> np.ndarray:
    """values as int64, each a whole number in [low, high] (they are stored as
    uint32: a larger value would wrap, a fraction be cut); else CsFormatError
    naming the label and the first bad row (1-based)."""
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        a = np.asarray(a, dtype=np.float64)  # ValueError for text: the caller names the file
    with np.errstate(invalid="ignore"):
        bad = ~((a >= low) & (a <= high))
        if a.dtype.kind == "f":
            bad |= a != np.floor(a)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CsFormatError(
            f"{name}: {label} row {row + 1}: {a[row].item()} is not a whole "
            f"number from {low} to {high}"
        )
    return a.astype(np.int64)


def _from_star(
    path: str | os.PathLike, micrograph_shape: tuple[int, int] | None, flip_y: bool
) -> Dataset:
    import starfile

    from ..dataset import Dataset

    name = os.fspath(path)
    budget = StringBudget(os.path.getsize(path), name)
    blocks = read_loops(path)
    if blocks is None:  # anything but plain loop blocks: starfile's general reader
        try:
            blocks = starfile.read(path, always_dict=True)
        except OSError:
            raise
        except Exception as e:  # its parser fails on bad input in many ways
            raise CsFormatError(
                f"{name}: not a STAR file starfile can read ({type(e).__name__}: {str(e)[:100]})"
            ) from None
    optics = blocks.get("optics")
    table = blocks.get("particles")
    if table is None:
        rest = [b for key, b in blocks.items() if key != "optics"]
        if len(rest) != 1:
            raise CsFormatError(f"{name}: no data_particles table (blocks: {list(blocks)})")
        table = rest[0]
    if not hasattr(table, "columns"):
        raise CsFormatError(f"{name}: the particles block is not a table")
    for block, t in (("particles", table), ("optics", optics)):
        if t is not None and hasattr(t, "columns") and not t.columns.is_unique:
            twice = sorted({str(c) for c in t.columns[t.columns.duplicated()]})
            raise CsFormatError(f"{name}: data_{block} names labels {twice} twice")
    n = len(table)
    df = table
    group_ids = None
    if optics is not None and hasattr(optics, "columns") and "rlnOpticsGroup" in df.columns:
        if "rlnOpticsGroup" not in optics.columns:
            raise CsFormatError(f"{name}: data_optics has no rlnOpticsGroup column")
        if not optics["rlnOpticsGroup"].is_unique:
            g = optics["rlnOpticsGroup"][optics["rlnOpticsGroup"].duplicated()].iloc[0]
            raise CsFormatError(f"{name}: data_optics lists optics group {g} twice")
        optics = optics.set_index("rlnOpticsGroup")
        missing = set(df["rlnOpticsGroup"].unique()) - set(optics.index)
        if missing:
            raise CsFormatError(
                f"{name}: particles name optics groups {sorted(missing)} "
                "that data_optics does not have"
            )
        extra = [c for c in optics.columns if c not in df.columns]
        df = df.join(optics[extra], on="rlnOpticsGroup")
        if "rlnOpticsGroupName" in optics.columns:
            ids = {}
            for g, gname in optics["rlnOpticsGroupName"].items():
                m = _GROUP_NAME.match(str(gname))
                ids[g] = int(m.group(1)) if m else g
            group_ids = df["rlnOpticsGroup"].map(ids).to_numpy()
    used: set[str] = set()
    cols: dict[str, np.ndarray] = {}

    def take(label: str) -> np.ndarray | None:
        v = _column(df, label)
        if v is not None:
            used.add(label)
        return v

    def f4(v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float64).astype(_F4)

    image = take("rlnImageName")
    if image is not None and n == 0:
        cols["blob/path"] = np.zeros(0, dtype="S1")
        cols["blob/idx"] = np.zeros(0, dtype=_U4)
    elif image is not None:
        number, stack = _split_image_names(df["rlnImageName"], name, budget)
        number = _whole(number, "rlnImageName index", name, 1, _U4_MAX + 1)
        cols["blob/path"] = stack
        cols["blob/idx"] = (number - 1).astype(_U4)
    psize = take("rlnImagePixelSize")
    if psize is None:
        psize = take("rlnPixelSize")
    if psize is not None:
        cols["blob/psize_A"] = f4(psize)
    size = take("rlnImageSize")
    if size is not None:
        size = _whole(size, "rlnImageSize", name).astype(_U4)
        cols["blob/shape"] = np.repeat(size[:, None], 2, axis=1)
    for label, field, fn in (
        ("rlnVoltage", "ctf/accel_kv", None),
        ("rlnSphericalAberration", "ctf/cs_mm", None),
        ("rlnAmplitudeContrast", "ctf/amp_contrast", None),
        ("rlnDefocusU", "ctf/df1_A", None),
        ("rlnDefocusV", "ctf/df2_A", None),
        ("rlnDefocusAngle", "ctf/df_angle_rad", np.radians),
        ("rlnPhaseShift", "ctf/phase_shift_rad", np.radians),
        ("rlnCtfBfactor", "ctf/bfactor", None),
        ("rlnCtfScalefactor", "ctf/scale", None),
    ):
        v = take(label)
        if v is not None:
            cols[field] = f4(fn(np.asarray(v, dtype=np.float64)) if fn else v)
    if all(c in df.columns for c in ("rlnBeamTiltX", "rlnBeamTiltY", "rlnSphericalAberration")):
        cs_A = np.asarray(df["rlnSphericalAberration"], dtype=np.float64)[:, None] * 1e7
        mrad = np.stack(
            [np.asarray(take(c), dtype=np.float64) for c in ("rlnBeamTiltX", "rlnBeamTiltY")], 1
        )
        cols["ctf/tilt_A"] = (np.sin(mrad * 1e-3) * cs_A).astype(_F4)
    if all(c in df.columns for c in _MAG_MAT):
        mag = np.stack([np.asarray(take(c), dtype=np.float64) for c in _MAG_MAT], 1)
        cols["ctf/anisomag"] = (mag - np.array([1.0, 0.0, 0.0, 1.0])).astype(_F4)
    group = take("rlnOpticsGroup")
    if group is not None:
        label = "rlnOpticsGroup" if group_ids is None else "exp_group_<id> in rlnOpticsGroupName"
        cols["ctf/exp_group_id"] = _whole(
            group if group_ids is None else group_ids, label, name
        ).astype(_U4)
    for label in ("rlnOpticsGroupName", "rlnImageDimensionality"):
        take(label)
    mic = take("rlnMicrographName")
    if mic is not None:
        cols["location/micrograph_path"] = _fixed(mic, "location/micrograph_path", budget)
    if (
        micrograph_shape is not None
        and "rlnCoordinateX" in df.columns
        and "rlnCoordinateY" in df.columns
    ):
        ny, nx = (int(s) for s in micrograph_shape)
        x = np.asarray(take("rlnCoordinateX"), dtype=np.float64)
        y = np.asarray(take("rlnCoordinateY"), dtype=np.float64)
        cols["location/micrograph_shape"] = np.tile(np.array([ny, nx], dtype=_U4), (n, 1))
        cols["location/center_x_frac"] = f4(x / nx)
        cols["location/center_y_frac"] = f4(1.0 - y / ny if flip_y else y / ny)

    rot, tilt, psi = (_column(df, c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    align = None
    if rot is not None and tilt is not None:
        align = "alignments3D"
        psi = np.zeros(n) if psi is None else psi
        angles = np.stack([np.asarray(a, dtype=np.float64) for a in (rot, tilt, psi)], axis=1)
        cols["alignments3D/pose"] = euler_to_rotvec(angles).astype(_F4)
        used.update(c for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi") if c in df.columns)
    elif psi is not None:
        align = "alignments2D"
        cols["alignments2D/pose"] = f4(np.radians(np.asarray(psi, dtype=np.float64)))
        used.add("rlnAnglePsi")
    if align is None and any(
        c in df.columns
        for c in ("rlnOriginXAngst", "rlnOriginX", "rlnClassNumber", "rlnRandomSubset")
    ):
        align = "alignments3D"
    if align:
        ox, oy = _column(df, "rlnOriginXAngst"), _column(df, "rlnOriginYAngst")
        if ox is not None and oy is not None and psize is not None:
            used.update(("rlnOriginXAngst", "rlnOriginYAngst"))
            p = np.asarray(psize, dtype=np.float64)
            shift = np.stack([np.asarray(ox, np.float64) / p, np.asarray(oy, np.float64) / p], 1)
            cols[f"{align}/shift"] = shift.astype(_F4)
            cols[f"{align}/psize_A"] = f4(p)
        elif "rlnOriginX" in df.columns and "rlnOriginY" in df.columns:
            shift = np.stack(
                [np.asarray(take(c), np.float64) for c in ("rlnOriginX", "rlnOriginY")], 1
            )
            cols[f"{align}/shift"] = shift.astype(_F4)
        for label, field in (("rlnClassNumber", "class"), ("rlnRandomSubset", "split")):
            v = take(label)
            if v is not None:
                cols[f"{align}/{field}"] = (_whole(v, label, name, 1, _U4_MAX + 1) - 1).astype(_U4)

    for label in df.columns:
        if label in used:
            continue
        v = df[label].to_numpy()
        if v.dtype == object or getattr(df[label].dtype, "kind", "O") in "OSU":
            v = _fixed(v, f"{_STAR_PREFIX}{label}", budget)
        cols[f"{_STAR_PREFIX}{label}"] = v
    return Dataset.from_columns(cols, n)


def _split_image_names(
    series: Any,
    name: str,
    budget: StringBudget,
) -> tuple[np.ndarray, np.ndarray]:
    """(1-based index, S path) from ``NNNNNN@path`` names (in C with pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        parts = series.astype(str).str.partition("@")
        if (parts[1] != "@").any():
            raise CsFormatError(f"{name}: rlnImageName without 'NNNNNN@path' form") from None
        return (
            parts[0].astype(np.int64).to_numpy(),
            _fixed(parts[2].to_numpy(), "blob/path", budget),
        )
    arr = pa.array(series.astype(str), type=pa.string())
    if isinstance(arr, pa.ChunkedArray):  # pandas' Arrow-backed strings come in chunks
        arr = arr.combine_chunks()
    parts = pc.split_pattern(arr, "@", max_splits=1)
    if pc.min(pc.list_value_length(parts)).as_py() != 2:
        raise CsFormatError(f"{name}: rlnImageName without 'NNNNNN@path' form")
    try:
        number = pc.cast(pc.list_element(parts, 0), pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        raise CsFormatError(f"{name}: rlnImageName with a non-numeric index") from None
    stacks = pc.list_element(parts, 1).dictionary_encode()
    return number, fixed_width(
        stacks.dictionary.to_pylist(),
        stacks.indices.to_numpy(zero_copy_only=False),
        "blob/path",
        budget=budget,
    )


def _fixed(values: Any, field: str, budget: StringBudget) -> np.ndarray:
    import pandas as pd

    codes, uniq = pd.factorize(np.asarray(values, dtype=object))
    try:
        return fixed_width(list(uniq), codes, field, budget=budget)
    except CsFieldError:  # numbers among the strings: as text
        codes, uniq = pd.factorize(pd.Series(values).astype(str))
        return fixed_width(list(uniq), codes, field, budget=budget)


_BLOCK = re.compile(rb"data_(\S*)[ \t\r]*$", re.M)
_NON_SPACE = re.compile(rb"\S")


def read_loops(path: str | os.PathLike) -> dict[str, Any] | None:
    """The loop blocks of a STAR file as DataFrames, or None to use ``starfile``.

    starfile walks the file line by line in Python (about 10 s for a million
    particles) before handing the rows to pandas' C reader; when every block
    is a plain ``loop_`` without quoted values, this gives the same rows to
    the same reader directly. Anything else (key-value blocks, quotes)
    returns None, and ``starfile.read`` does the work.
    """
    import io

    import pandas as pd

    with open_regular(path) as f:
        data = f.read()
    # Block headers: "data_" at a line start (found with bytes.find, which is
    # memchr-fast, rather than a multi-line regex over the whole file).
    starts = [0] if data.startswith(b"data_") else []
    at = data.find(b"\ndata_")
    while at >= 0:
        starts.append(at + 1)
        at = data.find(b"\ndata_", at + 1)
    found = [_BLOCK.match(data, i) for i in starts]
    marks = [m for m in found if m is not None]
    if not marks or len(marks) != len(found):
        return None
    blocks: dict[str, Any] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(data)
        body = data[m.end() : end]
        labels: list[str] = []
        seen_loop = False
        pos = 0
        while pos < len(body):
            nl = body.find(b"\n", pos)
            nl = len(body) if nl < 0 else nl
            line = body[pos:nl].strip()
            if not seen_loop:
                if line and not line.startswith(b"#"):
                    if line != b"loop_":
                        return None
                    seen_loop = True
            elif line.startswith(b"_"):
                labels.append(line.split()[0][1:].decode())
            elif line or labels:
                break
            pos = nl + 1
        if not labels or len(set(labels)) != len(labels):
            return None
        rows = body[pos:]
        if b'"' in rows or b"'" in rows:
            return None
        if _NON_SPACE.search(rows) is None:
            df = pd.DataFrame({label: [] for label in labels})
        else:
            df = pd.read_csv(
                io.BytesIO(rows),
                sep=r"\s+",
                header=None,
                names=labels,
                comment="#",
                engine="c",
                keep_default_na=False,
                na_values=["nan", "NaN", "<NA>"],
            )
            if df.shape[1] != len(labels):
                return None
        blocks[m.group(1).decode()] = df
    return blocks
