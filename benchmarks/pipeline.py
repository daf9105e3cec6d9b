"""End to end, files in and files out: csfast beside its peers as a pipeline stage runs.

    python benchmarks/pipeline.py --rows 1000000 [--repeat 3] [--json FILE]
    python benchmarks/pipeline.py --check            # small N: every output equals csfast's

Four stages, each reading the scenario's files (scenario.py) and writing a
``.cs`` file, fsync included for every contender (none with ``--no-fsync``):

1. ``join``: particles inner-joined with their passthrough on uid;
2. ``append``: the ten chunks ``extract_000.cs`` ... appended, a repeated
   uid refused;
3. ``subset``: the rows whose uid ``subset_uids.npy`` lists (30%);
4. ``refine``: the input of the demo tree's refinement (``csfast demo``,
   built at the scenario's row count, at most DEMO_ROWS by default, and
   cached beside it): job J6 reads J5's selected particles with the
   ``blob`` slot overridden by J2's.

Each contender does the work as its users would write it: csfast through
its public API; cryosparc-tools' ``Dataset.load``, ``innerjoin``,
``append_many``, ``query``, ``save``; numpy alone on ``np.load(mmap_mode="r")``;
numpy + polars (the mapped table's columns as a DataFrame: sub-arrays as
``Array`` columns, strings as ``Binary``; the result back to a structured
array of the original dtype, ``np.save``); pandas likewise, sub-arrays
split into one scalar column per element, strings as object columns.
docs/performance.md has the details.

Every run is a fresh subprocess, so its memory is its own: wall time of
load + operation + save measured inside it; peak anonymous memory
(``RssAnon`` of /proc/PID/status, sampled by this process every 5 ms, and
read by the child at its end), ``VmHWM`` and ``ru_maxrss`` (which count the
pages of mapped input files too). One warm-up run of each contender, then
``--repeat`` runs interleaved; the median is shown.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario as scen  # noqa: E402
from compare import (  # noqa: E402
    _fmt_s,
    _fmt_x,
    import_peers,
    polars_frame_all,
    polars_members,
    version_of,
)
from operations import CST, NUMPY, PANDAS, POLARS  # noqa: E402

import csfast  # noqa: E402
from csfast import Dataset, Project  # noqa: E402

STAGES = {
    "join": "1 join particles + passthrough",
    "append": "2 append 10 chunks, uid check",
    "subset": "3 subset 30% by uid",
    "refine": "4 assemble the refinement input",
}
CSFAST = "csfast"
CONTENDERS = (CSFAST, CST, NUMPY, POLARS, PANDAS)
ROUTES = (NUMPY, POLARS, PANDAS)  # the "fastest numpy/polars/pandas route" of the targets
# The targets of issue 11: csfast's time x these <= the peer's (join: 6x the routes).
CST_RATIO, ROUTE_RATIO, JOIN_ROUTE_RATIO = 15.0, 3.0, 6.0
MEMORY_LIMIT = 1.5e9  # peak anonymous memory of csfast's stages, at 10M rows
DEMO_VERSION = 1  # bump when the cached demo tree must be rebuilt
# The demo tree's default size cap: csfast.demo holds whole tables while it
# builds the tree (about 3.5 GB of memory at 1M particles, 2.3 GB of files).
DEMO_ROWS = 1_000_000
REFINE_JOB, REFINE_INPUT = "J6", "particles"
SAMPLE_SECONDS = 0.005


# ----------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """The files a stage reads: the scenario, and the demo project beside it."""

    sc: scen.Scenario
    demo: Path
    demo_rows: int

    def options(self) -> list[str]:
        """The command-line options that give a child process the same inputs."""
        return [
            *("--rows", str(self.sc.rows), "--demo-rows", str(self.demo_rows)),
            *("--dir", str(self.sc.folder.parent)),
        ]


def demo_project(
    rows: int, seed: int, root: Path, log: Callable[[str], None] | None = None
) -> Path:
    """The demo job tree of rows particles, built once (csfast.demo) and cached under root."""
    folder = root / f"demo-rows{rows}-seed{seed}"
    marker = folder / "demo.json"
    meta = {"version": DEMO_VERSION, "rows": rows, "seed": seed}
    try:
        if json.loads(marker.read_text()) == meta:
            return folder
    except (OSError, ValueError):
        pass
    from csfast.demo import build_job_tree

    if folder.exists():
        shutil.rmtree(folder)
    t0 = time.perf_counter()
    if log:
        log(f"generating the {rows:,}-particle demo project in {folder} ...")
    build_job_tree(folder, rows=rows, seed=seed)
    marker.write_text(json.dumps(meta))  # last: an interrupted build is built again
    if log:
        log(f"  done in {time.perf_counter() - t0:.1f} s")
    return folder


def prepare(
    rows: int,
    root: str | None,
    demo_rows: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Inputs:
    """The scenario of rows rows and the demo project (of min(rows, DEMO_ROWS) by default)."""
    sc = scen.build(rows, root=root, log=log)
    demo_rows = demo_rows or min(rows, DEMO_ROWS)
    return Inputs(sc, demo_project(demo_rows, sc.seed, sc.folder.parent, log), demo_rows)


def refinement_plan(project: Path) -> list[tuple[Path, list[str]]]:
    """The metafiles the refinement's input reads and the results taken from each.

    Read from the job documents with json alone, as a user without csfast
    would: each result of the input's connection names its job, output,
    result and version ("F": the last); a slot filled from another job (the
    blob override) takes that job's file.
    """
    doc = json.loads((project / REFINE_JOB / "job.json").read_text())
    (connection,) = doc["spec"]["inputs"][REFINE_INPUT]["connections"]
    plan: dict[Path, list[str]] = {}
    for r in connection["results"]:
        if r["name"] not in (None, r["result"]):
            raise NotImplementedError(f"a renamed result: {r}")
        source = json.loads((project / r["job_uid"] / "job.json").read_text())
        result = next(
            x for x in source["spec"]["outputs"][r["output"]]["results"] if x["name"] == r["result"]
        )
        version = max(result["versions"]) if r["version"] == "F" else r["version"]
        path = project / result["metafiles"][result["versions"].index(version)]
        plan.setdefault(path, []).append(r["result"])
    # The connected group's own files first: its rows are the input's rows.
    return sorted(plan.items(), key=lambda item: item[0].parent.name != connection["job_uid"])


def planned_fields(project: Path) -> list[tuple[Path, list[str]]]:
    """refinement_plan's files, each with the fields it gives: uid and its results' fields."""
    out = []
    for path, prefixes in refinement_plan(project):
        names = np.load(path, mmap_mode="r").dtype.names
        out.append((path, ["uid"] + [n for n in names if n.split("/")[0] in prefixes]))
    return out


# ------------------------------------------------------------- contenders
#
# Each stage function reads its inputs and writes `out` (with fsync unless told not to).


def _write(out: Path, write: Callable[[Any], None], fsync: bool) -> None:
    """Write through a file object, then flush and fsync it (what csfast's save does)."""
    with open(out, "wb") as f:
        write(f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _np_save(out: Path, arr: np.ndarray, fsync: bool) -> None:
    _write(out, lambda f: np.save(f, arr, allow_pickle=False), fsync)


def run_csfast(stage: str, inp: Inputs, out: Path, fsync: bool = True) -> None:
    sc = inp.sc
    if stage == "join":
        ds = Dataset.load(sc.particles).innerjoin(Dataset.load(sc.passthrough))
    elif stage == "append":
        ds = Dataset.append_many(*(Dataset.load(p) for p in sc.chunks))
    elif stage == "subset":
        ds = Dataset.load(sc.passthrough).subset_uids(np.load(sc.subset_uids_path))
    else:
        ds = Project(inp.demo).job(REFINE_JOB).inputs[REFINE_INPUT].load()
    ds.save(out, fsync=fsync)  # atomic


def run_cst(stage: str, inp: Inputs, out: Path, fsync: bool = True) -> None:
    from cryosparc.dataset import Dataset as CsDataset

    sc = inp.sc
    if stage == "join":
        ds = CsDataset.load(sc.particles).innerjoin(CsDataset.load(sc.passthrough))
    elif stage == "append":
        ds = CsDataset.append_many(*(CsDataset.load(p) for p in sc.chunks))  # refuses repeats
    elif stage == "subset":
        ds = CsDataset.load(sc.passthrough).query({"uid": np.load(sc.subset_uids_path)})
    else:
        first, *others = [
            CsDataset.load(path, prefixes=prefixes) for path, prefixes in refinement_plan(inp.demo)
        ]
        ds = first.innerjoin(*others)
    _write(out, ds.save, fsync)


def _np_join(*tables: tuple[np.ndarray, list[str] | None]) -> np.ndarray:
    """Inner join on uid of structured arrays (each with its fields, all: None), numpy
    alone: each other table's uids sorted and searched for the first's, then every
    field gathered once into the result."""
    base = tables[0][0]["uid"]
    keep = np.ones(len(base), bool)
    found = []
    for arr, _ in tables[1:]:
        order = np.argsort(arr["uid"])
        uids = arr["uid"][order]
        pos = np.minimum(np.searchsorted(uids, base), len(uids) - 1)
        keep &= uids[pos] == base
        found.append(order[pos])
    rows = [np.nonzero(keep)[0]] + [f[keep] for f in found]
    cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (arr, fields), r in zip(tables, rows, strict=True):
        for n in fields or arr.dtype.names:
            cols.setdefault(n, (arr, r))
    res = np.empty(len(rows[0]), [(n, a.dtype.fields[n][0]) for n, (a, _) in cols.items()])
    for n, (a, r) in cols.items():
        res[n] = a[n][r]
    return res


def run_numpy(stage: str, inp: Inputs, out: Path, fsync: bool = True) -> None:
    sc = inp.sc
    if stage == "join":
        arr = _np_join(*((np.load(p, mmap_mode="r"), None) for p in (sc.particles, sc.passthrough)))
    elif stage == "append":
        arr = np.concatenate([np.load(p, mmap_mode="r") for p in sc.chunks])
        if len(np.unique(arr["uid"])) != len(arr):
            raise ValueError("repeated uid")
    elif stage == "subset":
        table = np.load(sc.passthrough, mmap_mode="r")
        arr = table[np.isin(table["uid"], np.load(sc.subset_uids_path))]
    else:
        arr = _np_join(*((np.load(p, mmap_mode="r"), f) for p, f in planned_fields(inp.demo)))
    _np_save(out, arr, fsync)


def _pl_records(df, dtype: np.dtype) -> np.ndarray:
    """A polars DataFrame back to a structured array of dtype (Binary to fixed-width bytes)."""
    res = np.empty(df.height, dtype)
    for n in dtype.names:
        res[n] = df[n].to_numpy()
    return res


def _dtype_of(files: Sequence[tuple[Path, list[str] | None]]) -> np.dtype:
    """The joined dtype: every file's fields (all: None) in order, uid once."""
    out: dict[str, Any] = {}
    for path, fields in files:
        dt = np.load(path, mmap_mode="r").dtype
        for n in fields or dt.names:
            out.setdefault(n, dt.fields[n][0])
    return np.dtype(list(out.items()))


def run_polars(stage: str, inp: Inputs, out: Path, fsync: bool = True) -> None:
    import polars as pl

    sc = inp.sc
    if stage == "join":
        df = polars_frame_all(pl, sc.particles).join(
            polars_frame_all(pl, sc.passthrough), on="uid", how="inner"
        )
        dtype = _dtype_of([(sc.particles, None), (sc.passthrough, None)])
    elif stage == "append":
        df = pl.concat([polars_frame_all(pl, p) for p in sc.chunks])
        if df["uid"].n_unique() != df.height:
            raise ValueError("repeated uid")
        dtype = np.load(sc.chunks[0], mmap_mode="r").dtype
    elif stage == "subset":
        members = polars_members(pl, np.load(sc.subset_uids_path))
        df = polars_frame_all(pl, sc.passthrough).filter(pl.col("uid").is_in(members))
        dtype = np.load(sc.passthrough, mmap_mode="r").dtype
    else:
        plan = planned_fields(inp.demo)
        df = reduce(
            lambda a, b: a.join(b, on="uid", how="inner"), [polars_frame_all(pl, *f) for f in plan]
        )
        dtype = _dtype_of(plan)
    _np_save(out, _pl_records(df, dtype), fsync)


def _pd_frame(path: Path, fields: list[str] | None = None):
    """A pandas DataFrame of a .cs file: a sub-array field becomes one column per element
    (``name/0``, ``name/1``, ...), a string field an object column of bytes."""
    import pandas as pd

    arr = np.load(path, mmap_mode="r")
    cols: dict[str, np.ndarray] = {}
    for n in fields or arr.dtype.names:
        col = arr[n]
        if col.ndim == 1:
            cols[n] = col
        else:
            for k, idx in enumerate(np.ndindex(col.shape[1:])):
                cols[f"{n}/{k}"] = col[(slice(None),) + idx]
    return pd.DataFrame(cols)


def _pd_records(df, dtype: np.dtype) -> np.ndarray:
    res = np.empty(len(df), dtype)
    for n in dtype.names:
        shape = dtype.fields[n][0].shape
        if not shape:
            res[n] = df[n].to_numpy()
        for k, idx in enumerate(np.ndindex(shape) if shape else ()):
            res[n][(slice(None),) + idx] = df[f"{n}/{k}"].to_numpy()
    return res


def run_pandas(stage: str, inp: Inputs, out: Path, fsync: bool = True) -> None:
    import pandas as pd

    sc = inp.sc
    if stage == "join":
        df = pd.merge(_pd_frame(sc.particles), _pd_frame(sc.passthrough), on="uid", how="inner")
        dtype = _dtype_of([(sc.particles, None), (sc.passthrough, None)])
    elif stage == "append":
        df = pd.concat([_pd_frame(p) for p in sc.chunks], ignore_index=True)
        if not df["uid"].is_unique:
            raise ValueError("repeated uid")
        dtype = np.load(sc.chunks[0], mmap_mode="r").dtype
    elif stage == "subset":
        df = _pd_frame(sc.passthrough)
        df = df[df["uid"].isin(np.load(sc.subset_uids_path))]
        dtype = np.load(sc.passthrough, mmap_mode="r").dtype
    else:
        plan = planned_fields(inp.demo)
        df = reduce(
            lambda a, b: pd.merge(a, b, on="uid", how="inner"), [_pd_frame(*f) for f in plan]
        )
        dtype = _dtype_of(plan)
    _np_save(out, _pd_records(df, dtype), fsync)


RUNNERS: dict[str, Callable[[str, Inputs, Path, bool], None]] = {
    CSFAST: run_csfast,
    CST: run_cst,
    NUMPY: run_numpy,
    POLARS: run_polars,
    PANDAS: run_pandas,
}


MODULES = {CST: "cryosparc", POLARS: "polars", PANDAS: "pandas"}


def installed() -> tuple[list[str], dict[str, str]]:
    """The contenders that can run here, and a note for each missing peer.

    Found, not imported: this process stays small (see main).
    """
    notes = {
        peer: f"{peer} skipped: not installed; pip install '.[bench]'"
        for peer, module in MODULES.items()
        if importlib.util.find_spec(module) is None
    }
    return [c for c in CONTENDERS if c not in notes], notes


# ------------------------------------------------------------------ memory


def _status(pid: int | str = "self") -> dict[str, int]:
    """RssAnon, RssFile, VmRSS, VmHWM of a process, in bytes ({} once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def child(stage: str, contender: str, inp: Inputs, out: Path, fsync: bool) -> dict[str, Any]:
    """One timed run in this (fresh) process: load + operation + save."""
    import resource

    if contender in MODULES:  # imported before the clock starts
        importlib.import_module("cryosparc.dataset" if contender == CST else MODULES[contender])
    gc.collect()
    before = _status()
    t0 = time.perf_counter()
    RUNNERS[contender](stage, inp, out, fsync)
    seconds = time.perf_counter() - t0
    after = _status()
    return {
        "seconds": seconds,
        "anon_before": before.get("RssAnon"),
        "anon_end": after.get("RssAnon"),
        "vmhwm": after.get("VmHWM"),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "out_bytes": out.stat().st_size,
        "out_rows": len(np.load(out, mmap_mode="r")),
    }


def run_sampled(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, str, str, int]:
    """Run cmd, sampling its RssAnon every SAMPLE_SECONDS: (exit status,
    stdout, stderr, peak RssAnon in bytes). The pid sampled is the one
    started, so a command that execs (a cgroup wrapper) keeps being sampled."""
    # Output to files, not pipes: a pipe this loop does not read could fill and block the child.
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(list(cmd), stdout=so, stderr=se, text=True, env=env)
        peak_anon = 0
        while proc.poll() is None:
            peak_anon = max(peak_anon, _status(proc.pid).get("RssAnon", 0))
            time.sleep(SAMPLE_SECONDS)
        so.seek(0)
        se.seek(0)
        return proc.returncode, so.read(), se.read(), peak_anon


def run_child(
    stage: str, contender: str, inp: Inputs, out: Path, fsync: bool = True
) -> dict[str, Any]:
    """Run one stage in a fresh process, sampling its RssAnon every 5 ms."""
    cmd = [sys.executable, __file__, "--child", stage, contender, "--out", str(out)]
    cmd += inp.options() + ([] if fsync else ["--no-fsync"])
    code, stdout, stderr, peak_anon = run_sampled(cmd)
    if code != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        raise RuntimeError(f"{contender} {stage}: {last[0]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    # The child's own end reading covers a peak after the last sample.
    res["peak_anon"] = max(peak_anon, res["anon_end"] or 0)
    return res


# ------------------------------------------------------------------ checks


def differences(expected: Path, got: Path) -> list[str]:
    """How the table in got differs from expected: rows as a set (by uid), per-field values.

    Field order and string widths may differ; anything else is reported.
    """
    a, b = np.load(expected), np.load(got)
    if set(a.dtype.names) != set(b.dtype.names):
        missing = set(a.dtype.names) - set(b.dtype.names)
        extra = set(b.dtype.names) - set(a.dtype.names)
        return [f"fields differ: missing {sorted(missing)}, extra {sorted(extra)}"]
    if len(a) != len(b):
        return [f"{len(b)} rows, expected {len(a)}"]
    a, b = a[np.argsort(a["uid"], kind="stable")], b[np.argsort(b["uid"], kind="stable")]
    out = []
    for n in a.dtype.names:
        ta, tb = a.dtype.fields[n][0], b.dtype.fields[n][0]
        same_type = ta == tb or (ta.base.kind == tb.base.kind == "S" and ta.shape == tb.shape)
        if not same_type:
            out.append(f"{n}: dtype {tb}, expected {ta}")
        elif not np.array_equal(a[n], b[n], equal_nan=ta.base.kind in "fc"):
            out.append(f"{n}: values differ")
    return out


# ------------------------------------------------------------------ report


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:,.0f}"


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Medians per stage and contender: seconds, peak RssAnon, VmHWM, ru_maxrss, output."""
    out: dict[str, dict[str, Any]] = {}
    for stage, by in runs.items():
        out[stage] = {}
        for who, rs in by.items():
            if rs:
                out[stage][who] = {
                    k: statistics.median(r[k] for r in rs)
                    for k in ("seconds", "peak_anon", "vmhwm", "ru_maxrss", "out_bytes")
                }
    return out


def verdicts(stage: str, fig: dict[str, Any]) -> dict[str, Any]:
    """csfast's ratios and the targets of issue 11, pass or fail, for one stage."""
    cs = fig.get(CSFAST)
    if cs is None:
        return {}
    res: dict[str, Any] = {}
    if CST in fig:
        x = fig[CST]["seconds"] / cs["seconds"]
        res["vs_cst"] = x
        res["cst_ok"] = x >= CST_RATIO
    routes = {r: fig[r]["seconds"] for r in ROUTES if r in fig}
    if routes:
        best = min(routes, key=routes.__getitem__)
        x = routes[best] / cs["seconds"]
        need = JOIN_ROUTE_RATIO if stage == "join" else ROUTE_RATIO
        res.update(fastest_route=best, vs_route=x, route_target=need, route_ok=x >= need)
    res["memory_ok"] = cs["peak_anon"] < MEMORY_LIMIT
    return res


def render(fig: dict[str, dict[str, Any]], rows: int) -> str:
    head = ["stage", "contender", "time ms", "x", "peak RssAnon MB", "VmHWM MB", "ru_maxrss MB"]
    head.append("output MB")
    table = [head]
    for stage, by in fig.items():
        cs = by.get(CSFAST)
        for i, who in enumerate(c for c in CONTENDERS if c in by):
            f = by[who]
            x = f["seconds"] / cs["seconds"] if cs else None
            table.append(
                [
                    STAGES[stage] if i == 0 else "",
                    who,
                    _fmt_s(f["seconds"]),
                    _fmt_x(x) if who != CSFAST else "",
                    _mb(f["peak_anon"]),
                    _mb(f["vmhwm"]),
                    _mb(f["ru_maxrss"]),
                    _mb(f["out_bytes"]),
                ]
            )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for j, r in enumerate(table):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("-" * len(lines[0]))
    lines.append("x: the contender's time / csfast's (above 1: csfast is faster)")
    lines.append(
        f"targets (issue 11): >= {CST_RATIO:g}x cryosparc-tools; >= {ROUTE_RATIO:g}x the "
        f"fastest numpy/polars/pandas route (join: {JOIN_ROUTE_RATIO:g}x); csfast's peak "
        f"RssAnon < {MEMORY_LIMIT / 1e9:g} GB (stated at 10M rows"
        + ("" if rows >= 10_000_000 else f"; this run: {rows:,}")
        + ")"
    )
    for stage in fig:
        v = verdicts(stage, fig[stage])
        if not v:
            continue
        parts = []
        if "vs_cst" in v:
            parts.append(f"{_fmt_x(v['vs_cst'])} cst {'pass' if v['cst_ok'] else 'FAIL'}")
        if "vs_route" in v:
            parts.append(
                f"{_fmt_x(v['vs_route'])} {v['fastest_route']} (>= {v['route_target']:g}x) "
                f"{'pass' if v['route_ok'] else 'FAIL'}"
            )
        parts.append(
            f"memory {_mb(fig[stage][CSFAST]['peak_anon'])} MB "
            f"{'pass' if v['memory_ok'] else 'FAIL'}"
        )
        lines.append(f"  {stage:<7} " + "; ".join(parts))
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rows",
        default=None,
        help="scenario rows, or several comma-separated: a table each (default 1M; --check 2k)",
    )
    ap.add_argument(
        "--demo-rows",
        type=int,
        default=None,
        help=f"particles of the demo tree of stage 4 (default: --rows, at most {DEMO_ROWS:,})",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contender (default 3)")
    ap.add_argument(
        "--dir",
        default=None,
        help="scenario cache root (default $CSFAST_BENCH_DIR or /tmp/csfast-bench)",
    )
    ap.add_argument("--only", default=None, help="comma-separated stages: " + ",".join(STAGES))
    ap.add_argument(
        "--contenders", default=None, help="comma-separated, of: " + ",".join(CONTENDERS)
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="run each contender once and compare every output with csfast's (no timing)",
    )
    ap.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        help="no contender fsyncs its output (default: every one does)",
    )
    ap.add_argument("--json", default=None, help="write every run's figures to this file")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def bench(
    rows: int, args: argparse.Namespace, contenders: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Every stage at one row count: the runs, and in --check mode the comparisons."""
    # Generated in a child, and no peer imported here before the runs, so this
    # process stays small: a child's ru_maxrss starts from the peak of the
    # process that spawned it (exec keeps the larger of the two).
    cmd = [sys.executable, __file__, "--prepare", "--rows", str(rows)]
    cmd += ["--demo-rows", str(args.demo_rows)] if args.demo_rows else []
    subprocess.run(cmd + (["--dir", args.dir] if args.dir else []), check=True)
    inp = prepare(rows, args.dir, args.demo_rows)
    stages = [s for s in STAGES if not args.only or s in args.only.split(",")]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in stages}
    errors: dict[str, dict[str, str]] = {s: {} for s in stages}
    problems: list[str] = []
    work = inp.sc.folder / f"pipeline-{os.getpid()}"
    work.mkdir()

    def run(stage: str, c: str, keep: bool = False) -> dict[str, Any] | None:
        out = work / f"{stage}-{c}.cs"
        try:
            return run_child(stage, c, inp, out, args.fsync)
        except RuntimeError as e:  # e.g. a peer out of memory: the others go on
            errors[stage][c] = str(e)
            log(f"  {stage:<7} {c:<16} failed: {e}")
            return None
        finally:
            if not keep:
                out.unlink(missing_ok=True)

    try:
        for stage in stages:
            # Warm-up: the files into the page cache (and --check's outputs).
            ok = [c for c in contenders if run(stage, c, keep=args.check) is not None]
            if args.check:
                for c in ok:
                    if c != CSFAST and CSFAST in ok:
                        diff = differences(work / f"{stage}-{CSFAST}.cs", work / f"{stage}-{c}.cs")
                        problems += [f"{stage} {c}: {d}" for d in diff]
                        log(f"{stage:<7} {c:<16} " + ("; ".join(diff) or "same as csfast"))
                continue
            for i in range(args.repeat):
                for c in ok[:: 1 if i % 2 == 0 else -1]:
                    if c not in errors[stage] and (res := run(stage, c)) is not None:
                        runs[stage].setdefault(c, []).append(res)
                        log(f"  {stage:<7} {c:<16} {_fmt_s(res['seconds'])} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fig = summarize(runs)
    return {
        "rows": rows,
        "demo_rows": inp.demo_rows,
        "refine_rows": next((r[0]["out_rows"] for r in runs.get("refine", {}).values()), None),
        "repeat": args.repeat,
        "fsync": args.fsync,
        "figures": fig,
        "verdicts": {s: verdicts(s, fig[s]) for s in fig},
        "errors": errors,
        "problems": problems,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(r) for r in args.rows.split(",")] if args.rows else []
    counts = counts or [2_000 if args.check else 1_000_000]
    if args.prepare:
        prepare(
            counts[0], args.dir, args.demo_rows, lambda m: print(m, file=sys.stderr, flush=True)
        )
        return 0
    if args.child:
        inp = prepare(counts[0], args.dir, args.demo_rows)
        stage, contender = args.child
        print(json.dumps(child(stage, contender, inp, Path(args.out), args.fsync)))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    contenders, notes = installed()
    if args.contenders:
        contenders = [c for c in contenders if c in args.contenders.split(",")]
    for note in notes.values():
        log(note)
    tables = []
    for rows in counts:
        tables.append(table := bench(rows, args, contenders, log))
        if args.check:
            continue
        print(
            f"\npipeline, files in and out ({'with' if args.fsync else 'without'} fsync), "
            f"{rows:,} rows, median of {args.repeat} (each run a fresh process); "
            f"csfast {csfast.__version__}, {csfast.num_threads()} threads; "
            f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
        )
        if table["refine_rows"]:
            print(
                f"stage 4: the demo tree (csfast demo) of {table['demo_rows']:,} particles; "
                f"its refinement input has {table['refine_rows']:,} rows"
            )
        print(render(table["figures"], rows))
        for stage, failed in table["errors"].items():
            for c, e in failed.items():
                print(f"{stage} {c} failed: {e}")
    if args.check:
        problems = [p for t in tables for p in t["problems"]] + [
            f"{stage} {c} failed: {e}"
            for t in tables
            for stage, failed in t["errors"].items()
            for c, e in failed.items()
        ]
        print("\n".join(problems) or "every output equals csfast's")
        return 1 if problems else 0
    mods, _ = import_peers()  # only now: see bench()
    print(
        "peers: " + ", ".join(f"{p} {version_of(p, m)}" for p, m in mods.items() if p in contenders)
    )
    for note in notes.values():
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"tables": tables}, indent=1))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
