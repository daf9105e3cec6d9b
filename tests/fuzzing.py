"""Mutation fuzzing of the .cs and .csg readers, shared by tests/test_fuzz.py
(a few seconds, in every run) and benchmarks/fuzz.py (longer runs).

A case is a valid file changed by a few random mutations. Its outcome must
be a successful read that is consistent (every column readable, the rows
the header says, the bytes numpy reads) or a CsError; any other exception
escapes to the caller, a bug.
"""

from __future__ import annotations

import io
import os
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

import csfast
from csfast import CsError, Dataset
from csfast.groups import ResultGroup, write_output

# Values that make sizes and counts overflow or ask for the impossible.
HUGE = [
    b"0",
    b"1",
    b"255",
    b"65535",
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551616",
    b"99999999999999999999999999999",
    b"1" * 60,
    b"7" * 5000,
]
# Text a .csg mutation inserts: YAML's own syntax, and values that parse to
# something other than what the reader expects.
YAML_SNIPPETS = [
    b"&a ",
    b"*a",
    b"[",
    b"]",
    b"{",
    b"}",
    b"? ",
    b": ",
    b"- ",
    b"<<: ",
    b"!!binary ",
    b"!!python/object:os.system ",
    b".inf",
    b".nan",
    b"-1",
    b"2024-99-99 12:00:00",
    b"1e400",
    b"null",
    b"~",
    b"'",
    b'"',
    b"\t",
    b"\n  ",
    b"\x00",
    b"\xff",
    b"true",
    b"0x7fffffffffffffff",
    b"J1_",
    b">",
]


def mutate(data: bytes, rng: random.Random, snippets: list[bytes] = ()) -> bytes:
    """data after 1 to 4 random mutations: byte changes (mostly in the first
    200 bytes, where headers are), cuts, insertions, duplicated byte ranges,
    numbers replaced by huge ones, snippets inserted."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        n = len(out)
        if op < 0.2 and n:  # flip one bit
            i = rng.randrange(min(n, 200) if rng.random() < 0.7 else n)
            out[i] ^= 1 << rng.randrange(8)
        elif op < 0.3 and n:  # any byte value
            out[rng.randrange(n)] = rng.randrange(256)
        elif op < 0.4:  # cut the end
            del out[rng.randrange(n + 1) :]
        elif op < 0.5:  # insert random bytes
            i = rng.randrange(n + 1)
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.6 and n:  # duplicate a byte range, in place or elsewhere
            i = rng.randrange(n)
            piece = out[i : i + rng.randint(1, 64)]
            j = rng.choice([i, rng.randrange(n + 1)])
            out[j:j] = piece * rng.randint(1, 3)
        elif op < 0.6 + (0.25 if snippets else 0.4):  # a number becomes a huge one
            numbers = [m.span() for m in re.finditer(rb"\d+", bytes(out[:4096]))]
            if numbers:
                a, b = rng.choice(numbers)
                out[a:b] = rng.choice(HUGE)
        elif snippets:
            i = rng.randrange(n + 1)
            out[i:i] = rng.choice(snippets)
        elif n >= 12:  # the .npy header length field
            width = 2 if out[6:7] == b"\x01" else 4
            out[8 : 8 + width] = rng.randrange(256**width).to_bytes(width, "little")
    return bytes(out)


# ---------------------------------------------------------------------- .cs


def valid_cs_files() -> list[bytes]:
    """Small valid .cs files of several layouts: versions 1.0 to 3.0, sub-arrays,
    strings, big-endian, nested and zero-row tables."""
    rng = np.random.default_rng(0)
    wide = np.dtype(
        [
            ("uid", "<u8"),
            ("blob/path", "S7"),
            ("blob/shape", "<u4", (2,)),
            ("a/x", "<f8"),
            ("a/be", ">i4"),
            ("a/u", "<U2"),
            ("a/b", "?"),
        ]
    )
    nested = np.dtype([("uid", "<u8"), ("it's", [("x", "<f4", (2,)), ("y", "|S3")])])

    def table(dtype: np.dtype, n: int) -> np.ndarray:
        arr = np.frombuffer(
            rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).tobytes(), dtype=dtype
        ).copy()
        if "a/u" in dtype.names:
            arr["a/u"] = "é"
            arr["a/b"] = True
        return arr

    def save(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.lib.format.write_array(f, arr, version=version)
        return f.getvalue()

    return [
        save(table(wide, 6)),
        save(table(wide, 3), (2, 0)),
        save(table(wide, 0), (3, 0)),
        save(table(np.dtype([("€/x", "<u2"), ("uid", "<u8")]), 5), (3, 0)),
        save(table(nested, 4)),
    ]


def check_cs(path: Path, out: Path) -> str:
    """Read a .cs file every way csfast can; 'loaded' or the CsError's class name.

    A successful read must agree with numpy on the dtype, the row count and
    every byte of the data (numpy reads what it can; where it cannot, csfast
    must still return consistent columns).
    """
    try:
        info = csfast.inspect(path)
        for mapped in (True, False):
            ds = Dataset.load(path, mmap=mapped)
            assert len(ds) == info.rows
            for name in ds:
                col = ds[name]
                assert len(col) == info.rows
                col.tobytes()  # every byte of it is readable
            if len(ds):
                ds.take([len(ds) - 1, 0])[ds.fields()[0]]
        ds.save(out, fsync=False)
        assert sorted(Dataset.load(out).fields()) == sorted(ds.fields())
    except CsError as e:
        return type(e).__name__
    reference = _numpy_read(path)
    if reference is not None:
        assert reference.dtype == info.dtype and len(reference) == info.rows
        _, arr = csfast.format.map_array(path)
        assert arr.tobytes() == reference.tobytes()
    return "loaded"


def _numpy_read(path: Path) -> np.ndarray | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.load(path, allow_pickle=False, max_header_size=1 << 30)
    except Exception:  # numpy refuses some files csfast reads (e.g. "12L" in newer numpy)
        return None


# --------------------------------------------------------------------- .csg


def valid_csg_files(folder: Path) -> list[bytes]:
    """Two valid .csg files whose metafiles exist in folder: one written by
    write_output (versions, passthrough), one as cryoSPARC writes it."""
    rng = np.random.default_rng(1)
    n = 5
    ds = Dataset(n)
    ds["blob/idx"] = np.arange(n, dtype=np.uint32)
    ds["blob/path"] = np.array([b"a.mrc"] * n)
    ds["ctf/df1_A"] = rng.random(n).astype(np.float32)
    pt = Dataset({"uid": ds["uid"], "location/x": np.ones(n, np.float32)})
    write_output(
        folder, "J1", "particles", ds, "particle", ["blob"], passthrough=pt, validate=False
    )  # a few fields of each result are enough here
    group = write_output(
        folder, "J1", "particles", ds, "particle", ["blob", "ctf"], version=3, validate=False
    )
    written = Path(group.path).read_bytes()
    # cryoSPARC's layout (docs/formats.md): its key order, a timestamp with
    # microseconds, metafiles relative to the .csg, no versions
    results = {
        name: {"metafile": f">J1_{v}_particles.cs", "num_items": n, "type": f"particle.{name}"}
        for name, v in (("blob", "003"), ("ctf", "003"), ("location", "passthrough"))
    }
    cryosparc = (
        "created: 2024-05-01 12:00:00.000000\n"
        + yaml.safe_dump(
            {
                "group": {
                    "name": "particles",
                    "title": "Particles",
                    "type": "particle",
                    "description": "Particles refined",
                },
                "results": results,
                "version": "v4.4.1",
            },
            sort_keys=False,
        )
    ).encode()
    return [written, cryosparc]


def check_csg(path: Path, with_data: bool = True) -> str:
    """Read a .csg (and, with_data, the tables it names): 'loaded', 'missing
    metafile' (an OSError from the file system) or the CsError's class name.

    A group read must agree with PyYAML's safe loader on the same bytes on the
    group's name and type and the results' names.
    """
    try:
        group = ResultGroup.from_csg(path)
    except CsError as e:
        return type(e).__name__
    # The same parser (libyaml's and PyYAML's differ on odd input), PyYAML's
    # composer: no aliases or deep nesting here, from_csg refused them.
    doc = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert (group.name, group.item_type) == (str(doc["group"]["name"]), str(doc["group"]["type"]))
    assert list(group.results) == [str(k) for k in doc["results"]]
    if not with_data:
        return "loaded"
    try:
        table = group.load()
    except CsError as e:
        return "loaded, then " + type(e).__name__
    except OSError:
        return "loaded, then missing metafile"
    for name in table:
        assert len(table[name]) == len(table)
    return "loaded"


# ---------------------------------------------------------------------- runs


def run(
    kind: str, cases: int, seed: int, folder: Path, seconds: float | None = None
) -> tuple[Counter, int, float]:
    """Up to `cases` mutated files of kind "cs" or "csg" (stopping after
    `seconds`): (outcome counts, cases run, slowest case in seconds).
    An outcome that is neither a result nor a CsError raises, naming the seed
    and case so that the file can be rebuilt."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "cs":
        valid, snippets = valid_cs_files(), []
        path = folder / "fuzz.cs"
        check: Callable[[], str] = lambda: check_cs(path, folder / "out.cs")  # noqa: E731
    else:
        valid, snippets = valid_csg_files(folder), YAML_SNIPPETS
        path = folder / "J1_fuzz.csg"
        check = lambda: check_csg(path)  # noqa: E731
    outcomes: Counter = Counter()
    start = time.perf_counter()
    slowest = 0.0
    done = 0
    for case in range(cases):
        if seconds is not None and time.perf_counter() - start > seconds:
            break
        path.write_bytes(mutate(rng.choice(valid), rng, snippets))
        t0 = time.perf_counter()
        try:
            outcomes[check()] += 1
        except Exception as e:
            raise AssertionError(
                f"{kind} fuzz case {case} (seed {seed}): {type(e).__name__}: {e}"
            ) from e
        slowest = max(slowest, time.perf_counter() - t0)
        done += 1
    os.unlink(path)
    return outcomes, done, slowest
