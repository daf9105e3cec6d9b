"""csfast.strings: one behaviour for bad text, checked against Python's own codecs."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csfast import CsFieldError, Dataset, csdat, strings

LONE = "\ud800"  # a lone surrogate: not encodable as UTF-8
BAD = b"\xff\xfe"  # not UTF-8


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"bb", b"a\xc3\xa9", b"zz/x.mrc"]), max_size=60))
def test_factorize_and_decode_match_python(values):
    col = np.array(values, dtype="S16")
    uniq, codes = strings.factorize(col)
    assert uniq.tolist() == sorted(set(col.tolist())) and (uniq[codes] == col).all()
    assert strings.decode(col).tolist() == [v.decode("utf-8") for v in col.tolist()]
    assert strings.decoded_objects(col).tolist() == [v.decode("utf-8") for v in col.tolist()]


def test_fixed_width_is_fixed_strings_of_each_row():
    uniq, codes = ["a", "héllo", b"xy"], np.array([2, 0, 1, 1])
    out = strings.fixed_width(uniq, codes, "f")
    assert out.dtype == np.dtype("S7")  # the longest value, 6 UTF-8 bytes, plus one
    assert out.tolist() == [b"xy", b"a", "héllo".encode(), "héllo".encode()]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Dataset({"f": np.array(["ok", LONE])}),
        lambda: Dataset({"f": np.array(["ok", LONE], dtype=object)}),
        lambda: Dataset({"f": np.array([b"ok", b"no"])}).__setitem__("f", np.array(["a", LONE])),
        lambda: Dataset({"f": np.array([b"ok"])}).query({"f": [LONE]}),
        lambda: Dataset({"f": np.array(["ok"])}).__setitem__("f", np.array([LONE])) or None,
        lambda: csdat.write(io.BytesIO(), {"f": np.array(["ok", LONE])}, 2),
        lambda: strings.fixed_strings([LONE], "f"),
        lambda: Dataset({"f": np.array([b"ok"])})["f"].__setitem__(0, LONE),
    ],
)
def test_text_that_is_not_unicode_is_a_field_error(make):
    with pytest.raises(CsFieldError, match="not valid Unicode"):
        make()


@pytest.mark.parametrize(
    "read",
    [
        lambda ds: ds.decode("f"),
        lambda ds: ds.to_dict(),
        lambda ds: ds["f"][0],
        lambda ds: ds[0].to_dict(),
        lambda ds: strings.decoded_objects(ds.view("f"), "f"),
    ],
)
def test_bytes_that_are_not_utf8_are_a_field_error(read):
    ds = Dataset({"f": np.array([BAD, b"ok"])})
    with pytest.raises(CsFieldError, match="not UTF-8"):
        read(ds)


def test_the_message_names_the_field_where_it_is_known():
    with pytest.raises(CsFieldError, match="field 'blob/path'"):
        Dataset({"blob/path": np.array([BAD])}).decode("blob/path")
    with pytest.raises(CsFieldError, match="field 'blob/path'"):
        Dataset({"blob/path": np.array([LONE])})
