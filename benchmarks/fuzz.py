"""A longer run of the .cs and .csg fuzzers of tests/test_fuzz.py.

    python benchmarks/fuzz.py --cases 10000 --seed 1          # both readers
    python benchmarks/fuzz.py --kind csg --cases 50000 --seed 7

Each case is a small valid file changed by 1 to 4 random mutations (bit
flips, byte changes, cuts, insertions, duplicated byte ranges, numbers made
huge; for .csg also YAML syntax, aliases, tags, odd dates and numbers); see
tests/fuzzing.py. Prints the outcomes per kind, the time, the slowest case
and the peak memory of the process. Exits non-zero, naming the seed and
case, at the first outcome that is neither a consistent read nor a CsError.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", choices=["cs", "csg", "both"], default="both")
    args = parser.parse_args()
    kinds = ["cs", "csg"] if args.kind == "both" else [args.kind]
    failed = False
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"csfast-fuzz-{kind}-") as folder:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                outcomes, done, slowest = run(kind, args.cases, args.seed, Path(folder))
            except AssertionError as e:
                print(f"{kind}: BUG: {e}")
                failed = True
                continue
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f".{kind}: {done:,} cases in {took:.1f} s, {cpu:.1f} s of CPU "
            f"({1000 * cpu / done:.2f} ms a case; slowest case {1000 * slowest:.0f} ms "
            f"wall), seed {args.seed}"
        )
        for outcome, n in outcomes.most_common():
            print(f"  {n:>8,}  {outcome}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process: {peak:.0f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
