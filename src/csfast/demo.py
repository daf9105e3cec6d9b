"""A small, realistic cryo-EM job tree built with the result-group API (``csfast demo``).

The folder is laid out as a cryoSPARC project (docs/projects.md): one
folder per job (``J1/``, ``J2/``...) holding its metafiles, its .csg files
and its job document ``job.json`` (v5 shape), so ``csfast.Project`` and
``csfast project`` read it back. Each job connects the output groups of
earlier jobs to its input groups, loads them, computes its new results
(synthetic, seeded) and writes its output groups with passthrough files and
.csg files, as cryoSPARC jobs do:

    J1 import particles -> J2 extract (256 px) -> J3 downsample (128 px)
    -> J4 2D classification -> J5 select 2D classes
    -> J6 3D refinement: particles from J5, slot ``blob`` overridden by J2's
       full-size blob (the downsampled-particles case of docs/model.md)
    J7, J8 import half maps -> J9 local resolution: volume from J6, slots
       ``map_half_A`` / ``map_half_B`` overridden from J7 and J8.

Nothing here prints: ``build_job_tree`` returns a report, ``report_text``
the lines the command line prints for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._text import columns_text, results_text, shape_text, size_text, time_text
from .dataset import Dataset, generate_uids
from .groups import ResultGroup, write_output
from .inputs import Input, InputSpec
from .project import write_job
from .synthetic import particles

__all__ = ["JobStep", "Assembly", "DemoReport", "build_job_tree", "report_text", "STEPS"]

FULL_PX, FULL_PSIZE = 256, 0.83
SMALL_PX, SMALL_PSIZE = 128, 1.66
BOX_PX = 192  # the refinement's map box

STEPS = 9  # jobs in the tree, for progress displays


@dataclass
class JobStep:
    """One job of the tree: what it did and the output groups it wrote."""

    job: str
    title: str
    outputs: list[ResultGroup]
    seconds: float
    type: str = ""


@dataclass
class Assembly:
    """How one job's input was assembled: the calls made and what came out."""

    job: str
    input: Input
    problems_before: list[str]  # check() before anything was connected
    problems: list[str]  # check() once connected and overridden
    check_seconds: float
    load_seconds: float
    table: Dataset
    metafiles: int  # distinct metafiles opened by load()


@dataclass
class DemoReport:
    folder: str
    rows: int
    jobs: list[JobStep] = field(default_factory=list)
    refinement: Assembly | None = None
    local_resolution: Assembly | None = None
    reloaded: Dataset | None = None  # J6.particles read back from its .csg
    reload_seconds: float = 0.0
    seconds: float = 0.0


def build_job_tree(
    folder: str | os.PathLike,
    rows: int = 200_000,
    seed: int = 0,
    progress: Callable[[int, str], None] | None = None,
) -> DemoReport:
    """Write the demo job tree into folder (created if needed) as a project; see the module doc.

    ``progress(step, title)`` is called as each job starts (steps 1..STEPS).
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    report = DemoReport(folder, rows)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    step = 0

    def job(jid: str, title: str) -> float:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, f"{jid} {title}")
        return time.perf_counter()

    def here(jid: str) -> str:
        path = os.path.join(folder, jid)
        os.makedirs(path, exist_ok=True)
        return path

    def done(
        jid: str, job_type: str, title: str, t0: float, inputs: list[Input], *outputs: ResultGroup
    ) -> None:
        write_job(folder, jid, job_type, title=title, inputs=inputs, outputs=outputs)
        report.jobs.append(JobStep(jid, title, list(outputs), time.perf_counter() - t0, job_type))

    particle_spec = InputSpec("particle", ["blob", "?ctf"], name="particles")

    # J1: particle picks imported from elsewhere: locations and pick scores.
    t0 = job("J1", "import particles")
    picks = particles(rows, results=("location", "pick_stats"), seed=seed)
    j1 = write_output(here("J1"), "J1", "particles", picks, "particle", ["location", "pick_stats"])
    done("J1", "import_particles", "import particles", t0, [], j1)

    # J2: extraction writes full-size images; particles at the edges are lost.
    t0 = job("J2", f"extract {FULL_PX} px")
    inp = Input(InputSpec("particle", ["location"], name="particles"))
    inp.connect(j1)
    picked = inp.load()
    x = picked["location/center_x_frac"]
    kept = picked["uid"][(x > 0.01) & (x < 0.99)]
    extracted = particles(len(kept), results=("blob", "ctf"), seed=seed + 1, uids=kept)
    extracted["blob/shape"] = FULL_PX
    extracted["blob/psize_A"] = FULL_PSIZE
    j2 = write_output(
        here("J2"), "J2", "particles", extracted, "particle", ["blob", "ctf"], passthrough=picked
    )
    done("J2", "extract_micrographs_multi", f"extract {FULL_PX} px", t0, [inp], j2)

    # J3: downsampling writes new, smaller images of the same particles (a new
    # blob, same uids); everything else is passed through.
    t0 = job("J3", f"downsample to {SMALL_PX} px")
    inp = Input(particle_spec)
    inp.connect(j2)
    full = inp.load()
    small = Dataset(
        {
            "uid": full["uid"],
            "blob/path": _repath(full["blob/path"], b"/extract/", b"/downsample/"),
            "blob/idx": full["blob/idx"],
            "blob/shape": np.full((len(full), 2), SMALL_PX, np.uint32),
            "blob/psize_A": np.full(len(full), SMALL_PSIZE, np.float32),
            "blob/sign": full["blob/sign"],
            "blob/import_sig": full["blob/import_sig"],
        }
    )
    j3 = write_output(here("J3"), "J3", "particles", small, "particle", ["blob"], passthrough=full)
    done("J3", "downsample_particles", f"downsample to {SMALL_PX} px", t0, [inp], j3)

    # J4: 2D classification on the small particles; two iterations, two versions.
    t0 = job("J4", "2D classification")
    inp = Input(particle_spec)
    inp.connect(j3)
    downsampled = inp.load()
    classes = 50
    for version in (10, 20):
        aligned = particles(
            len(downsampled),
            results=("alignments2D",),
            seed=seed + version,
            uids=downsampled["uid"],
            classes=classes,
        )
        j4 = write_output(
            here("J4"),
            "J4",
            "particles",
            aligned,
            "particle",
            ["alignments2D"],
            passthrough=downsampled,
            version=version,
        )
    done("J4", "class_2D_new", "2D classification", t0, [inp], j4)

    # J5: keep the particles of the good classes (about 60 %).
    t0 = job("J5", "select 2D classes")
    inp = Input(InputSpec("particle", ["alignments2D"], name="particles"))
    inp.connect(j4)
    classified = inp.load()
    good = rng.permutation(classes)[: classes * 3 // 5]
    selected = classified.query({"alignments2D/class": good})
    j5 = write_output(
        here("J5"),
        "J5",
        "particles_selected",
        selected,
        "particle",
        ["alignments2D"],
        passthrough=selected,
    )
    done("J5", "select_2D", "select 2D classes", t0, [inp], j5)

    # J6: 3D refinement of the selected particles at full size.
    t0 = job("J6", "3D refinement")
    refine = Input(particle_spec)
    before = refine.check()
    refine.connect(j5)
    refine.override(0, "blob", j2["blob"])
    t1 = time.perf_counter()
    problems = refine.check()
    t2 = time.perf_counter()
    stack = refine.load()
    t3 = time.perf_counter()
    opened = {j2["blob"].metafile} | {r.metafile for n, r in j5.results.items() if n != "blob"}
    report.refinement = Assembly(
        "J6", refine, before, problems, t2 - t1, t3 - t2, stack, len(opened)
    )
    aligned = particles(
        len(stack), results=("alignments3D",), seed=seed + 6, uids=stack["uid"], classes=1
    )
    refined = stack.innerjoin(aligned)
    j6 = write_output(
        here("J6"),
        "J6",
        "particles",
        refined,
        "particle",
        ["blob", "ctf", "alignments3D"],
        passthrough=stack,
        version=5,
    )
    j6_volume = write_output(
        here("J6"),
        "J6",
        "volume",
        _volume(rng, "J6", ["map", "map_half_A", "map_half_B"]),
        "volume",
        ["map", "map_half_A", "map_half_B"],
        version=5,
    )
    done("J6", "homo_refine_new", "3D refinement", t0, [refine], j6, j6_volume)

    # J7, J8: half maps of the same structure from two other refinements.
    outputs = {}
    for jid, half in (("J7", "map_half_A"), ("J8", "map_half_B")):
        title = f"import half map {half[-1]}"
        t0 = job(jid, title)
        outputs[jid] = write_output(
            here(jid), jid, "volume", _volume(rng, jid, [half]), "volume", [half]
        )
        done(jid, "import_volumes", title, t0, [], outputs[jid])

    # J9: local resolution: the volume of J6 with the half maps of J7 and J8.
    t0 = job("J9", "local resolution")
    locres = Input(
        InputSpec("volume", ["map", "map_half_A", "map_half_B"], count_max=1, name="volume")
    )
    before = locres.check()
    locres.connect(j6_volume)
    locres.override(0, "map_half_A", outputs["J7"]["map_half_A"])
    locres.override(0, "map_half_B", outputs["J8"]["map_half_B"])
    t1 = time.perf_counter()
    problems = locres.check()
    t2 = time.perf_counter()
    volume = locres.load()
    t3 = time.perf_counter()
    report.local_resolution = Assembly("J9", locres, before, problems, t2 - t1, t3 - t2, volume, 3)
    result = volume.innerjoin(_volume(rng, "J9", ["map_locres"], uids=volume["uid"]))
    j9 = write_output(
        here("J9"), "J9", "volume", result, "volume", ["map_locres"], passthrough=volume
    )
    done("J9", "local_resolution", "local resolution", t0, [locres], j9)

    t0 = time.perf_counter()
    report.reloaded = ResultGroup.from_csg(j6.path or "").load()
    report.reload_seconds = time.perf_counter() - t0
    report.seconds = time.perf_counter() - t_start
    return report


def _repath(paths: np.ndarray, old: bytes, new: bytes) -> np.ndarray:
    """Replace a part of every path; each distinct path is rewritten once."""
    values, inverse = np.unique(paths, return_inverse=True)
    return np.array([v.replace(old, new) for v in values.tolist()])[inverse.reshape(-1)]


def _volume(
    rng: np.random.Generator, job: str, results: list[str], uids: np.ndarray | None = None
) -> Dataset:
    """One volume item with the given map results (path, shape, pixel size)."""
    cols: dict[str, object] = {"uid": generate_uids(1, seed=rng) if uids is None else uids}
    for r in results:
        cols[f"{r}/path"] = np.array([f"{job}/{job}_{r}.mrc".encode()])
        cols[f"{r}/shape"] = np.full((1, 3), BOX_PX, np.uint32)
        cols[f"{r}/psize_A"] = np.full(1, FULL_PSIZE, np.float32)
    return Dataset(cols)


def report_text(report: DemoReport) -> list[str]:
    """The text `csfast demo` prints for a DemoReport, line by line."""
    ref, loc = report.refinement, report.local_resolution
    assert ref is not None and loc is not None, "the report of a finished build_job_tree"
    files = [
        os.path.join(step.job, f)
        for step in report.jobs
        for f in os.listdir(os.path.join(report.folder, step.job))
        if f.endswith((".cs", ".csg", ".json"))
    ]
    total = sum(os.path.getsize(os.path.join(report.folder, f)) for f in files)
    out = [
        f"csfast demo: a cryo-EM job tree of {report.rows:,} synthetic particles",
        f"written to {report.folder}, a project folder: one folder per job",
        "",
        "Each job loads its input with Input(spec).load() and writes its output groups with",
        "write_output(): new results in J<n>/J<n>_<version>_<name>.cs, the results it only",
        "carried along in J<n>/J<n>_passthrough_<name>.cs (+ below), J<n>/J<n>_<name>.csg naming",
        "them all, and its job document J<n>/job.json (inputs and outputs, as cryoSPARC's).",
        "",
    ]
    rows = [("job", "what it does", "time", "output group", "items", "results")]
    for step in report.jobs:
        for k, g in enumerate(step.outputs):
            first = k == 0
            rows.append(
                (
                    step.job if first else "",
                    step.title if first else "",
                    time_text(step.seconds) if first else "",
                    g.label,
                    f"{g.num_items:,}",
                    results_text(g, False),
                )
            )
            if results_text(g, True):
                rows.append(("", "", "", "", "", results_text(g, True)))
    out += columns_text(rows, right=(2, 4))

    t = ref.table
    conn = ref.input.connections[0]
    over = conn.overrides["blob"]
    spec = ref.input.spec
    slots = ", ".join(repr(("" if s.required else "?") + s.name) for s in spec.slots)
    carried = ", ".join(p for p in t.prefixes() if p != "blob")
    out += [
        "",
        f"{ref.job}, the refinement, reads particles that were downsampled for 2D classification,",
        "at full size: its input connects the selection and overrides the blob slot.",
        f"  inp = Input(InputSpec('{spec.item_type}', [{slots}]))",
        "  inp.check()      with nothing connected:",
        f"                   {ref.problems_before[0]}",
        f"  inp.connect({conn.group.label})",
        f"                   connection 0; its own blob: {_blob_text(conn.group['blob'].load())}",
        f"  inp.override(0, 'blob', {over.label})",
        f"                   {_blob_text(over.load())}",
        f"  inp.check()      {_problems(ref)}, in {time_text(ref.check_seconds)} "
        "(reads .cs headers and uid columns only)",
        f"  inp.load()       {shape_text(t)} in {time_text(ref.load_seconds)} "
        f"({ref.metafiles} metafiles, each opened once)",
        f"                   blob: {_blob_text(t)} on every row, from {over.group_label}",
        f"                   {carried}: from {conn.group.label}",
    ]
    v = loc.table
    lconn = loc.input.connections[0]
    lslots = ", ".join(repr(s.name) for s in loc.input.spec.slots)
    out += [
        "",
        f"{loc.job}, local resolution, reads one volume with half maps from two other jobs:",
        f"  inp = Input(InputSpec('volume', [{lslots}], count_max=1))",
        f"  inp.connect({lconn.group.label})",
    ]
    out += [f"  inp.override(0, {slot!r}, {r.label})" for slot, r in lconn.overrides.items()]
    out.append(f"  inp.check()      {_problems(loc)}")
    out.append(
        f"  inp.load()       {shape_text(v)}, keeping the uid of {lconn.group.label}'s item:"
    )
    out += [
        f"                   {s.name + '/path':<16} {v[s.name + '/path'][0]}"
        for s in loc.input.spec.slots
    ]
    j6 = report.jobs[[s.job for s in report.jobs].index(ref.job)].outputs[0]
    main = j6.results["alignments3D"].metafile
    job_folder = os.path.join(report.folder, ref.job)
    out += [
        "",
        f"ResultGroup.from_csg('{os.path.relpath(j6.path or '', report.folder)}').load() reads the "
        "refinement's particles back:",
        f"  {shape_text(report.reloaded)} in {time_text(report.reload_seconds)} "
        "(its final version joined with its passthrough file)",
        "",
        f"Done: {len(files)} files, {size_text(total)}, in {time_text(report.seconds)}. "
        "Look at them with:",
        f"  csfast project {report.folder}",
        f"  csfast info {main}",
        f"  csfast load {job_folder} {j6.name} -o particles.cs",
        f"  csfast load {job_folder} --input {ref.input.spec.name} -o refinement_input.cs",
        f"and remove them with: rm -r {report.folder}",
    ]
    return out


def _blob_text(ds) -> str:
    """The image sizes and pixel sizes in a table's blob, e.g. '256 x 256 px, 0.83 A/px'."""
    shapes = sorted({tuple(x) for x in np.unique(ds["blob/shape"], axis=0).tolist()})
    psizes = sorted({round(float(x), 2) for x in np.unique(ds["blob/psize_A"])})
    return (
        ", ".join(f"{a} x {b} px" for a, b in shapes)
        + ", "
        + ", ".join(f"{x} A/px" for x in psizes)
    )


def _problems(assembly) -> str:
    return "[]: no problems" if not assembly.problems else "; ".join(assembly.problems)
