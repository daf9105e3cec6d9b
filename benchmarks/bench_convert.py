"""Converters at scale: to_arrow, Parquet write/read, to_pandas, STAR write, CSDAT.

Each csfast benchmark sits in a group beside the obvious hand-written route
a user takes today (numpy record array -> pandas -> pyarrow / starfile;
cryosparc-tools for CSDAT). The table is a refinement-like particle stack
(blob + ctf + location + alignments3D, ~50 fields, two S96 path columns),
generated in memory (contiguous columns) and saved as .cs (mapped: strided
columns).

    python -m pytest benchmarks/bench_convert.py --benchmark-only            # 1M rows
    python -m pytest benchmarks/bench_convert.py --benchmark-only --rows 200000
"""

from __future__ import annotations

import numpy as np
import pytest

import csfast
from csfast.convert import files

RESULTS = ("blob", "ctf", "location", "alignments3D")


@pytest.fixture(scope="module")
def table(rows, tmp_path_factory):
    from csfast.synthetic import particles

    ds = particles(rows, results=RESULTS, seed=0, classes=10)
    # per-group optics held constant, as in real data (STAR has one value per group)
    for name, value in (
        ("blob/psize_A", 1.06),
        ("alignments3D/psize_A", 1.06),
        ("ctf/accel_kv", 300.0),
        ("ctf/cs_mm", 2.7),
        ("ctf/amp_contrast", 0.07),
    ):
        ds[name] = np.float32(value)
    folder = tmp_path_factory.mktemp("convert")
    ds.save(folder / "particles.cs")
    files.write_parquet(ds, folder / "particles.parquet")
    ds.to_pandas().to_parquet(folder / "pandas.parquet")
    return ds, folder


def _hand_frame(path):
    """The hand-written route: np.load, then one pandas column per field element."""
    import pandas as pd

    rec = np.load(path)
    data = {}
    for name in rec.dtype.names:
        col = rec[name]
        if col.ndim == 1:
            data[name] = col
        else:
            for i in range(col.shape[1]):
                data[f"{name}/{i}"] = col[:, i]
    return pd.DataFrame(data)


# -------------------------------------------------------------- to_arrow


def test_to_arrow_csfast_in_memory(run, table):
    ds, _ = table
    t = run(ds.to_arrow, group="to_arrow")
    assert t.num_rows == len(ds)


def test_to_arrow_csfast_mapped(run, table):
    ds, folder = table
    mapped = csfast.Dataset.load(folder / "particles.cs")
    t = run(mapped.to_arrow, group="to_arrow")
    assert t.num_rows == len(ds)


def test_to_arrow_hand_pandas(run, table):
    import pyarrow as pa

    ds, folder = table
    t = run(lambda: pa.Table.from_pandas(_hand_frame(folder / "particles.cs")), group="to_arrow")
    assert t.num_rows == len(ds)


# --------------------------------------------------------- Parquet write


def test_parquet_write_csfast(run, table):
    ds, folder = table
    run(lambda: files.write_parquet(ds, folder / "w.parquet"), group="Parquet write")


def test_parquet_write_hand_pandas(run, table):
    _, folder = table
    df = _hand_frame(folder / "particles.cs")
    run(lambda: df.to_parquet(folder / "w_pandas.parquet"), group="Parquet write")


# ---------------------------------------------------------- Parquet read


def test_parquet_read_csfast(run, table):
    ds, folder = table
    back = run(lambda: files.read_parquet(folder / "particles.parquet"), group="Parquet read")
    assert len(back) == len(ds)


def test_parquet_read_hand_pandas(run, table):
    import pandas as pd

    ds, folder = table
    df = run(lambda: pd.read_parquet(folder / "pandas.parquet"), group="Parquet read")
    assert len(df) == len(ds)


# ------------------------------------------------------------- to_pandas


def test_to_pandas_csfast_in_memory(run, table):
    ds, _ = table
    df = run(ds.to_pandas, group="to_pandas")
    assert len(df) == len(ds)


def test_to_pandas_csfast_mapped(run, table):
    ds, folder = table
    df = run(lambda: csfast.Dataset.load(folder / "particles.cs").to_pandas(), group="to_pandas")
    assert len(df) == len(ds)


def test_to_pandas_hand_numpy(run, table):
    ds, folder = table
    df = run(lambda: _hand_frame(folder / "particles.cs"), group="to_pandas")
    assert len(df) == len(ds)


# ------------------------------------------------------------ STAR write


def test_star_write_csfast(benchmark, table):
    ds, folder = table
    benchmark.group = "STAR write"
    benchmark.pedantic(lambda: csfast.to_star(ds, folder / "p.star"), rounds=3, iterations=1)


def test_star_write_hand_starfile(benchmark, table):
    """The hand route: compute the RELION columns with numpy/scipy, write with starfile."""
    import pandas as pd
    import starfile
    from scipy.spatial.transform import Rotation

    ds, folder = table

    def write():
        rec = np.load(folder / "particles.cs")
        idx = rec["blob/idx"].astype(np.int64) + 1
        euler = Rotation.from_rotvec(rec["alignments3D/pose"]).as_euler("ZYZ", degrees=True)
        shape = rec["location/micrograph_shape"]
        df = pd.DataFrame(
            {
                "rlnImageName": [
                    f"{i:06d}@{p.decode()}" for i, p in zip(idx, rec["blob/path"], strict=True)
                ],
                "rlnMicrographName": np.char.decode(rec["location/micrograph_path"]),
                "rlnCoordinateX": rec["location/center_x_frac"] * shape[:, 1],
                "rlnCoordinateY": (1 - rec["location/center_y_frac"]) * shape[:, 0],
                "rlnDefocusU": rec["ctf/df1_A"],
                "rlnDefocusV": rec["ctf/df2_A"],
                "rlnDefocusAngle": np.degrees(rec["ctf/df_angle_rad"]),
                "rlnAngleRot": euler[:, 0],
                "rlnAngleTilt": euler[:, 1],
                "rlnAnglePsi": euler[:, 2],
                "rlnOriginXAngst": rec["alignments3D/shift"][:, 0] * rec["alignments3D/psize_A"],
                "rlnOriginYAngst": rec["alignments3D/shift"][:, 1] * rec["alignments3D/psize_A"],
                "rlnClassNumber": rec["alignments3D/class"] + 1,
                "rlnOpticsGroup": rec["ctf/exp_group_id"],
            }
        )
        optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0]})
        starfile.write({"optics": optics, "particles": df}, folder / "hand.star")

    benchmark.group = "STAR write"
    benchmark.pedantic(write, rounds=1, iterations=1)


# ----------------------------------------------------------------- CSDAT


def test_csdat_write_csfast(run, table):
    ds, folder = table
    run(lambda: files.write_csdat(ds, folder / "s.csdat"), group="CSDAT write (lz4)")


def test_csdat_write_cryosparc_tools(benchmark, table):
    from cryosparc.dataset import CSDAT_FORMAT
    from cryosparc.dataset import Dataset as CsDataset

    _, folder = table
    cd = CsDataset.load(folder / "particles.cs")
    benchmark.group = "CSDAT write (lz4)"
    benchmark.pedantic(
        lambda: cd.save(folder / "cst.csdat", format=CSDAT_FORMAT), rounds=3, iterations=1
    )


def test_csdat_read_csfast(run, table):
    ds, folder = table
    files.write_csdat(ds, folder / "r.csdat")
    back = run(lambda: csfast.Dataset.load(folder / "r.csdat"), group="CSDAT read (lz4)")
    assert len(back) == len(ds)


def test_csdat_read_cryosparc_tools(benchmark, table):
    from cryosparc.dataset import Dataset as CsDataset

    ds, folder = table
    files.write_csdat(ds, folder / "r2.csdat")
    benchmark.group = "CSDAT read (lz4)"
    cd = benchmark.pedantic(lambda: CsDataset.load(folder / "r2.csdat"), rounds=3, iterations=1)
    assert len(cd) == len(ds)


# ------------------------------------------------------------- STAR read


def test_star_read_csfast(benchmark, table):
    ds, folder = table
    csfast.to_star(ds, folder / "r.star")
    benchmark.group = "STAR read"
    back = benchmark.pedantic(lambda: csfast.from_star(folder / "r.star"), rounds=3, iterations=1)
    assert len(back) == len(ds)


def test_star_read_starfile(benchmark, table):
    import starfile

    ds, folder = table
    csfast.to_star(ds, folder / "r2.star")
    benchmark.group = "STAR read"
    blocks = benchmark.pedantic(
        lambda: starfile.read(folder / "r2.star", always_dict=True), rounds=1, iterations=1
    )
    assert len(blocks["particles"]) == len(ds)
