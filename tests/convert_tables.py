"""Hypothesis strategies and checks shared by the test_convert_* files."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import csfast

NUMERIC = ["<f4", "<f8", "<u4", "<i4", "<u8", "<i8", "<u2", "<i2", "|u1", "|i1"]
TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=10
)


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...], n: int) -> np.ndarray:
    dt = np.dtype(dtype)
    size = (n,) + shape
    if dt.kind == "f":
        return rng.standard_normal(size).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size).astype(bool)
    info = np.iinfo(dt)
    return rng.integers(
        info.min, info.max, size=size, dtype=dt.newbyteorder("="), endpoint=True
    ).astype(dt)


@st.composite
def tables(
    draw,
    *,
    max_rows: int = 30,
    bool_fields: bool = True,
    big_endian: bool = True,
    string_padding: bool = True,
) -> csfast.Dataset:
    """Particle-like tables: uid, numeric fields and sub-arrays, string fields."""
    n = draw(st.integers(0, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols: dict[str, np.ndarray] = {
        "uid": rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    }
    kinds = NUMERIC + (["|b1"] if bool_fields else []) + ([">f4", ">u4"] if big_endian else [])
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds + ["S", "S"]), st.sampled_from([(), (), (2,), (3,), (4,)])
            ),
            max_size=6,
        )
    )
    for j, (dtype, shape) in enumerate(specs):
        name = f"{draw(st.sampled_from(['blob', 'ctf', 'alignments3D', 'location']))}/f{j}"
        if dtype == "S":
            distinct = draw(st.lists(TEXT, min_size=1, max_size=4))
            values = [distinct[i] for i in rng.integers(0, len(distinct), n)]
            encoded = [v.encode() for v in values]
            width = max((len(e) for e in encoded), default=0) + 1
            if string_padding:
                width += draw(st.integers(0, 3))
            cols[name] = np.array(encoded, dtype=f"S{width}").reshape(n)
        else:
            cols[name] = _values(rng, dtype, shape, n)
    return csfast.Dataset._from_columns(n, cols)


def assert_same(a: csfast.Dataset, b: csfast.Dataset, *, exact_dtypes: bool = True) -> None:
    """Same fields in the same order, same values; dtypes equal if exact_dtypes.

    Without exact_dtypes, byte order and string widths may differ (the values
    may not).
    """
    assert a.fields() == b.fields()
    assert len(a) == len(b)
    for name in a.fields():
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.shape == y.shape, name
        if exact_dtypes:
            assert x.dtype == y.dtype, (name, x.dtype, y.dtype)
        else:
            assert x.dtype.kind == y.dtype.kind, (name, x.dtype, y.dtype)
            if x.dtype.kind != "S":
                assert x.dtype.newbyteorder("=") == y.dtype.newbyteorder("="), name
        assert x.tolist() == y.tolist(), name
