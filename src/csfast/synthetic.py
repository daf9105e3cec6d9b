"""Realistic synthetic particle and exposure tables, seeded, for demos and benchmarks.

The field schema is the one real particle stacks have (docs/formats.md): packed
rows of 250 to 450 bytes, string path columns with one distinct value per
micrograph, sub-array fields of shape (2,), (3,) and (4,).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .dataset import Dataset, generate_uids
from .groups import ALIGNMENT_SCALARS

__all__ = ["RESULT_FIELDS", "particles", "exposures"]

_F4 = "<f4"

_Field = tuple[str, str, tuple[int, ...]]  # (field, dtype, shape)


def _each(names: Sequence[str], dtype: str, shape: tuple[int, ...] = ()) -> list[_Field]:
    """One field per name, all of one dtype and shape."""
    return [(k, dtype, shape) for k in names]


# result name -> [(field, dtype, shape)]; "S" widths are set per table.
RESULT_FIELDS: dict[str, list[_Field]] = {
    "blob": [
        ("path", "S", ()),
        ("idx", "<u4", ()),
        ("shape", "<u4", (2,)),
        ("psize_A", _F4, ()),
        ("sign", _F4, ()),
        ("import_sig", "<u8", ()),
    ],
    "ctf": [("type", "S", ()), ("exp_group_id", "<u4", ())]
    + _each(
        (
            "accel_kv",
            "cs_mm",
            "amp_contrast",
            "df1_A",
            "df2_A",
            "df_angle_rad",
            "phase_shift_rad",
            "scale",
            "scale_const",
            "bfactor",
        ),
        _F4,
    )
    + _each(("shift_A", "tilt_A", "trefoil_A"), _F4, (2,))
    + _each(("tetra_A", "anisomag"), _F4, (4,)),
    "alignments3D": [
        ("split", "<u4", ()),
        ("class", "<u4", ()),
        ("shift", _F4, (2,)),
        ("pose", _F4, (3,)),
    ]
    + _each(ALIGNMENT_SCALARS, _F4),
    "alignments2D": [
        ("split", "<u4", ()),
        ("class", "<u4", ()),
        ("shift", _F4, (2,)),
        ("pose", _F4, ()),
    ]
    + _each(ALIGNMENT_SCALARS, _F4),
    "location": [
        ("micrograph_uid", "<u8", ()),
        ("exp_group_id", "<u4", ()),
        ("micrograph_path", "S", ()),
        ("micrograph_shape", "<u4", (2,)),
        ("micrograph_psize_A", _F4, ()),
        ("center_x_frac", _F4, ()),
        ("center_y_frac", _F4, ()),
        ("min_dist_A", _F4, ()),
    ],
    "pick_stats": [
        ("ncc_score", _F4, ()),
        ("power", _F4, ()),
        ("angle_rad", _F4, ()),
        ("template_idx", "<u4", ()),
    ],
}


def _paths(rng: np.random.Generator, n_distinct: int, width: int, kind: str) -> np.ndarray:
    """n_distinct realistic job-folder paths, each padded to the same width."""
    stems = [
        f"J{rng.integers(2, 999)}/{kind}/{i:06d}_{rng.integers(10**11, 10**12)}"
        f"_FoilHole_{rng.integers(10**7, 10**8)}_Data_{rng.integers(10**7, 10**8)}"
        "_patch_aligned_doseweighted"
        for i in range(n_distinct)
    ]
    # Real paths fill their column: the writer's width is the longest + 1.
    stem_bytes = width - 5
    return np.array(
        [s.encode()[:stem_bytes].ljust(stem_bytes, b"x") + b".mrc" for s in stems],
        dtype=f"S{width}",
    )


def particles(
    n: int,
    *,
    results: tuple[str, ...] = ("blob", "ctf", "location", "pick_stats"),
    seed: int = 0,
    uids: np.ndarray | None = None,
    micrographs: int | None = None,
    path_width: int = 96,
    classes: int = 50,
) -> Dataset:
    """A particle table of n rows with the given results, seeded.

    Paths repeat per micrograph (about 300 particles each, so a few thousand
    distinct values at 1M rows); numeric fields follow plausible ranges.
    """
    rng = np.random.default_rng(seed)
    uids = generate_uids(n, seed=rng) if uids is None else np.asarray(uids, dtype=np.uint64)
    if len(uids) != n:
        raise ValueError(f"{len(uids)} uids for {n} rows")
    n_mic = micrographs or max(1, n // 300)
    mic = np.sort(rng.integers(0, n_mic, size=n)).astype(np.uint32)
    mic_uids = generate_uids(n_mic, seed=rng)
    cols: dict[str, np.ndarray] = {"uid": uids}
    for result in results:
        for name, dtype, shape in RESULT_FIELDS[result]:
            key = f"{result}/{name}"
            cols[key] = _values(
                rng, result, name, dtype, shape, n, mic, mic_uids, path_width, classes
            )
    return Dataset(cols)


def _values(rng, result, name, dtype, shape, n, mic, mic_uids, path_width, classes):
    if dtype == "S":
        if name in ("path", "micrograph_path"):
            kind = "extract" if name == "path" else "motioncorrected"
            return _paths(rng, len(mic_uids), path_width, kind)[mic]
        return np.full(n, b"spa", dtype="S4")
    size = (n,) + shape
    if name == "micrograph_uid":
        return mic_uids[mic]
    if name in ("exp_group_id",):
        return (mic // max(1, len(mic_uids) // 4) + 1).astype(np.uint32)
    if name == "idx":
        return np.arange(n, dtype=np.uint32) % 300
    if name == "split":
        return rng.integers(0, 2, size=size, dtype=np.uint32)
    if name == "class":
        return rng.integers(0, classes, size=size, dtype=np.uint32)
    if name in ("shape", "micrograph_shape"):
        return np.full(size, 256 if name == "shape" else 4096, dtype=np.uint32)
    if name == "template_idx":
        return rng.integers(0, 20, size=size, dtype=np.uint32)
    if name == "import_sig":
        return np.full(size, rng.integers(0, 2**63), dtype=np.uint64)
    if dtype == "<u4":
        return rng.integers(0, 1000, size=size, dtype=np.uint32)
    if name == "pose":
        return rng.normal(0.0, 1.2, size=size).astype(np.float32)
    if name in ("df1_A", "df2_A"):
        return rng.uniform(8000, 25000, size=size).astype(np.float32)
    if name in ("center_x_frac", "center_y_frac"):
        return rng.uniform(0, 1, size=size).astype(np.float32)
    return rng.standard_normal(size=size).astype(np.float32)


def exposures(n: int, *, seed: int = 0) -> Dataset:
    """An exposure table: micrograph_blob, ctf and mscope_params results."""
    rng = np.random.default_rng(seed)
    paths = _paths(rng, n, 96, "motioncorrected")
    return Dataset(
        {
            "uid": generate_uids(n, seed=rng),
            "micrograph_blob/path": paths,
            "micrograph_blob/shape": np.full((n, 2), 4096, dtype=np.uint32),
            "micrograph_blob/psize_A": np.full(n, 0.83, dtype=np.float32),
            "ctf/df1_A": rng.uniform(8000, 25000, n).astype(np.float32),
            "ctf/df2_A": rng.uniform(8000, 25000, n).astype(np.float32),
            "ctf/df_angle_rad": rng.uniform(0, np.pi, n).astype(np.float32),
            "mscope_params/accel_kv": np.full(n, 300, dtype=np.float32),
            "mscope_params/cs_mm": np.full(n, 2.7, dtype=np.float32),
        }
    )
