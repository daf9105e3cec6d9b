""".npy header literals: csfast.literal against Python and numpy, and the
bounded cost of huge headers (memory and CPU measured in a fresh process)."""

import ast
import io
import json
import re
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import csfast
from csfast import CsFormatError
from csfast.format import MAX_HEADER_BYTES, MAX_LITERAL_HEADER_BYTES, read_header
from csfast.literal import MAX_DEPTH, LiteralError, parse_literal

HYP = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------- the grammar vs Python

scalars = st.integers(-(2**70), 2**70) | st.text(max_size=12) | st.booleans() | st.none()
literals = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@HYP
@given(value=literals, spaces=st.sampled_from(["", " ", "\n", "  \t"]))
def test_repr_of_any_literal_parses_back(value, spaces):
    # repr chooses quotes and escapes (\x, \u, \U, \\, \') as Python does.
    text = spaces + repr(value) + spaces
    assert parse_literal(text) == value == ast.literal_eval(text)
    assert type(parse_literal(text)) is type(value)


GRAMMAR_CHARS = "[](){},:'\" \\0123-+uxnTrueFalsNo"


@HYP
@given(text=st.text(alphabet=GRAMMAR_CHARS, max_size=30))
def test_random_text_accepted_only_as_python_would(text):
    # Never a value Python would not give: whatever parse_literal accepts,
    # ast.literal_eval accepts with the same value (Python 2's 12L aside).
    assume(re.search(r"\d[lL]", text) is None)
    try:
        value = parse_literal(text)
    except LiteralError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes warn in Python
        assert ast.literal_eval(text) == value


@pytest.mark.parametrize(
    "text, value",
    [
        ("(3L,)", (3,)),
        ("[12L, -4l]", [12, -4]),
        ("u'x'", "x"),
        ('U"y"', "y"),
        ("'\\N{GREEK SMALL LETTER ALPHA}\\101\\q'", "\u03b1A\\q"),
        ("((1))", 1),
        ("()", ()),
        ("{'a': (), }", {"a": ()}),
        ("'a\\\nb'", "ab"),
        ("00", 0),
        ("+7", 7),
    ],
)
def test_quirks_numpy_or_python_2_wrote(text, value):
    assert parse_literal(text) == value


@pytest.mark.parametrize(
    "text, where",
    [
        ("{1}", "offset 2"),
        ("(,)", "offset 1"),
        ("[1,,2]", "offset 3"),
        ("{1:}", "offset 3"),
        ("{[1]: 2}", "dict key that is not a string"),
        ("{1: 2}", "not a string"),
        ("007", "leading zero"),
        ("1 2", "offset 2"),
        ("", "end"),
        ("(", "end"),
        ("'abc", "offset 0"),
        ("[1]]", "offset 3"),
        ("{1: 2: 3}", "offset 5"),
        ("1.5", "offset 1"),
        ("b'x'", "offset 0"),
        ("'a' 'b'", "offset 4"),
        ("x", "offset 0"),
        ("'\\U00110000'", "escape"),
        ("'\\N{NO SUCH NAME}'", "escape"),
        ("1" * 41, "41 digits"),
        ("- 5", "offset 0"),
        ("'a\nb'", "offset 0"),
        ("True1", "offset 4"),
        ("{'a': 1,, }", "offset 8"),
    ],
)
def test_malformed_literals_say_where(text, where):
    with pytest.raises(LiteralError, match=where):
        parse_literal(text)


def test_integer_dict_keys_chosen_to_collide_are_refused():
    # Python hashes an integer to its value modulo 2**61 - 1: these keys share
    # one hash, and building a dict of 75,000 of them (2 MB) took minutes.
    text = "{" + ", ".join(f"{k * (2**61 - 1)}: 0" for k in range(1, 75_000)) + "}"
    start = time.process_time()
    with pytest.raises(LiteralError, match="dict key that is not a string"):
        parse_literal(text)
    assert time.process_time() - start < 5


def test_nesting_is_bounded_without_recursion():
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = parse_literal(deep)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "(" * 10**6):
        with pytest.raises(LiteralError, match=f"deeper than {MAX_DEPTH}"):
            parse_literal(text)


# ------------------------------------------- headers numpy writes, any dtype

NAME_CHARS = "ab_/'\"\\ é€😀\n"


@st.composite
def nested_dtypes(draw, depth: int = 0) -> np.dtype:
    names = draw(
        st.lists(
            st.text(alphabet=NAME_CHARS, min_size=1, max_size=5),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    fields = []
    for name in names:
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            base = draw(nested_dtypes(depth + 1))
        else:
            base = np.dtype(
                draw(
                    st.sampled_from(
                        ["<u8", ">i4", "<f4", ">f8", "|S3", "<U2", "?", "<c8", "|u1", "|V3"]
                    )
                )
            )
        shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        fields.append((name, base, shape) if shape else (name, base))
    return np.dtype(fields, align=draw(st.booleans()))


def _numpy_file(dtype: np.dtype) -> bytes:
    """What numpy writes for 0 rows of dtype (it picks the version: 3.0 for UTF-8)."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.lib.format.write_array(f, np.zeros(0, dtype), version=None)
    return f.getvalue()


@HYP
@given(dtype=nested_dtypes(), rows=st.integers(0, 2**40))
def test_headers_numpy_writes_for_any_dtype(dtype, rows):
    data = _numpy_file(dtype)
    expected = np.load(io.BytesIO(data), allow_pickle=False, max_header_size=1 << 30).dtype
    # numpy leaves room to grow the row count in place: use it for `rows`
    grown = data.replace(b"(0,), }", f"({rows},), }}".encode(), 1)
    end = grown.index(b"\n", 10)
    grown = grown[: end - len(str(rows)) + 1] + grown[end:]
    assert len(grown) == len(data)
    info = read_header(io.BytesIO(grown), "h.cs", len(data) + rows * dtype.itemsize)
    assert info.dtype == expected and info.rows == rows and info.data_offset == len(data)
    assert info.dtype.names == expected.names


# ------------------------------------------------- bounded cost, in a process

_MEASURE = """
import json, resource, sys, csfast
before = resource.getrusage(resource.RUSAGE_SELF)
try:
    outcome = len(csfast.inspect(sys.argv[1]).fields)
except csfast.CsError as e:
    outcome = str(e)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"outcome": outcome,
                  "rss_mb": (after.ru_maxrss - before.ru_maxrss) / 1024,
                  "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}))
"""


def _measure(path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout)


def _write_header(path, text: str, data: bytes = b"") -> None:
    raw = text.encode("latin1") + b"\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(raw)) + raw + data)


def test_two_megabyte_nested_header_costs_little(tmp_path):
    # Nested fields with quoted names: not the plain form, parsed by
    # csfast.literal. ast.literal_eval took 967 MB and 8 s for 2 MB.
    dtype = np.dtype(
        [(f'r{k}/it\'s "x"', [("a", "<f4", (2,)), ("b", "|S5")]) for k in range(24_000)]
    )
    path = tmp_path / "nested.cs"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.zeros(2, dtype), version=(2, 0))
    assert 1.9e6 < path.stat().st_size < MAX_LITERAL_HEADER_BYTES
    cost = _measure(path)
    assert cost["outcome"] == 24_000
    assert cost["rss_mb"] < 60 and cost["cpu_s"] < 10, cost


def test_two_megabyte_hostile_header_costs_little(tmp_path):
    # The costliest text per character for the parser: an empty dict per
    # three characters, up to the cap for headers outside the plain form.
    n = (MAX_LITERAL_HEADER_BYTES - 100) // 3
    path = tmp_path / "dicts.cs"
    _write_header(path, "{'descr': [" + "{}," * n + "], 'fortran_order': False, 'shape': (3,)}")
    cost = _measure(path)
    assert "invalid field description" in cost["outcome"] and "dicts.cs" in cost["outcome"]
    assert cost["rss_mb"] < 100 and cost["cpu_s"] < 15, cost


@pytest.mark.parametrize("plain", [True, False])
def test_twenty_megabyte_header_is_refused_unread(tmp_path, plain):
    fields = (f"('r{k:07d}/xxxxxxxxxxxxxxxxxxxxxxxx', '<f4')" for k in range(450_000))
    text = "{'descr': [" + ", ".join(fields) + "], 'fortran_order': False, 'shape': (0,), }"
    if not plain:
        text = text.replace("'<f4')", "'<f4', (1,1))")
    path = tmp_path / "huge.cs"
    _write_header(path, text)
    assert path.stat().st_size > 20e6
    cost = _measure(path)
    assert "header length" in cost["outcome"] and str(MAX_HEADER_BYTES) in cost["outcome"]
    assert cost["rss_mb"] < 5 and cost["cpu_s"] < 1, cost


@pytest.mark.parametrize("number", ["1" * 41, "1" * 5000])
@pytest.mark.parametrize("where", ["rows", "sub-array"])
def test_numbers_beyond_20_digits_are_format_errors(number, where):
    # int() of more than 4,300 digits raises ValueError (not a CsError)
    shape = f", ({number},)" if where == "sub-array" else ""
    rows = number if where == "rows" else "3"
    text = f"{{'descr': [('uid', '<u8'{shape})], 'fortran_order': False, 'shape': ({rows},), }}"
    raw = text.encode() + b"\n"
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(raw)) + raw
    with pytest.raises(
        CsFormatError, match=f"h.cs: malformed header: an integer of {len(number)} digits"
    ):
        read_header(io.BytesIO(data), "h.cs", len(data))


def test_plain_header_beyond_the_literal_cap_reads_fast(tmp_path):
    # 3 MB in the plain form: read field by field, not by csfast.literal.
    fields = [(f"r{k:06d}/{'x' * 40}", "<f4") for k in range(60_000)]
    path = tmp_path / "plain.cs"
    _write_header(path, repr({"descr": fields, "fortran_order": False, "shape": (0,)})[:-1] + ", }")
    assert MAX_LITERAL_HEADER_BYTES < path.stat().st_size < MAX_HEADER_BYTES
    assert len(csfast.inspect(path).fields) == 60_000
    # the same header outside the plain form is refused, naming both facts
    text = path.read_bytes()[12:].decode("latin1").replace("'<f4')", "'<f4',)")
    _write_header(path, text.rstrip("\n"))
    with pytest.raises(CsFormatError, match="plain.cs: header of .* not in numpy's plain form"):
        csfast.inspect(path)
