"""The exceptions csfast raises: one hierarchy under CsError."""

from __future__ import annotations


class CsError(Exception):
    """Base class of every error csfast raises on purpose."""


class CsFormatError(CsError, ValueError):
    """A file that is not a valid .cs (or CSDAT) file; the message names it."""


class CsFieldError(CsError, KeyError):
    """A field that is missing, or present with a conflicting dtype."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CsResultError(CsFieldError):
    """A result that is missing, or cannot be used as asked.

    A result is not a field (it is the fields under one name, ``blob/...``);
    the CsFieldError base keeps ``except CsFieldError`` clauses written for
    csfast 0.1 working.
    """


class CsVersionError(CsError, LookupError):
    """A version that a result or result group does not have; the message lists those it has."""


class CsProjectError(CsError, LookupError):
    """A project folder, job, input or output that is not there; the message says what is."""


class CsUidError(CsError, ValueError):
    """Duplicate, missing or unmatched uids where the operation forbids them."""


class InputError(CsError, ValueError):
    """An input group whose requirements do not hold (docs/model.md: validation).

    ``problems`` lists every failed requirement; each names the input, the
    connection, the slot and the group, and says what would fix it.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class CsArgumentError(CsError, ValueError):
    """An argument that cannot be used: a malformed condition, a value of the wrong
    kind for its field, an impossible count; the message names it."""
