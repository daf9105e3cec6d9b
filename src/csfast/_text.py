"""Sizes, durations and table shapes as people read them, for the command line and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def size_text(nbytes: float) -> str:
    """A byte count in B, KiB, MiB, GiB or TiB, e.g. ``"1.5 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def time_text(seconds: float) -> str:
    """A duration in ms below 10 s, in s above."""
    if seconds < 0.01:
        return f"{1000 * seconds:.1f} ms"
    return f"{1000 * seconds:,.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def shape_text(ds: Any) -> str:
    """``"N rows x M fields"`` of a Dataset."""
    rows, fields = len(ds), len(ds.fields())
    return f"{rows:,} row{'s' if rows != 1 else ''} x {fields} field{'s' if fields != 1 else ''}"


def results_text(group: Any, passthrough: bool) -> str:
    """A result group's own results with their versions, or (passthrough) "+ " its
    passthrough results."""
    names = [n for n, r in group.results.items() if r.passthrough == passthrough]
    if passthrough:
        return "+ " + ", ".join(names) if names else ""
    versions = sorted({v for n in names for v in group.results[n].versions})
    shown = (
        f" (version{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))})"
        if versions
        else ""
    )
    return ", ".join(names) + shown


def columns_text(rows: Sequence[tuple[str, ...]], right: tuple[int, ...]) -> list[str]:
    """Rows of cells as aligned lines (columns in right aligned right), indented by two."""
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
