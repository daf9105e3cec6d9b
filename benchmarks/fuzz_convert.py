"""Longer mutation-fuzzing runs of the converters' readers (CSDAT streams,
STAR files, Arrow / Parquet schema records): the cases of
tests/test_fuzz_convert.py, many more of them.

    python benchmarks/fuzz_convert.py --cases 10000 --seed 1
    python benchmarks/fuzz_convert.py --kinds star --cases 3000

Prints, per kind, the cases run, the outcomes (read, or the CsError class),
the time and the slowest case. Stops at the first outcome that is neither
(a bug), naming the kind, seed and case. One process, one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_convert import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="cases per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kinds", default="csdat,star,record", help="comma-separated: csdat, star, record"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            start = time.perf_counter()
            outcomes, done, slowest = run(kind, args.cases, args.seed, Path(tmp) / kind)
            took = time.perf_counter() - start
            counts = ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
            print(
                f"{kind}: {done} cases in {took:.1f} s (slowest {slowest * 1000:.0f} ms): {counts}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
