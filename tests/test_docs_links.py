"""The documentation's links resolve inside the repository.

Every relative link in README.md, CHANGELOG.md, docs/*.md and
benchmarks/README.md must name a file of the repository (never one outside
it, where a user's copy has nothing), and a ``#fragment`` pointing into a
Markdown file must name one of its headings, slugged as GitHub does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    {
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    }
)

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:


def _prose(text: str) -> str:
    """The text outside fenced code blocks (where `#` starts comments, not headings)."""
    return FENCE.sub("", text)


def _links(page: Path) -> list[str]:
    return LINK.findall(CODE_SPAN.sub("", _prose(page.read_text(encoding="utf-8"))))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens,
    repeated headings numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(_prose(page.read_text(encoding="utf-8"))):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_pages_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CHANGELOG.md", "benchmarks/README.md", "docs/model.md"} <= names
    assert all(p.is_file() for p in PAGES)


def test_slugs_as_github_makes_them(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "# File formats\n## `.cs`: the table\n## Fuzzing the readers: `fuzz.py`\n"
        "```bash\n# a comment\n```\n## Speed\n## Speed\n"
    )
    assert _anchors(page) == {
        "file-formats",
        "cs-the-table",
        "fuzzing-the-readers-fuzzpy",
        "speed",
        "speed-1",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(page):
    problems = []
    for link in _links(page):
        if EXTERNAL.match(link):
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if path.startswith("/") or not target.is_relative_to(ROOT):
            problems.append(f"{link}: outside the repository")
        elif not target.is_file():
            problems.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in _anchors(target):
            problems.append(f"{link}: no heading #{fragment} in {target.relative_to(ROOT)}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


CITATION = re.compile(r"\bdocs/[\w.-]+\.md\b")
# Design notes the project was started from, which no user or contributor gets.
UNSHIPPED = re.compile(r"\b(?:MODEL|CS_FORMAT|PERFORMANCE|STYLE)\.md\b")


def _sources() -> list[Path]:
    return [
        f
        for folder in ("src", "csrc", "benchmarks", "tests")
        for f in sorted((ROOT / folder).rglob("*"))
        if f.suffix in {".py", ".pyx", ".pyi", ".c", ".h"} and f.resolve() != Path(__file__)
    ]


def test_docs_cited_in_the_code_ship_with_it():
    """Docstrings and comments cite pages of docs/, and those pages exist."""
    cited: dict[str, list[str]] = {}
    unshipped = []
    for f in _sources():
        text = f.read_text(encoding="utf-8")
        for name in CITATION.findall(text):
            cited.setdefault(name, []).append(f.relative_to(ROOT).as_posix())
        unshipped += [f"{f.relative_to(ROOT)}: {m}" for m in UNSHIPPED.findall(text)]
    assert "docs/model.md" in cited and "docs/formats.md" in cited
    missing = {name: files for name, files in cited.items() if not (ROOT / name).is_file()}
    assert not missing, f"cited but not in the repository: {missing}"
    assert not unshipped, f"cite documents that do not ship: {unshipped}"
