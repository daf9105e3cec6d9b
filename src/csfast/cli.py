"""The `csfast` command: parses arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence

from .errors import CsError
from .format import CsInfo, inspect


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def format_info(info: CsInfo) -> str:
    """The text `csfast info` prints for one file."""
    fields = info.fields
    lines = [
        f"{info.path}",
        f"  {info.rows:,} rows x {len(fields)} fields, {info.row_size} bytes/row, "
        f"{_size(info.file_size)} on disk, npy {info.version[0]}.{info.version[1]}, "
        f"data at byte {info.data_offset}",
    ]
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


def cmd_info(args: argparse.Namespace) -> int:
    status, shown = 0, 0
    for path in args.files:
        try:
            info = inspect(path)
        except (CsError, OSError) as e:
            print(f"csfast info: {_oserror(e, path)}", file=sys.stderr)
            status = 1
            continue
        if shown:  # a blank line between files, not before the first one shown
            print()
        shown += 1
        print(format_info(info))
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from .dataset import Dataset
    from .synthetic import particles

    folder = args.dir or tempfile.mkdtemp(prefix="csfast-demo-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "J1_particles.cs")
    t0 = time.perf_counter()
    particles(args.rows, seed=args.seed).save(path)
    t1 = time.perf_counter()
    ds = Dataset.load(path)
    t2 = time.perf_counter()
    print(f"wrote {args.rows:,} particles to {path} in {1000 * (t1 - t0):.0f} ms")
    print(f"opened it in {1000 * (t2 - t1):.2f} ms (memory-mapped)\n")
    print(format_info(inspect(path)))
    print(f"\n{ds!r}")
    return 0


def _oserror(e: Exception, path: str) -> str:
    if isinstance(e, OSError) and not isinstance(e, CsError):
        return f"{path}: {e.strerror or e}"
    return str(e)


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

    p = sub.add_parser("demo", help="write a realistic particle stack and inspect it",
                       description="Write a synthetic particle stack (blob, ctf, location, "
                                   "pick_stats) to a folder and inspect it.")
    p.add_argument("--rows", type=int, default=200_000, help="particles (default 200000)")
    p.add_argument("--dir", help="folder to write into (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"csfast {args.command}: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
