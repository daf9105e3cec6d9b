"""Mutation fuzzing of the converters' readers: CSDAT streams, STAR files and
the csfast schema record of Arrow / Parquet tables. Shared by
tests/test_fuzz_convert.py (a few seconds each, in every run) and
benchmarks/fuzz_convert.py (longer runs).

A case is a valid input changed by a few random mutations, some blind (bit
flips, cuts, insertions, numbers made huge), some aimed at what the reader
trusts (the sizes, dtypes and shapes of a CSDAT header, the string offsets
of its columns, the tokens and labels of a STAR table, the dtypes and shapes
of a schema record). Its outcome must be a successful read whose columns all
have the rows it says and whose bytes stay within a bound of the input's
size (docs/formats.md), and which agrees with an independent reader where
that one reads the input too (cryosparc-tools for CSDAT, starfile for STAR,
Arrow's types for a schema record); or a CsError naming the input. Any
other exception escapes to the caller, a bug.
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import csfast
from csfast import CsError, csdat
from csfast.synthetic import particles

# Values that make sizes and counts overflow or ask for the impossible.
HUGE = [0, 1, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64, 10**30]
# The string budget's constant, lowered during a run so that the bound
# below is tight: a mutation that made a reader allocate far beyond its
# input would fail the bound, not hide under 64 MiB.
SLACK = 1 << 20
# dtype strings a header or record may claim.
DTYPES = [
    "|O",
    "<f4",
    ">f8",
    "|u1",
    "<u8",
    "|b1",
    "<i2",
    "|S1",
    "|S100000000",
    "<U3",
    "S0",
    "O",
    "|V8",
    "(2,)f4,",
    "f4,i4",
    "<M8[ns]",
    "float32",
    "",
    "<f3",
    "|S",
    "?",
    "<u8" * 100,
]
SHAPES: list[Any] = [[], [2], [0], [3, 4], [2**31], [2**30, 4], [-1], [1.5], "x", [[2]], [2] * 40]


def bound(input_bytes: int) -> int:
    """The most bytes the columns of a successful read may take: LZ4 at most
    255x a compressed column, strings 256x the input (docs/formats.md)."""
    return (2 * csdat.STRING_EXPANSION + 1) * input_bytes + SLACK


@contextmanager
def tight_budget() -> Iterator[None]:
    saved = csdat.STRING_SLACK
    csdat.STRING_SLACK = SLACK
    try:
        yield
    finally:
        csdat.STRING_SLACK = saved


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """data after 1 to 4 blind mutations: bit flips and byte changes (mostly
    in the first 300 bytes, where headers are), cuts, insertions, duplicated
    ranges, decimal numbers replaced by huge ones."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        n = len(out)
        if op < 0.25 and n:
            i = rng.randrange(min(n, 300) if rng.random() < 0.7 else n)
            out[i] ^= 1 << rng.randrange(8)
        elif op < 0.35 and n:
            out[rng.randrange(n)] = rng.randrange(256)
        elif op < 0.45:
            del out[rng.randrange(n + 1) :]
        elif op < 0.6:
            i = rng.randrange(n + 1)
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.75 and n:
            i = rng.randrange(n)
            piece = out[i : i + rng.randint(1, 64)]
            j = rng.choice([i, rng.randrange(n + 1)])
            out[j:j] = piece * rng.randint(1, 3)
        else:
            numbers = [m.span() for m in re.finditer(rb"\d+", bytes(out[:4096]))]
            if numbers:
                a, b = rng.choice(numbers)
                out[a:b] = str(rng.choice(HUGE)).encode()
    return bytes(out)


def _check_columns(n: int, cols: dict[str, np.ndarray], input_bytes: int) -> None:
    total = 0
    for name, col in cols.items():
        assert len(col) == n, (name, len(col), n)
        col.tobytes()[-1:]  # every byte of it is there
        total += col.nbytes
    assert total <= bound(input_bytes), (total, input_bytes)


# -------------------------------------------------------------------- CSDAT


def valid_csdat() -> list[bytes]:
    """Small valid CSDAT streams: plain and LZ4, strings, sub-arrays, 0 rows."""
    ds = particles(40, results=("blob", "ctf", "alignments3D"), seed=3, classes=3)
    small = csfast.Dataset(
        {
            "uid": np.arange(3, dtype=np.uint64),
            "s": np.array([b"", b"ab", b"ab"]),
            "v": np.arange(6, dtype=">f4").reshape(3, 2),
        }
    )
    streams = []
    for table in (ds, small, small.take([])):
        for compression in (None, "lz4"):
            streams.append(
                b"".join(bytes(c) for c in csdat.stream(table.cols(), len(table), compression))
            )
    return streams


def mutate_csdat(data: bytes, rng: random.Random) -> bytes:
    """A header value, a column's byte count or a string offset changed (or,
    half the time, blind mutations)."""
    if rng.random() < 0.4:
        return mutate_bytes(data, rng)
    (hlen,) = struct.unpack("<I", data[6:10])
    header = json.loads(data[10 : 10 + hlen])
    body = bytearray(data[10 + hlen :])
    for _ in range(rng.randint(1, 2)):
        op = rng.random()
        fields = header["dtype"]
        if op < 0.2:
            header["length"] = rng.choice(HUGE + [-1, 1.5, "2", None])
        elif op < 0.45 and fields:
            entry = rng.choice(fields)
            if rng.random() < 0.5:
                entry[1] = rng.choice(DTYPES)
            else:
                entry[2:] = [rng.choice(SHAPES)]
        elif op < 0.55:
            names = [f[0] for f in fields]
            header["compressed_fields"] = rng.sample(names, rng.randint(0, len(names)))
            header["compression"] = rng.choice(["lz4", None, "zstd"])
        elif op < 0.6:
            if fields:
                i = rng.randrange(len(fields))
                fields.insert(rng.randrange(len(fields)), list(fields[i]))  # a name twice
        elif op < 0.65:
            header = [header] if rng.random() < 0.5 else {"dtype": header}
            break
        elif op < 0.85 and len(body) >= 4:  # a column's byte count
            i = rng.randrange(0, len(body) - 3)
            body[i : i + 4] = struct.pack("<I", rng.choice(HUGE) & 0xFFFFFFFF)
        elif len(body) >= 8:  # 8 bytes of a column: a heap offset when it is a string's
            i = rng.randrange(0, len(body) - 7) & ~7
            body[i : i + 8] = struct.pack("<Q", rng.choice(HUGE) % 2**64)
    raw = json.dumps(header).encode()
    hlen = len(raw) if rng.random() < 0.9 else rng.choice(HUGE) & 0xFFFFFFFF
    return data[:6] + struct.pack("<I", hlen) + raw + bytes(body)


def _heap(data: bytes) -> bytes:
    """The string heap of a stream csdat.read accepted: the bytes after its columns."""
    (hlen,) = struct.unpack("<I", data[6:10])
    header = json.loads(data[10 : 10 + hlen])
    pos = 10 + hlen
    for _ in header["dtype"] if header["length"] else ():
        pos += 4 + struct.unpack("<I", data[pos : pos + 4])[0]
    return data[pos:]


def _agrees_with_cryosparc_tools(data: bytes, n: int, cols: dict[str, np.ndarray]) -> None:
    """Where cryosparc-tools reads the stream too, it reads the same rows and
    values: numbers of the same dtype, and strings when the heap holds each
    string once. (cryosparc-tools rebuilds the heap, merging repeated
    strings, where csfast reads offsets as byte positions; it reads ">f4"
    columns as little-endian, adds a uid field when there is none.)
    """
    try:
        from cryosparc.dataset import Dataset as CsDataset
    except ImportError:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = CsDataset.load(io.BytesIO(data))
    except Exception:  # noqa: BLE001 (cryosparc-tools refuses some streams csfast reads)
        return
    if n == 0:
        return
    fields = [f for f in ref.fields() if f != "uid" or "uid" in cols]
    assert fields == list(cols) and len(ref) == n
    parts = _heap(data)[1:].split(b"\0")[:-1]
    distinct = b"" not in parts and len(set(parts)) == len(parts)
    for name, col in cols.items():
        theirs = ref[name]
        if theirs.dtype == object:
            if distinct:
                assert [v.decode("utf-8", "replace") for v in col.tolist()] == list(theirs), name
        elif col.dtype == theirs.dtype:
            assert np.array_equal(col, theirs, equal_nan=col.dtype.kind in "fc"), name


def check_csdat(data: bytes, path: Path, load: bool) -> str:
    """'read' or the CsError's class name; load: also through Dataset.load.
    A read must agree with cryosparc-tools' reader where both read."""
    try:
        n, cols = csdat.read(data)
        _check_columns(n, cols, len(data))
        _agrees_with_cryosparc_tools(data, n, cols)
        if load:
            path.write_bytes(data)
            ds = csfast.Dataset.load(path)
            _check_columns(len(ds), ds.cols(), len(data))
    except CsError as e:
        assert "<bytes>" in str(e) or str(path) in str(e), e
        return type(e).__name__
    return "read"


# --------------------------------------------------------------------- STAR

STAR_TOKENS = [
    "4294967297@a.mrcs",
    "000000@a.mrcs",
    "1.5",
    "-1",
    "0",
    "nan",
    "inf",
    "abc",
    '"a b"',
    "''",
    "@",
    "1@",
    "@x",
    "4294967296",
    "18446744073709551617",
    "1e400",
    "exp_group_99999999999",
    "x" * 5000,
    "#",
    "data_",
    "loop_",
    "_rln",
]


def valid_star(folder: Path) -> list[bytes]:
    """STAR files csfast writes (3D and 2D alignments, two optics groups, a
    micrograph path) and a RELION 3.0 single table with quoted values."""
    from csfast.convert.star import to_star

    texts = []
    ds = particles(12, results=("blob", "ctf", "location", "alignments3D"), seed=4, classes=3)
    ds["ctf/exp_group_id"] = np.array([1, 2] * 6, dtype=np.uint32)
    two = particles(6, results=("blob", "alignments2D"), seed=5, classes=2)
    for i, table in enumerate((ds, two)):
        path = folder / f"seed{i}.star"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_star(table, path)
        texts.append(path.read_bytes())
    texts.append(
        b"data_\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n_rlnClassNumber #3\n"
        b"_rlnMicrographName #4\n000001@a.mrcs 1000.5 1 'mic 1.mrc'\n"
        b"000002@a.mrcs 2000 2 mic2.mrc\n"
    )
    return texts


def mutate_star(data: bytes, rng: random.Random) -> bytes:
    """Tokens replaced by wrapping, fractional or odd values; lines deleted or
    repeated (labels given twice, optics rows twice); or blind mutations."""
    if rng.random() < 0.3:
        return mutate_bytes(data, rng)
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(lines))
        if op < 0.5:
            tokens = lines[i].split()
            if tokens:
                tokens[rng.randrange(len(tokens))] = rng.choice(STAR_TOKENS).encode()
                lines[i] = b" ".join(tokens)
        elif op < 0.7:
            del lines[i]
        elif op < 0.9:
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        else:
            lines.insert(i, rng.choice(STAR_TOKENS).encode())
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


def _agrees_with_starfile(path: Path, ds: csfast.Dataset) -> None:
    """Where starfile's general reader reads the file too, the particles are
    as many, and the image indices, stacks, classes and subsets are its
    values (1-based), never wrapped or cut."""
    import pandas as pd
    import starfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True)
    except Exception:  # noqa: BLE001 (it fails on some files csfast reads)
        return
    table = blocks.get("particles")
    if table is None:
        rest = [b for k, b in blocks.items() if k != "optics"]
        table = rest[0] if len(rest) == 1 else None
    if not isinstance(table, pd.DataFrame) or not table.columns.is_unique:
        return
    assert len(table) == len(ds)
    if "blob/idx" in ds and len(ds):
        number, _, stack = table["rlnImageName"].astype(str).str.partition("@").T.to_numpy()
        assert (ds["blob/idx"].astype(np.int64) + 1 == number.astype(np.int64)).all()
        assert [p.decode() for p in ds["blob/path"].tolist()] == list(stack)
    align = "alignments3D" if "alignments3D/class" in ds else "alignments2D"
    for label, field in (("rlnClassNumber", "class"), ("rlnRandomSubset", "split")):
        if f"{align}/{field}" in ds and label in table.columns:
            theirs = pd.to_numeric(table[label], errors="coerce").to_numpy(np.float64)
            assert np.array_equal(ds[f"{align}/{field}"].astype(np.float64) + 1, theirs)


def check_star(path: Path, shape: bool) -> str:
    from csfast.convert.star import from_star

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = from_star(path, micrograph_shape=(4096, 4096) if shape else None)
    except CsError as e:
        assert str(path) in str(e), e
        return type(e).__name__
    _check_columns(len(ds), ds.cols(), path.stat().st_size)
    _agrees_with_starfile(path, ds)
    return "read"


# ------------------------------------------------------ Arrow schema record


def valid_tables() -> list[Any]:
    """Arrow tables with their csfast schema record: sub-arrays, strings
    (padded), big-endian and bool fields."""
    ds = particles(30, results=("blob", "ctf", "alignments3D"), seed=6, classes=4)
    odd = csfast.Dataset(
        {
            "uid": np.arange(4, dtype=np.uint64),
            "p": np.array([b"a", b"bcd", b"", b"a"], dtype="S9"),
            "be": np.arange(8, dtype=">i4").reshape(4, 2),
            "ok": np.array([True, False, True, True]),
        }
    )
    return [ds.to_arrow(), odd.to_arrow()]


def mutate_record(text: bytes, rng: random.Random) -> bytes:
    """A field's dtype or shape claimed otherwise, fields renamed or repeated,
    or blind mutations of the JSON."""
    if rng.random() < 0.3:
        return mutate_bytes(text, rng)
    rec = json.loads(text)
    fields = rec["fields"]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        entry = rng.choice(fields)
        if len(entry) < 3:  # shortened by an earlier mutation
            continue
        if op < 0.4:
            entry[1] = rng.choice(DTYPES)
        elif op < 0.65:
            entry[2] = rng.choice(SHAPES)
        elif op < 0.75:
            entry[0] = rng.choice(fields)[0]
        elif op < 0.85:
            entry[1] = f"|S{rng.choice(HUGE[1:])}"
        elif op < 0.9:
            rec = {"fields": [rec]}
            break
        else:
            del entry[rng.randrange(len(entry))]
    return json.dumps(rec).encode()


def check_record(
    table: Any, reference: csfast.Dataset, text: bytes, folder: Path, via_file: bool
) -> str:
    """from_arrow (or read_parquet) of the table under a mutated record.

    A successful read must hold the values of the table read without its
    record (Arrow's types alone), with string widths at most twice the
    longest value plus 64 bytes.
    """
    from csfast.convert.files import read_parquet

    mutated = table.replace_schema_metadata({b"csfast": text})
    try:
        if via_file:
            import pyarrow.parquet as pq

            pq.write_table(mutated, folder / "fuzz.parquet")
            ds = read_parquet(folder / "fuzz.parquet")
        else:
            ds = csfast.Dataset.from_arrow(mutated)
    except CsError as e:
        return type(e).__name__
    assert ds.fields() == reference.fields()
    n = len(reference)
    for name in reference.fields():
        got, ref = ds[name], reference[name]
        assert len(got) == n
        if ref.dtype.kind == "S":
            assert got.tolist() == ref.tolist(), name
            longest = max((len(v) for v in ref.tolist()), default=0)
            assert got.dtype.itemsize <= 2 * longest + 64, (name, got.dtype)
        else:
            assert np.array_equal(got.reshape(n, -1), ref.reshape(n, -1)), name
    return "read"


# --------------------------------------------------------------------- runs


def run(
    kind: str, cases: int, seed: int, folder: Path, seconds: float | None = None
) -> tuple[Counter, int, float]:
    """Up to `cases` mutated inputs of kind "csdat", "star" or "record"
    (stopping after `seconds`): (outcome counts, cases run, slowest case in
    seconds). An outcome that is neither a result nor a CsError raises,
    naming the seed and case so that the input can be rebuilt."""
    from csfast.convert.arrow import from_arrow

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    check: Callable[[int], str]
    if kind == "csdat":
        streams = valid_csdat()

        def check(case: int) -> str:
            data = mutate_csdat(rng.choice(streams), rng)
            return check_csdat(data, folder / "fuzz.csdat", load=case % 5 == 0)
    elif kind == "star":
        texts = valid_star(folder)

        def check(case: int) -> str:
            path = folder / "fuzz.star"
            path.write_bytes(mutate_star(rng.choice(texts), rng))
            return check_star(path, shape=case % 3 == 0)
    elif kind == "record":
        tables = [(t, from_arrow(t.replace_schema_metadata({}))) for t in valid_tables()]

        def check(case: int) -> str:
            table, reference = rng.choice(tables)
            text = mutate_record(table.schema.metadata[b"csfast"], rng)
            return check_record(table, reference, text, folder, via_file=case % 10 == 0)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    outcomes: Counter = Counter()
    start = time.perf_counter()
    slowest = 0.0
    done = 0
    with tight_budget():
        for case in range(cases):
            if seconds is not None and time.perf_counter() - start > seconds:
                break
            t0 = time.perf_counter()
            try:
                outcomes[check(case)] += 1
            except Exception as e:
                raise AssertionError(
                    f"{kind} fuzz case {case} (seed {seed}): {type(e).__name__}: {e}"
                ) from e
            slowest = max(slowest, time.perf_counter() - t0)
            done += 1
    return outcomes, done, slowest
