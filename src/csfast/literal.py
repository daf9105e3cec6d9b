"""The Python literals of .npy headers, parsed in time and memory linear in their size.

A .npy header is the ``repr`` of a dict: dicts keyed by strings, lists,
tuples, strings (either quote, with escapes, optionally ``u``-prefixed),
decimal integers (with the ``L`` suffix Python 2 wrote for longs), True, False
and None. That grammar, and nothing else, is parsed here: without
``ast.literal_eval``'s syntax tree (about 500 bytes per token: a 2 MB header
cost 967 MB and 8 s), without recursion (nesting is bounded by ``MAX_DEPTH``),
with integers of at most ``MAX_INT_DIGITS`` digits (``int()`` of a long digit
string is quadratic) and with string keys only (Python hashes strings with a
random key, but an integer to itself modulo 2**61 - 1: integer keys chosen to
collide would make building a dict quadratic).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["LiteralError", "parse_literal", "MAX_DEPTH", "MAX_INT_DIGITS"]

# A nested structured dtype adds two levels (its descr list and field tuple);
# 64 levels is 30 levels of nested structs, far beyond any real table.
MAX_DEPTH = 64
MAX_INT_DIGITS = 40  # a shape or sub-array size; 2**64 has 20 digits

# One token per match. finditer skips only what matches no alternative, and
# every character but ASCII whitespace matches the last one, so a gap between
# tokens is always whitespace, and anything unknown is an error token.
_TOKEN = re.compile(r"""
    ([][{}(),:])                                      # 1 punctuation
  | ([uU]?(?:'[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*'        # 2 a string, either quote
         |"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"))
  | ([-+]?[0-9]+)[lL]?                                # 3 an integer (Python 2: 12L)
  | (True|False|None)                                 # 4 a constant
  | (\S)                                              # 5 anything else: an error
""", re.ASCII | re.VERBOSE)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}\n]*\}"
                     r"|[0-7]{1,3}|[\s\S])")
_SIMPLE_ESCAPES = {"\n": "", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
                   "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_CONSTANTS = {"True": True, "False": False, "None": None}
_CLOSER = {"{": "}", "[": "]", "(": ")"}


class LiteralError(ValueError):
    """Text that is not a literal of the .npy header grammar; says where."""


def parse_literal(text: str) -> object:
    """The value of a Python literal of the .npy header grammar (see the module).

    Accepts what ``ast.literal_eval`` accepts for that grammar, with the same
    values, plus Python 2's ``12L`` and whitespace anywhere between tokens
    (Python's indentation rules aside); raises LiteralError for anything else
    (among them dict keys that are not strings).
    """
    stack: list[tuple[str, list[object] | None, bool]] = []  # the enclosing containers
    items: list[object] | None = None  # the innermost container (none at the top)
    opener, comma = "", False
    expect_value, may_close = True, False
    result: object = None
    m = None
    for m in _TOKEN.finditer(text):
        punct, string, number, constant, _ = m.groups()
        if punct is not None:
            if punct in _CLOSER:
                if not expect_value:
                    break
                if len(stack) >= MAX_DEPTH:
                    raise LiteralError(f"nested deeper than {MAX_DEPTH} levels "
                                       f"at offset {m.start(1)}")
                stack.append((opener, items, comma))
                opener, items, comma = punct, [], False
                may_close = True
                continue
            if items is None:
                break
            pairs_open = opener == "{" and len(items) % 2  # a key waits for its value
            if punct == ",":
                if expect_value or pairs_open:
                    break
                comma = expect_value = may_close = True
                continue
            if punct == ":":
                if expect_value or not pairs_open:
                    break
                expect_value, may_close = True, False
                continue
            if punct != _CLOSER[opener] or (expect_value and not may_close) or pairs_open:
                break
            value: object
            if opener == "[":
                value = items
            elif opener == "(":  # (x) is x; (x,) and (x, y) are tuples
                value = items[0] if len(items) == 1 and not comma else tuple(items)
            else:
                keys = items[::2]
                if not all(type(k) is str for k in keys):
                    raise LiteralError(f"a dict key that is not a string, before offset "
                                       f"{m.end()}")
                value = dict(zip(keys, items[1::2], strict=True))
            opener, items, comma = stack.pop()
        elif not expect_value:
            break
        elif string is not None:
            value = _string(string, m.start(2))
        elif number is not None:
            value = _integer(number, m.start(3))
        elif constant is not None:
            value = _CONSTANTS[constant]
        else:
            break
        if items is None:
            result = value
        else:
            items.append(value)
        expect_value = False
    else:  # every token used: a complete value must be at hand
        if items is None and not expect_value:
            return result
        raise LiteralError("unexpected end of text")
    where = m.start(m.lastindex or 0)
    raise LiteralError(f"unexpected {text[where:where + 12]!r} at offset {where}")


def _integer(digits: str, where: int) -> int:
    unsigned = digits.lstrip("+-")
    if len(unsigned) > MAX_INT_DIGITS:
        raise LiteralError(f"an integer of {len(unsigned)} digits at offset {where}")
    if unsigned[0] == "0" and unsigned.strip("0"):
        raise LiteralError(f"an integer with a leading zero at offset {where}")
    return int(digits)


def _string(token: str, where: int) -> str:
    body = token[2:-1] if token[0] in "uU" else token[1:-1]
    if "\\" not in body:
        return body
    try:
        return _ESCAPE.sub(_unescape, body)
    except (ValueError, KeyError):  # \U beyond U+10FFFF, \N{unknown name}
        raise LiteralError(f"an invalid escape in the string at offset {where}") from None


def _unescape(m: re.Match) -> str:
    code = m.group(1)
    first = code[0]
    if first in "xuU":
        return chr(int(code[1:], 16))
    if first == "N":
        return unicodedata.lookup(code[2:-1])
    if first in "01234567":
        return chr(int(code, 8))
    return _SIMPLE_ESCAPES.get(first, "\\" + first)  # unknown escapes keep the backslash
