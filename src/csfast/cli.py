"""The `csfast` command: parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

import numpy as np

from .errors import CsError, CsUidError
from .format import CsInfo, inspect


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def format_info(info: CsInfo) -> str:
    """The text `csfast info` prints for one .cs file."""
    summary = (f"{info.row_size} bytes/row, {_size(info.file_size)} on disk, "
               f"npy {info.version[0]}.{info.version[1]}, data at byte {info.data_offset}")
    return _format_table(info.path, info.rows, info.fields, summary)


def _format_table(path: str, rows: int, fields: list[tuple[str, str, tuple[int, ...]]],
                  summary: str) -> str:
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


def _describe(path: str) -> str:
    """format_info of a .cs file, or the same facts from a CSDAT stream's header."""
    from . import csdat

    if not csdat.is_csdat(path):
        return format_info(inspect(path))
    header = csdat.read_header(path)
    fields = [(n, "string" if d == "|O" else d, s) for n, d, s in header.fields]
    summary = (f"{_size(os.path.getsize(path))} on disk, CSDAT stream "
               f"(compression: {header.compression or 'none'})")
    return _format_table(path, header.rows, fields, summary)


def cmd_info(args: argparse.Namespace) -> int:
    status, shown = 0, 0
    for path in args.files:
        try:
            text = _describe(path)
        except (CsError, OSError) as e:
            print(f"csfast info: {_oserror(e, path)}", file=sys.stderr)
            status = 1
            continue
        if shown:  # a blank line between files, not before the first one shown
            print()
        shown += 1
        print(text)
    return status


def _ms(seconds: float) -> str:
    if seconds < 0.01:
        return f"{1000 * seconds:.1f} ms"
    return f"{1000 * seconds:,.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _table_size(ds) -> str:
    rows, fields = len(ds), len(ds.fields())
    return f"{rows:,} row{'s' if rows != 1 else ''} x {fields} field{'s' if fields != 1 else ''}"


def _write(ds, path: str) -> str:
    t0 = time.perf_counter()
    ds.save(path)
    return f"wrote {path} ({_size(os.path.getsize(path))}) in {_ms(time.perf_counter() - t0)}"


def _finish(ds, args: argparse.Namespace, summary: str) -> None:
    print(summary)
    if args.output:
        print(_write(ds, args.output))
    else:
        print(ds)


def cmd_load(args: argparse.Namespace) -> int:
    from .groups import ResultGroup

    t0 = time.perf_counter()
    group = ResultGroup.from_csg(args.group)
    passthrough = args.passthrough if args.passthrough is not None else args.slots is None
    ds = group.load(slots=args.slots, version=args.version, passthrough=passthrough)
    took = time.perf_counter() - t0
    _finish(ds, args, f"{group.label}: {_table_size(ds)} ({', '.join(ds.prefixes())}) "
                      f"in {_ms(took)}")
    return 0


def _load_tables(paths: Sequence[str]):
    from .dataset import Dataset

    return [Dataset.load(p) for p in paths]


def cmd_join(args: argparse.Namespace) -> int:
    from .dataset import Dataset

    tables = _load_tables(args.files)
    t0 = time.perf_counter()
    ds = Dataset.innerjoin_many(*tables) if len(tables) > 1 else tables[0]
    took = time.perf_counter() - t0
    if len(ds) == 0 and all(len(t) for t in tables) and len(tables) > 1:
        raise CsUidError(f"{' and '.join(args.files)} share no uid: the tables describe "
                         "different items")
    counts = ", ".join(f"{p} {len(t):,}" for p, t in zip(args.files, tables, strict=True))
    _finish(ds, args, f"joined on uid in {_ms(took)}: {_table_size(ds)} (rows in: {counts})")
    return 0


def cmd_append(args: argparse.Namespace) -> int:
    from .dataset import Dataset

    tables = _load_tables(args.files)
    t0 = time.perf_counter()
    ds = Dataset.append_many(*tables, repeat_allowed=args.repeat_allowed)
    took = time.perf_counter() - t0
    dropped = sorted({f for t in tables for f in t.fields()} - set(ds.fields()))
    shown = ", ".join(dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
    note = f"; fields not in every file, left out: {shown}" if dropped else ""
    _finish(ds, args, f"appended {len(tables)} files in {_ms(took)}: {_table_size(ds)}{note}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import STEPS, build_job_tree

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
    print("\n".join(format_demo(report)))
    return 0


def _results_text(group, passthrough: bool) -> str:
    names = [n for n, r in group.results.items() if r.passthrough == passthrough]
    if passthrough:
        return "+ " + ", ".join(names) if names else ""
    versions = sorted({v for n in names for v in group.results[n].versions})
    shown = f" (versions {', '.join(map(str, versions))})" if len(versions) > 1 else ""
    return ", ".join(names) + shown


def _columns(rows: list[tuple[str, ...]], right: tuple[int, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]


def format_demo(report) -> list[str]:
    """The text `csfast demo` prints for a DemoReport."""
    ref, loc = report.refinement, report.local_resolution
    files = [f for f in os.listdir(report.folder) if f.endswith((".cs", ".csg"))]
    total = sum(os.path.getsize(os.path.join(report.folder, f)) for f in files)
    out = [
        f"csfast demo: a cryo-EM job tree of {report.rows:,} synthetic particles",
        f"written to {report.folder}",
        "",
        "Each job loads its input with Input(spec).load() and writes its output groups with",
        "write_output(): new results in J<n>_<version>_<name>.cs, the results it only carried",
        "along in J<n>_passthrough_<name>.cs (+ below), and J<n>_<name>.csg naming them all.",
        "",
    ]
    rows = [("job", "what it does", "time", "output group", "items", "results")]
    for step in report.jobs:
        for k, g in enumerate(step.outputs):
            first = k == 0
            rows.append((step.job if first else "", step.title if first else "",
                         _ms(step.seconds) if first else "", g.label, f"{g.num_items:,}",
                         _results_text(g, False)))
            if _results_text(g, True):
                rows.append(("", "", "", "", "", _results_text(g, True)))
    out += _columns(rows, right=(2, 4))

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
        f"  inp.check()      {_problems(ref)}, in {_ms(ref.check_seconds)} "
        "(reads only .cs headers)",
        f"  inp.load()       {_table_size(t)} in {_ms(ref.load_seconds)} "
        f"({ref.metafiles} metafiles, each opened once)",
        f"                   blob: {_blob_text(t)} on every row, from {over.group}",
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
    out.append(f"  inp.load()       {_table_size(v)}, keeping the uid of "
               f"{lconn.group.label}'s item:")
    out += [f"                   {s.name + '/path':<16} {v[s.name + '/path'][0]}"
            for s in loc.input.spec.slots]
    j6 = report.jobs[[s.job for s in report.jobs].index(ref.job)].outputs[0]
    main = os.path.join(report.folder, os.path.basename(j6.results["alignments3D"].metafile))
    out += [
        "",
        f"ResultGroup.from_csg('{os.path.basename(j6.path)}').load() reads the refinement's "
        "particles back:",
        f"  {_table_size(report.reloaded)} in {_ms(report.reload_seconds)} "
        "(its final version joined with its passthrough file)",
        "",
        f"Done: {len(files)} files, {_size(total)}, in {_ms(report.seconds)}. Look at them with:",
        f"  csfast info {main}",
        f"  csfast load {j6.path} -o particles.cs",
        f"and remove them with: rm -r {report.folder}",
    ]
    return out


def _blob_text(ds) -> str:
    """The image sizes and pixel sizes in a table's blob, e.g. '256 x 256 px, 0.83 A/px'."""
    shapes = sorted({tuple(x) for x in np.unique(ds["blob/shape"], axis=0).tolist()})
    psizes = sorted({round(float(x), 2) for x in np.unique(ds["blob/psize_A"])})
    return (", ".join(f"{a} x {b} px" for a, b in shapes) + ", "
            + ", ".join(f"{x} A/px" for x in psizes))


def _problems(assembly) -> str:
    return "[]: no problems" if not assembly.problems else "; ".join(assembly.problems)


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import files

    read_options, write_options = {}, {}
    src_format = args.src_format
    dst_format = "csdat" if args.csdat else args.dst_format
    from_star = (src_format or files.format_of(args.input)) == "star"
    if args.micrograph_shape and not from_star:
        raise CsError("--micrograph-shape applies to .star input only")
    if args.micrograph_shape:
        read_options["micrograph_shape"] = tuple(args.micrograph_shape)
    if from_star and args.no_flip_y:
        read_options["flip_y"] = False
    out_format = dst_format or files.format_of(args.output)
    if out_format == "star" and args.no_flip_y:
        write_options["flip_y"] = False
    if out_format == "csdat" and args.no_compress:
        write_options["compression"] = None
    t0 = time.perf_counter()
    ds = files.read(args.input, src_format, **read_options)
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        left = files.write(ds, args.output, out_format, **write_options)
    t2 = time.perf_counter()
    for w in caught:
        print(f"csfast convert: warning: {w.message}", file=sys.stderr)
    print(f"read {len(ds):,} rows x {len(ds.fields())} fields from {args.input} in "
          f"{1000 * (t1 - t0):.0f} ms; wrote {args.output} ({out_format}) in "
          f"{1000 * (t2 - t1):.0f} ms")
    if left:
        print(f"not written ({out_format} has no place for them): {', '.join(left)}",
              file=sys.stderr)
    return 0


def _oserror(e: Exception, path: str) -> str:
    if isinstance(e, OSError) and not isinstance(e, CsError):
        return f"{path}: {e.strerror or e}"
    return str(e)


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

    p = sub.add_parser("info", help="rows, size, format version and fields of .cs files",
                       description="Print, for each .cs file, its rows, size on disk, npy "
                                   "version and fields grouped by result, with dtype and "
                                   "shape. Reads only the header: instant at any size.")
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("load", help="one table from a result group (.csg)",
                       description="Join the results of an output group, described by its "
                                   ".csg file, into one table on uid (each metafile opened "
                                   "once); print it, or write it with -o.")
    p.add_argument("group", metavar="GROUP.csg", help="the group's .csg file")
    p.add_argument("--slots", nargs="+", metavar="RESULT",
                   help="results to load (default: all of them)")
    p.add_argument("--passthrough", action=argparse.BooleanOptionalAction, default=None,
                   help="also load the group's passthrough results (default: yes without "
                        "--slots, no with it)")
    p.add_argument("--version", type=int, help="version to load (default: the final one)")
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("join", help="inner join of .cs files on uid",
                       description="Inner join of .cs tables on uid: rows whose uid is in "
                                   "every file, in the first file's order; a field in several "
                                   "files comes from the last one. Tables that share no uid "
                                   "are an error.")
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("append", help="concatenate .cs files (uids checked)",
                       description="Rows of every file in order; columns are the fields "
                                   "every file has. A uid in two rows is an error unless "
                                   "--repeat-allowed.")
    p.add_argument("files", nargs="+", metavar="FILE", help=".cs files")
    p.add_argument("--repeat-allowed", action="store_true",
                   help="allow the same uid in several rows")
    p.add_argument("-o", "--output", metavar="OUT.cs", help="write the table here (atomic)")
    p.set_defaults(func=cmd_append)

    p = sub.add_parser("convert", help="convert between .cs, CSDAT, Parquet, Arrow and STAR",
                       description="Convert a table between formats, chosen by extension: "
                                   ".cs (numpy; CSDAT is recognized on input by its magic), "
                                   ".csdat/.csl (cryosparc-tools stream), .parquet, "
                                   ".arrow/.feather, .star (RELION 3.1+). Every field and "
                                   "dtype survives .cs <-> Parquet/Arrow/CSDAT; fields STAR "
                                   "cannot hold are listed on stderr.")
    p.add_argument("input", metavar="IN", help="input file")
    p.add_argument("output", metavar="OUT", help="output file (written atomically)")
    formats = ["cs", "csdat", "parquet", "arrow", "star"]
    p.add_argument("--from", dest="src_format", choices=formats,
                   help="input format (default: from the extension)")
    p.add_argument("--to", dest="dst_format", choices=formats,
                   help="output format (default: from the extension)")
    p.add_argument("--csdat", action="store_true", help="write CSDAT whatever the extension")
    p.add_argument("--no-compress", action="store_true",
                   help="CSDAT output without LZ4 compression")
    p.add_argument("--micrograph-shape", nargs=2, type=int, metavar=("NY", "NX"),
                   help="STAR input: micrograph size in pixels, to turn coordinates into "
                        "location/center_*_frac")
    p.add_argument("--no-flip-y", action="store_true",
                   help="STAR: do not flip y between cryoSPARC and RELION coordinates")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="build a synthetic job tree and assemble inputs from it",
                       description="Build a realistic cryo-EM job tree with synthetic data in "
                                   "a folder (import, extract, downsample, 2D classification, "
                                   "selection, 3D refinement, local resolution), each job "
                                   "writing result groups with passthrough and .csg files; "
                                   "assemble the refinement's input with a blob override, "
                                   "and print what was done, with timings.")
    p.add_argument("--rows", type=_count, default=200_000, help="particles (default 200000)")
    p.add_argument("--dir", help="folder to write into (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CsError as e:
        print(f"csfast {args.command}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"csfast {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional extra (pandas, pyarrow, starfile) is missing
        print(f"csfast {args.command}: {e}; install the extra it belongs to, e.g. "
              f"pip install 'csfast[arrow]'", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
