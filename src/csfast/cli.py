"""The `csfast` command: parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any, cast

from ._text import columns_text, results_text, shape_text, size_text, time_text
from .errors import CsArgumentError, CsError, CsProjectError
from .format import CsInfo
from .spill import beside, spill_folder
from .tables import inspect


def format_info(info: CsInfo) -> str:
    """The text `csfast info` prints for one .cs file or CSDAT stream."""
    if info.kind == "csdat":
        fields = [(n, "string" if d == "|O" else d, s) for n, d, s in info.fields]
        summary = (
            f"{size_text(info.file_size)} on disk, CSDAT stream "
            f"(compression: {info.compression or 'none'})"
        )
        return _format_table(info.path, info.rows, fields, summary)
    summary = (
        f"{info.row_size} bytes/row, {size_text(info.file_size)} on disk, "
        f"npy {info.version[0]}.{info.version[1]}, data at byte {info.data_offset}"
    )
    return _format_table(info.path, info.rows, info.fields, summary)


def _format_table(
    path: str, rows: int, fields: list[tuple[str, str, tuple[int, ...]]], summary: str
) -> str:
    lines = [path, f"  {rows:,} rows x {len(fields)} fields, {summary}"]
    width = max((len(n.partition("/")[2] or n) for n, _, _ in fields), default=0)
    last = None
    for name, dtype, shape in fields:
        head, sep, tail = name.partition("/")
        label = f"{head}/" if sep else head
        shown = label if label != last else ""
        last = label
        sub = f" {shape}" if shape else ""
        lines.append(f"  {shown:<22}{(tail if sep else ''):<{width}}  {dtype}{sub}")
    return "\n".join(lines)


def _info_text(path: str) -> str:
    """What `csfast info` prints for one file: a result group, a .cs file or a CSDAT stream."""
    if path.endswith(".csg"):
        return format_group_info(path)
    return format_info(inspect(path))


def cmd_info(args: argparse.Namespace) -> int:
    status, shown = 0, 0
    for path in args.files:
        try:
            text = _info_text(path)
        except (CsError, OSError) as e:
            print(f"csfast info: {_oserror(e, path)}", file=sys.stderr)
            status = 1
            continue
        if shown:  # a blank line between files, not before the first one shown
            print()
        shown += 1
        print(text)
    return status


def _write(ds, path: str) -> str:
    t0 = time.perf_counter()
    ds.save(path)
    took = time.perf_counter() - t0
    return f"wrote {path} ({size_text(os.path.getsize(path))}) in {time_text(took)}"


def _finish(ds, args: argparse.Namespace, summary: str) -> None:
    print(summary)
    if args.output:
        print(_write(ds, args.output))
    else:
        print(ds)


def cmd_load(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if os.path.isdir(args.source):
        label, ds = _load_from_job(args)
    else:
        from .groups import ResultGroup

        if args.name or args.input:
            raise CsArgumentError(
                f"{args.source}: a .csg names one group; an output or --input "
                "name goes with a job folder (PROJECT/J42)"
            )
        group = ResultGroup.from_csg(args.source)
        passthrough = args.passthrough if args.passthrough is not None else args.slots is None
        ds = group.load(slots=args.slots, version=args.version, passthrough=passthrough)
        label = group.label
    took = time.perf_counter() - t0
    _finish(
        ds, args, f"{label}: {shape_text(ds)} ({', '.join(ds.prefixes())}) in {time_text(took)}"
    )
    return 0


def _load_from_job(args: argparse.Namespace):
    """(label, table) of a job folder's output group or assembled input."""
    from .project import Project

    folder = os.path.abspath(args.source)
    job = Project(os.path.dirname(folder)).job(os.path.basename(folder))
    passthrough = args.passthrough if args.passthrough is not None else args.slots is None
    if args.input:
        if args.name or args.version is not None:
            raise CsArgumentError(
                "--input loads an input as the job read it: no output name, no --version"
            )
        inputs = job.inputs
        if args.input not in inputs:
            raise CsProjectError(
                f"job {job.uid} has no input {args.input!r} (inputs: {', '.join(inputs) or 'none'})"
            )
        ds = inputs[args.input].load(
            passthrough=passthrough, slots=args.slots, allow_drop=args.allow_drop
        )
        return f"{job.uid} input {args.input}", ds
    outputs = job.outputs
    if not args.name or args.name not in outputs:
        what = f"has no output {args.name!r}" if args.name else "needs an output name or --input"
        error = CsProjectError if args.name else CsArgumentError
        raise error(
            f"job {job.uid} {what} (outputs: {', '.join(outputs) or 'none'}; "
            f"inputs: {', '.join(job.input_names()) or 'none'})"
        )
    group = outputs[args.name]
    return group.label, group.load(slots=args.slots, version=args.version, passthrough=passthrough)


def cmd_project(args: argparse.Namespace) -> int:
    from .project import Project

    project = Project(args.path)
    uids = project.jobs()
    print(f"{project.path}: {len(uids)} job{'s' if len(uids) != 1 else ''}")
    status = 0
    for uid in uids:
        try:
            lines = format_job(project.job(uid))
        except CsError as e:
            lines, status = [f"{uid}  ! {e}"], 1
        print()
        print("\n".join(lines))
    return status


def format_job(job) -> list[str]:
    """The lines `csfast project` prints for one job: header, inputs, outputs."""
    out = [f"{job.uid}  {job.type}  {job.status or '-'}  {job.title!r}  ({job.shape} document)"]
    rows = []
    for name, inp in job.inputs.items():
        conns = inp.connections
        spec = inp.spec
        most = "inf" if spec.count_max is None else spec.count_max
        head = ("in", name, spec.item_type, f"{len(conns)} of {spec.count_min}..{most}")
        if not conns:
            rows.append((*head, "not connected"))
        for k, conn in enumerate(conns):
            rows.append(
                (*head, _connection_text(inp, conn))
                if k == 0
                else ("", "", "", "", _connection_text(inp, conn))
            )
    for name, g in job.outputs.items():
        own, carried = results_text(g, False), results_text(g, True)
        text = own + (f"; {carried}" if own and carried else carried)
        n = g.num_items
        rows.append(
            ("out", name, g.item_type, f"{n:,} row{'s' if n != 1 else ''}", text or "not written")
        )
    if rows:
        out += columns_text(rows, right=())
    return out


def _connection_text(inp, conn) -> str:
    """'<- J4.particles; blob <- J1.imported_particles.blob; + location'."""
    version = f" v{conn.version}" if conn.version is not None else ""
    parts = [f"<- {conn.group.label}{version}"]
    for slot, r in conn.overrides.items():
        v = conn.override_versions.get(slot)
        parts.append(f"{slot} <- {r.label}{f' v{v}' if v is not None else ''}")
    if conn.cleared:
        parts.append("cleared " + ", ".join(sorted(conn.cleared)))
    names = {s.name for s in inp.spec.slots}
    carried = (
        conn.passthrough
        if conn.passthrough is not None
        else [n for n in conn.group.results if n not in names]
    )
    if carried:
        parts.append("+ " + ", ".join(carried))
    return "; ".join(parts)


def _load_tables(paths: Sequence[str]):
    from .dataset import Dataset

    return [Dataset.load(p) for p in paths]


def cmd_join(args: argparse.Namespace) -> int:
    from .joins import join_tables

    tables = _load_tables(args.files)
    t0 = time.perf_counter()
    ds = join_tables(tables, names=args.files)
    took = time.perf_counter() - t0
    counts = ", ".join(f"{p} {len(t):,}" for p, t in zip(args.files, tables, strict=True))
    _finish(ds, args, f"joined on uid in {time_text(took)}: {shape_text(ds)} (rows in: {counts})")
    return 0


def cmd_append(args: argparse.Namespace) -> int:
    from .dataset import Dataset

    if args.dedupe:
        if args.repeat_allowed:
            raise CsArgumentError("--dedupe and --repeat-allowed contradict each other")
        return cmd_union(args)
    tables = _load_tables(args.files)
    t0 = time.perf_counter()
    ds = Dataset.append_many(*tables, repeat_allowed=args.repeat_allowed)
    took = time.perf_counter() - t0
    dropped = sorted({f for t in tables for f in t.fields()} - set(ds.fields()))
    shown = ", ".join(dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
    note = f"; fields not in every file, left out: {shown}" if dropped else ""
    _finish(ds, args, f"appended {len(tables)} files in {time_text(took)}: {shape_text(ds)}{note}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import STEPS, build_job_tree, report_text

    folder = args.dir or tempfile.mkdtemp(prefix="csfast-demo-")
    show = not args.quiet and sys.stderr.isatty()

    def progress(step: int, title: str) -> None:
        if show:
            sys.stderr.write(f"\r\033[K  [{step}/{STEPS}] {title} ...")
            sys.stderr.flush()

    try:
        report = build_job_tree(folder, rows=args.rows, seed=args.seed, progress=progress)
    finally:
        if show:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    print("\n".join(report_text(report)))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import files
    from .tasks import open_table

    read_options: dict[str, Any] = {}
    write_options: dict[str, Any] = {}
    src_format = args.src_format
    dst_format = "csdat" if args.csdat else args.dst_format
    from_star = src_format == "star" or (
        not src_format and not args.input.endswith(".csg") and files.format_of(args.input) == "star"
    )
    if args.micrograph_shape and not from_star:
        raise CsArgumentError("--micrograph-shape applies to .star input only")
    if args.micrograph_shape:
        read_options["micrograph_shape"] = tuple(args.micrograph_shape)
    if from_star and args.no_flip_y:
        read_options["flip_y"] = False
    out_format = dst_format or files.format_of(args.output)
    if out_format == "star" and args.no_flip_y:
        write_options["flip_y"] = False
    if out_format == "csdat" and args.no_compress:
        write_options["compression"] = None
    if args.image_suffix is not None:
        if out_format != "star":
            raise CsArgumentError("--image-suffix applies to .star output only")
        write_options["image_suffix"] = args.image_suffix
    t0 = time.perf_counter()
    ds = open_table(args.input, src_format, **read_options)
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        left = files.write(ds, args.output, cast(files.Format, out_format), **write_options)
    t2 = time.perf_counter()
    for w in caught:
        print(f"csfast convert: warning: {w.message}", file=sys.stderr)
    print(
        f"read {len(ds):,} rows x {len(ds.fields())} fields from {args.input} in "
        f"{1000 * (t1 - t0):.0f} ms; wrote {args.output} ({out_format}) in "
        f"{1000 * (t2 - t1):.0f} ms"
    )
    if left:
        print(
            f"not written ({out_format} has no place for them): {', '.join(left)}", file=sys.stderr
        )
    return 0


# ------------------------------------------------------------- the daily chores
# union, filter, fields, split, sets: the work is in csfast.tasks; these
# functions parse, show progress and print the counts.


class _Progress:
    """A progress line on stderr for a command that runs over about a second.

    Shown only on a terminal, without --quiet, and when tqdm (the
    ``csfast[progress]`` extra) is installed; otherwise calls are ignored. A
    thread draws it, so a long step keeps its elapsed time moving.
    """

    DELAY = 1.0

    def __init__(self, args: argparse.Namespace):
        self.state = (0, 1, "")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if getattr(args, "quiet", False) or not sys.stderr.isatty():
            return
        if importlib.util.find_spec("tqdm") is None:
            return
        self._thread = threading.Thread(target=self._draw, daemon=True)

    def __call__(self, done: int, total: int, what: str) -> None:
        self.state = (done, total, what)

    def __enter__(self) -> _Progress:
        self._start = time.time()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _draw(self) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

        if self._stop.wait(self.DELAY):
            return
        done, total, what = self.state
        bar = tqdm(
            total=total,
            initial=done,
            desc=what,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}: {n}/{total} [{elapsed}]",
        )
        bar.start_t = self._start  # elapsed time of the command, not of the bar
        try:
            while True:
                done, total, what = self.state
                bar.total, bar.n = total, done
                bar.set_description_str(what, refresh=False)
                bar.refresh()
                if self._stop.wait(0.2):
                    break
        finally:
            bar.close()


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def cmd_union(args: argparse.Namespace) -> int:
    from .tasks import union_files

    if not args.output:
        raise CsArgumentError("-o OUT.cs is required")
    t0 = time.perf_counter()
    with _Progress(args) as progress:
        r = union_files(args.files, args.output, progress=progress)
    counts = ", ".join(f"{p} {n:,}" for p, n in zip(args.files, r.rows_in, strict=True))
    print(
        f"union on uid (first occurrence wins): {_plural(r.rows, 'row')} from "
        f"{sum(r.rows_in):,} ({counts}); {sum(r.rows_in) - r.rows:,} repeats dropped"
    )
    if r.dropped_fields:
        print(f"fields not in every file, left out: {', '.join(r.dropped_fields)}")
    print(f"wrote {args.output} in {time_text(time.perf_counter() - t0)}")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    from .tasks import filter_file

    t0 = time.perf_counter()
    with _Progress(args) as progress:
        r = filter_file(
            args.input,
            args.output,
            args.where or (),
            uids=args.uids,
            invert=args.invert,
            progress=progress,
        )
    for text, n in r.counts:
        print(f"  {text}: {n:,} of {r.rows_in:,} rows")
    kept = "kept (inverted)" if args.invert else "kept"
    print(
        f"{kept} {r.rows:,} of {r.rows_in:,} rows; wrote {args.output} in "
        f"{time_text(time.perf_counter() - t0)}"
    )
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    from .tasks import fields_file

    keep = _patterns(args.keep) if args.keep is not None else None
    drop = _patterns(args.drop) if args.drop is not None else []
    t0 = time.perf_counter()
    with _Progress(args) as progress:
        r = fields_file(args.input, args.output, keep, drop, progress=progress)
    results = list(dict.fromkeys(f.split("/", 1)[0] for f in r.fields if f != "uid"))
    print(
        f"kept {len(r.fields)} of {r.fields_in} fields ({', '.join(results) or 'uid only'}), "
        f"{_plural(r.rows, 'row')}; wrote {args.output} in {time_text(time.perf_counter() - t0)}"
    )
    return 0


def _patterns(values: Sequence[str]) -> list[str]:
    """Comma-separated patterns, from one or several occurrences of an option."""
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if not out:
        raise CsArgumentError("empty pattern list")
    return out


def _print_parts(written, folder: str, seconds: float) -> None:
    width = max((len(os.path.basename(w.path)) for w in written), default=0)
    for w in written:
        label = f"  {w.label}" if w.label else ""
        print(f"  {os.path.basename(w.path):<{width}}  {w.rows:>12,}{label}")
    total = sum(w.rows for w in written)
    print(
        f"wrote {_plural(len(written), 'file')} ({total:,} rows) to {folder} "
        f"in {time_text(seconds)}"
    )


def cmd_split(args: argparse.Namespace) -> int:
    from .tasks import split_file

    t0 = time.perf_counter()
    with _Progress(args) as progress:
        written = split_file(
            args.input,
            args.output,
            by=args.by,
            batches=args.batches,
            seed=args.random,
            progress=progress,
        )
    _print_parts(written, args.output, time.perf_counter() - t0)
    return 0


def cmd_sets(args: argparse.Namespace) -> int:
    from .tasks import sets_files

    ops = (
        ["intersect", "subtract"]
        if args.both
        else ["intersect"]
        if args.intersect
        else ["subtract"]
    )
    t0 = time.perf_counter()
    with _Progress(args) as progress:
        written = sets_files(
            args.a, args.b, args.output, ops, args.on.split(","), progress=progress
        )
    _print_parts(written, args.output, time.perf_counter() - t0)
    return 0


def format_group_info(path: str) -> str:
    """The text `csfast info` prints for a result group's .csg."""
    from .tasks import group_info

    gi = group_info(path)
    g = gi.group
    lines = [
        path,
        f"  group {g.label} ({g.item_type}), {_plural(g.num_items, 'item')}, "
        f"{_plural(len(g.results), 'result')}",
    ]
    rows = [("result", "type", "kind", "version", "rows", "file")]
    for r in g.results.values():
        for k, (v, meta) in enumerate(sorted(r.versions.items(), reverse=True)):
            m = gi.files[meta]
            kind = "passthrough" if r.passthrough else ("final" if k == 0 else "")
            shown = os.path.relpath(meta, os.path.dirname(os.path.abspath(path)))
            rows.append(
                (
                    r.name if k == 0 else "",
                    r.result_type if k == 0 else "",
                    kind,
                    "" if r.passthrough else str(v),
                    f"{m.rows:,}" if m.rows is not None else "?",
                    shown + (f"  ({m.problem})" if m.problem else ""),
                )
            )
    lines += columns_text(rows, right=(4,))
    bad = [
        m
        for m in gi.files.values()
        if m.rows is not None
        and any(
            meta == m.path and r.num_items and m.rows != r.num_items
            for r in g.results.values()
            for meta in r.versions.values()
        )
    ]
    if bad:
        lines.append(f"  note: {len(bad)} file(s) hold a row count other than the .csg's num_items")
    return "\n".join(lines)


def _chore_parser(
    sub, name: str, help: str, description: str, inputs: Sequence[str], output: str
) -> argparse.ArgumentParser:
    """A chore's parser: its inputs (.cs files or .csg groups), -o, --quiet."""
    p = sub.add_parser(name, help=help, description=description)
    for dest in inputs:
        if dest == "files":
            p.add_argument("files", nargs="+", metavar="FILE", help=".cs files or .csg groups")
        else:
            p.add_argument(
                dest,
                metavar=dest.upper() if len(dest) == 1 else "IN",
                help=".cs file or .csg group",
            )
    where = "folder (created if missing)" if output == "DIR" else "file (written atomically)"
    p.add_argument("-o", "--output", metavar=output, required=True, help=f"output {where}")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def add_chore_commands(sub) -> None:
    """The parsers of union, filter, fields, split and sets."""
    p = _chore_parser(
        sub,
        "union",
        "rows of every file, first occurrence of each uid wins",
        "Union on uid: the rows of every file in order, keeping the first row "
        "that holds each uid and dropping later repeats. Columns are the fields "
        "every file has.",
        ["files"],
        "OUT.cs",
    )
    p.set_defaults(func=cmd_union)

    p = _chore_parser(
        sub,
        "filter",
        "keep the rows that pass conditions or a uid list",
        "Keep the rows that pass every --where condition and, with --uids, "
        "whose uid is listed (or, with --invert, every other row). A condition "
        "is 'FIELD OP VALUE', OP one of: in, not in, ==, !=, <, <=, >, >=; a "
        "list after in is comma-separated; values are read by the field's "
        "dtype; strings compare as UTF-8 bytes.",
        ["input"],
        "OUT.cs",
    )
    p.add_argument(
        "--where",
        action="append",
        metavar="COND",
        help='e.g. "alignments3D/class in 0,3" or "ctf/df1_A < 30000" (repeat: all must hold)',
    )
    p.add_argument(
        "--uids",
        metavar="FILE",
        help="keep rows whose uid is listed: .npy integer array, .cs file, "
        "or text with one uid per line",
    )
    p.add_argument("--invert", action="store_true", help="keep the rows that do not pass")
    p.set_defaults(func=cmd_filter)

    p = _chore_parser(
        sub,
        "fields",
        "keep or drop fields (glob patterns)",
        "Write a table with only some of its fields: those matching a --keep "
        "pattern (all if none given), minus those matching a --drop pattern. A "
        "pattern is a glob over result names (blob, alignments_class_*) or "
        "field names (ctf/tilt_A, */psize_A); uid is always kept. Reads only "
        "the kept columns: the way to shrink 100-class headers other readers "
        "cannot open.",
        ["input"],
        "OUT.cs",
    )
    p.add_argument(
        "--keep",
        action="append",
        metavar="PATTERNS",
        help="comma-separated patterns of results or fields to keep",
    )
    p.add_argument(
        "--drop",
        action="append",
        metavar="PATTERNS",
        help="comma-separated patterns of results or fields to drop",
    )
    p.set_defaults(func=cmd_fields)

    p = _chore_parser(
        sub,
        "split",
        "split a table by a field's values or into batches",
        "Split a table into files in DIR. --by FIELD: one file per distinct "
        "value, IN-STEM_<k>_<value>.cs, k counting from 1 in order of first "
        "appearance, the value reduced to letters, digits, '.', '_' and '-'. "
        "--batches N: N files of near-equal size, IN-STEM_batch_<k>.cs, "
        "consecutive rows, or rows dealt at random with --random SEED. "
        "IN-STEM_split.json lists each file with its rows and exact value. Rows "
        "keep their input order; all files appear together or none.",
        ["input"],
        "DIR",
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--by", metavar="FIELD", help="a 1-D field, e.g. location/micrograph_path")
    how.add_argument("--batches", type=int, metavar="N", help="number of parts")
    p.add_argument(
        "--random",
        type=int,
        metavar="SEED",
        help="with --batches: deal rows to batches at random (seeded)",
    )
    p.set_defaults(func=cmd_split)

    p = _chore_parser(
        sub,
        "sets",
        "intersect or subtract two tables (Particle Sets Tool)",
        "Compare tables A and B as cryoSPARC's Particle Sets Tool does. Rows "
        "match when their --on fields are equal. --intersect writes "
        "intersect_A.cs (A's rows that match B, with A's fields) and "
        "intersect_B.cs (B's rows that match A, with B's fields); --subtract "
        "writes A_minus_B.cs and B_minus_A.cs (each side's rows that match "
        "nothing on the other, with its own fields); --both writes all four. "
        "Rows keep their input order.",
        ["a", "b"],
        "DIR",
    )
    op = p.add_mutually_exclusive_group(required=True)
    op.add_argument("--intersect", action="store_true", help="rows in both")
    op.add_argument("--subtract", action="store_true", help="rows in one only")
    op.add_argument("--both", action="store_true", help="intersect and subtract")
    p.add_argument(
        "--on",
        default="uid",
        metavar="FIELDS",
        help="uid (default), or comma-separated fields such as blob/path,blob/idx "
        "(the image: for tables of the same particles with other uids)",
    )
    p.set_defaults(func=cmd_sets)


def _oserror(e: Exception, path: str) -> str:
    if isinstance(e, OSError) and not isinstance(e, CsError):
        return f"{path}: {e.strerror or e}"
    return _one_line(str(e))


def _one_line(text: str) -> str:
    """A message on one line (an InputError lists one problem a line)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csfast",
        description="Fast cryoSPARC .cs datasets: inspect, join, append and assemble tables "
        "of particles, exposures and volumes keyed by 64-bit uids.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "info",
        help="rows, size, format version and fields of .cs files",
        description="Print, for each .cs file, its rows, size on disk, npy "
        "version and fields grouped by result, with dtype and "
        "shape. Reads only the header: instant at any size.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "load",
        help="one table from a result group (.csg) or a job's output or input",
        description="Join the results of an output group into one table on "
        "uid (each metafile opened once); print it, or write it "
        "with -o. The group is a .csg file, or an output of a job "
        "of a cryoSPARC project (PROJECT/J42 particles); --input "
        "assembles a job's input as the job read it (PROJECT/J42 "
        "--input particles). Only headers and uids are read "
        "before writing.",
    )
    p.add_argument(
        "source",
        metavar="GROUP.csg|JOB",
        help="a .csg file, or a job folder of a project (PROJECT/J42)",
    )
    p.add_argument(
        "name", nargs="?", metavar="OUTPUT", help="with a job folder: the output group to load"
    )
    p.add_argument(
        "--input", metavar="INPUT", help="with a job folder: assemble this input group instead"
    )
    p.add_argument(
        "--slots",
        nargs="+",
        metavar="RESULT",
        help="results (of an input: slots) to load (default: all of them)",
    )
    p.add_argument(
        "--passthrough",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also load the group's passthrough results (default: yes without --slots, no with it)",
    )
    p.add_argument("--version", type=int, help="version to load (default: the final one)")
    p.add_argument(
        "--allow-drop",
        action="store_true",
        help="--input: load even if a table covers only part of a connection's "
        "items (they drop out)",
    )
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser(
        "project",
        help="the jobs of a cryoSPARC project folder",
        description="List the jobs of a cryoSPARC project folder (one folder "
        "per job with its job.json, v4 or v5 document): type, "
        "status, input groups with their connections (overrides "
        "as slot <- result, passthrough results after +) and "
        "output groups (item type, rows, results and versions). "
        "Reads the job documents only.",
    )
    p.add_argument("path", metavar="PATH", help="the project folder")
    p.set_defaults(func=cmd_project)

    p = sub.add_parser(
        "join",
        help="inner join of .cs files on uid",
        description="Inner join of .cs tables on uid: rows whose uid is in "
        "every file, in the first file's order; a field in several "
        "files comes from the last one. Tables that share no uid "
        "are an error.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser(
        "append",
        help="concatenate .cs files (uids checked)",
        description="Rows of every file in order; columns are the fields "
        "every file has. A uid in two rows is an error unless "
        "--repeat-allowed.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.add_argument(
        "--repeat-allowed", action="store_true", help="allow the same uid in several rows"
    )
    p.add_argument(
        "--dedupe",
        action="store_true",
        help="keep the first row of each uid and drop its repeats (as union)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_append)

    p = sub.add_parser(
        "convert",
        help="convert between .cs, CSDAT, Parquet, Arrow and STAR",
        description="Convert a table between formats, chosen by extension: "
        ".cs (numpy; CSDAT is recognized on input by its magic), "
        ".csdat/.csl (cryosparc-tools stream), .parquet, "
        ".arrow/.feather, .star (RELION 3.1+). Every field and "
        "dtype survives .cs <-> Parquet/Arrow/CSDAT; fields STAR "
        "cannot hold are listed on stderr.",
    )
    p.add_argument(
        "input",
        metavar="IN",
        help="input file, or a result group's .csg (its results joined on uid)",
    )
    p.add_argument("output", metavar="OUT", help="output file (written atomically)")
    formats = ["cs", "csdat", "parquet", "arrow", "star"]
    p.add_argument(
        "--from",
        dest="src_format",
        choices=formats,
        help="input format (default: from the extension)",
    )
    p.add_argument(
        "--to",
        dest="dst_format",
        choices=formats,
        help="output format (default: from the extension)",
    )
    p.add_argument("--csdat", action="store_true", help="write CSDAT whatever the extension")
    p.add_argument(
        "--no-compress", action="store_true", help="CSDAT output without LZ4 compression"
    )
    p.add_argument(
        "--micrograph-shape",
        nargs=2,
        type=int,
        metavar=("NY", "NX"),
        help="STAR input: micrograph size in pixels, to turn coordinates into "
        "location/center_*_frac",
    )
    p.add_argument(
        "--no-flip-y",
        action="store_true",
        help="STAR: do not flip y between cryoSPARC and RELION coordinates",
    )
    p.add_argument(
        "--image-suffix",
        metavar="SUFFIX",
        help="STAR output: give image stack paths this suffix in rlnImageName "
        "(e.g. .mrcs, which RELION expects for stacks)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "demo",
        help="build a synthetic job tree and assemble inputs from it",
        description="Build a realistic cryo-EM job tree with synthetic data in "
        "a folder (import, extract, downsample, 2D classification, "
        "selection, 3D refinement, local resolution), each job "
        "writing result groups with passthrough and .csg files; "
        "assemble the refinement's input with a blob override, "
        "and print what was done, with timings.",
    )
    p.add_argument("--rows", type=_count, default=200_000, help="particles (default 200000)")
    p.add_argument("--dir", help="folder to write into (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_demo)
    add_chore_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # What a command matches beyond the memory budget spills on its output's disk.
    output = getattr(args, "output", None) or getattr(args, "dir", None)
    try:
        with spill_folder(beside(output)):
            return args.func(args)
    except CsError as e:
        print(f"csfast {args.command}: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"csfast {args.command}: {where}{_one_line(str(e.strerror or e))}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional extra (pandas, pyarrow, starfile) is missing
        print(
            f"csfast {args.command}: {e}; install the extra it belongs to, e.g. "
            f"pip install 'csfast[arrow]'",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
