"""Result groups: the output side of a job (docs/model.md), and their .csg files.

A job's output group names several results about the same items (``blob``,
``ctf``, ``alignments3D``...); each result has one metafile per version and
may be a passthrough result (copied along from the job's input). A ``.csg``
file (YAML, docs/formats.md) describes a group; ``write_output`` writes one.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import itertools
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from . import spill
from ._version import __version__
from .dataset import Dataset
from .errors import (
    CsArgumentError,
    CsFieldError,
    CsFormatError,
    CsResultError,
    CsUidError,
    CsVersionError,
)
from .format import atomic_write, hidden_name, open_regular, remove_stale_temps, write_all
from .joins import join_tables

__all__ = [
    "ALIGNMENT_SCALARS",
    "MIN_FIELDS",
    "Result",
    "ResultGroup",
    "SINGLE_ITEM_TYPES",
    "result_type_of",
    "write_output",
]

# Item types that come one item per output group: their uids differ from job
# to job, so an override of their results cannot join on uid (docs/model.md).
SINGLE_ITEM_TYPES = frozenset({"volume", "mask"})

_JOB = re.compile(r"(?:^|_)(J\d+)_")
# cryoSPARC's metafile names (older releases prefix cryosparc_P3_):
#   J42_005_particles.cs                version 5 of output particles
#   J4_class_00_00100_particles.cs      class 00 at iteration (version) 100
#   J4_class_00_final_particles.cs      class 00, final version (its number is not in the name)
# head, version token, tail: siblings differ only in the token.
_VERSIONED = re.compile(r"^((?:.*_)?J\d+_(?:class_\d+_)?)(\d{1,18}|final)(_.+)$")

#: The scalar fields of an alignments2D/3D result (beside split, class, shift, pose).
ALIGNMENT_SCALARS = (
    "psize_A",
    "error",
    "error_min",
    "resid_pow",
    "slice_pow",
    "image_pow",
    "cross_cor",
    "alpha",
    "alpha_min",
    "weight",
    "pose_ess",
    "shift_ess",
    "class_posterior",
    "class_ess",
)

# The minimum fields of common result types: what cryoSPARC requires of an
# output result (``min_fields`` in its job documents), without the prefix.
# Sources: particle.blob, ctf, location, pick_stats and volume.blob (the type
# cryoSPARC gives volume maps) are the min_fields of the job documents in
# cryosparc-tools' tests; exposure results follow the required fields of
# cryosparc-tools' models/exposure.py (MicrographBlob, MovieBlob, CTF,
# StatBlob). No job document we could read lists alignments2D/3D: theirs are
# the fields docs/formats.md lists for real files. volume.map, map_half_A/B and
# mask (csfast's names for cryoSPARC's volume.blob results) take volume.blob's.
_ALIGNMENTS = ("split", "class", "shift", "pose", *ALIGNMENT_SCALARS)
_VOLUME = ("path", "shape", "psize_A")
# The CTF fields particles and exposures both require.
_CTF = (
    "type",
    "exp_group_id",
    "accel_kv",
    "cs_mm",
    "amp_contrast",
    "df1_A",
    "df2_A",
    "df_angle_rad",
    "phase_shift_rad",
)
MIN_FIELDS: dict[str, tuple[str, ...]] = {
    "particle.blob": ("path", "idx", "shape", "psize_A", "sign"),
    "particle.ctf": (
        *_CTF,
        "scale",
        "scale_const",
        "shift_A",
        "tilt_A",
        "trefoil_A",
        "tetra_A",
        "anisomag",
        "bfactor",
    ),
    "particle.location": (
        "micrograph_uid",
        "exp_group_id",
        "micrograph_path",
        "micrograph_shape",
        "center_x_frac",
        "center_y_frac",
    ),
    "particle.pick_stats": ("ncc_score", "power", "template_idx", "angle_rad"),
    "particle.alignments2D": _ALIGNMENTS,
    "particle.alignments3D": _ALIGNMENTS,
    "exposure.micrograph_blob": (
        "path",
        "idx",
        "shape",
        "psize_A",
        "format",
        "is_background_subtracted",
    ),
    "exposure.movie_blob": ("path", "shape", "psize_A", "format", "is_gain_corrected"),
    "exposure.ctf": (
        *_CTF,
        "path",
        "ctf_fit_to_A",
        "cross_corr_ctffind4",
        "fig_of_merit_gctf",
    ),
    "exposure.background_blob": ("path", "idx", "shape", "psize_A", "binfactor"),
    "exposure.stat_blob": ("path", "idx", "shape", "psize_A", "binfactor"),
    "volume.blob": _VOLUME,
    "volume.map": _VOLUME,
    "volume.map_half_A": _VOLUME,
    "volume.map_half_B": _VOLUME,
    "volume.mask": _VOLUME,
}

# Results named per class or per mode, and cryoSPARC's other exposure blobs,
# are of a type other than their name (cryosparc-tools spec.py / job.py).
_NAMED_TYPES = [
    (re.compile(r"particle\.alignments_class_\d+"), "particle.alignments3D"),
    (re.compile(r"particle\.components_mode_\d+"), "particle.components"),
    (re.compile(r"exposure\.micrograph_blob_(?:non_dw|thumb)"), "exposure.micrograph_blob"),
]


def result_type_of(name: str, item_type: str) -> str:
    """The type of a result known by its name: ``alignments_class_3`` of a particle is
    ``particle.alignments3D``; any other result is of type ``<item type>.<name>``."""
    full = f"{item_type}.{name}"
    for pattern, rtype in _NAMED_TYPES:
        if pattern.fullmatch(full):
            return rtype
    return full


@dataclass
class Result:
    """One result of an output group: its name, item type and metafiles.

    ``versions`` maps each version (iteration) number to its metafile; the
    final version is the highest number. A passthrough result maps each
    version of its group to the passthrough metafile written with it
    (docs/writes.md); one read from a .csg of cryoSPARC or csfast 0.1.0, whose
    single passthrough metafile serves every version, maps each version of
    the group to that file. ``group_label`` is the owning group's label
    (``J42.particles``), used in messages (``group``, its name before csfast
    0.2, still works and warns). ``result_type`` is the type the .csg names (``particle.blob``;
    multi-class results such as ``alignments_class_3`` have type
    ``particle.alignments3D``). ``counts`` gives the item count of each
    version where known (cryoSPARC's job documents list them); ``num_items``
    is the final version's.
    """

    name: str
    item_type: str
    versions: dict[int, str]
    num_items: int = 0
    passthrough: bool = False
    group_label: str = ""
    result_type: str = ""
    counts: dict[int, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        plural = "s" if len(self.versions) > 1 else ""
        listed = ", ".join(map(str, self.versions))
        kind = "passthrough" if self.passthrough else f"version{plural} {listed}"
        return (
            f"Result({self.label}, {self.result_type}, {self.num_items:,} items, {kind}: "
            f"{self.metafile})"
        )

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"result {self.name!r} has no metafile")
        self.versions = {int(v): os.fspath(p) for v, p in sorted(self.versions.items())}
        if not self.result_type:
            self.result_type = result_type_of(self.name, self.item_type)

    @property
    def label(self) -> str:
        """``J42.particles.blob``: the group's label and the result's name."""
        return f"{self.group_label}.{self.name}" if self.group_label else self.name

    @property
    def group(self) -> str:
        """Deprecated name of ``group_label`` (a ``Connection.group`` is a ResultGroup)."""
        warnings.warn("Result.group is now Result.group_label", DeprecationWarning, stacklevel=2)
        return self.group_label

    @group.setter
    def group(self, label: str) -> None:
        warnings.warn("Result.group is now Result.group_label", DeprecationWarning, stacklevel=2)
        self.group_label = label

    @property
    def version(self) -> int:
        """The final version."""
        return max(self.versions)

    @property
    def metafile(self) -> str:
        """The final version's metafile."""
        return self.versions[self.version]

    def num_items_of(self, version: int | None = None) -> int:
        """The item count a version's metafile should hold (0: unknown)."""
        if version is None or self.passthrough or version == self.version:
            return self.counts.get(self.version, self.num_items)
        return self.counts.get(version, 0)

    def metafile_of(self, version: int | None = None) -> str:
        """The metafile of a version (the final one by default).

        A passthrough result without that version gives its final metafile
        (``ResultGroup.load`` decides whether it belongs to a version).
        """
        if version is None:
            return self.metafile
        if self.passthrough:
            return self.versions.get(version, self.metafile)
        try:
            return self.versions[version]
        except KeyError:
            raise CsVersionError(
                f"result {self.label} has no version {version} "
                f"(versions: {', '.join(map(str, self.versions))})"
            ) from None

    def load(self, version: int | None = None) -> Dataset:
        """This result's fields (and uid) from its metafile; the final version by default."""
        return Dataset.load(self.metafile_of(version), results=[self.name])


@dataclass
class ResultGroup:
    """A job's output group: named results about the same items.

    ``job`` (``J42``) and ``name`` (``particles``) make the group's label
    ``J42.particles``; ``path`` is the .csg it was read from or saved to.
    """

    name: str
    item_type: str
    results: dict[str, Result] = field(default_factory=dict)
    title: str = ""
    description: str = ""
    job: str = ""
    path: str | None = None

    def __post_init__(self) -> None:
        for r in self.results.values():
            r.group_label = self.label

    @property
    def label(self) -> str:
        return f"{self.job}.{self.name}" if self.job else self.name

    def __repr__(self) -> str:
        own = [n for n, r in self.results.items() if not r.passthrough]
        carried = [n for n, r in self.results.items() if r.passthrough]
        text = f"ResultGroup({self.label}, {self.item_type}, {self.num_items:,} items: "
        text += ", ".join(own)
        return text + (f"; passthrough: {', '.join(carried)})" if carried else ")")

    def __getitem__(self, name: str) -> Result:
        try:
            return self.results[name]
        except KeyError:
            raise CsResultError(
                f"{self.label} has no result {name!r} (results: {', '.join(self.results)})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.results

    @property
    def num_items(self) -> int:
        return max((r.num_items for r in self.results.values()), default=0)

    @property
    def own_versions(self) -> set[int]:
        """The versions of the group's own (not passthrough) results."""
        return {v for r in self.results.values() if not r.passthrough for v in r.versions}

    @property
    def version(self) -> int:
        """The final version: the highest of its own results' (0 if it has none)."""
        return max(self.own_versions, default=0)

    def passthrough_metafile(self, name: str, version: int | None = None) -> str | None:
        """The metafile of passthrough result ``name`` for a version of the
        group (the final one by default), or None if the result is not part
        of that version.

        A passthrough result none of whose versions is a version of the
        group's own results (one built by hand with version 0, say) serves
        every version.
        """
        r = self[name]
        v = self.version if version is None else version
        if v in r.versions:
            return r.versions[v]
        return None if r.versions.keys() & self.own_versions else r.metafile

    # ------------------------------------------------------------------ .csg

    @classmethod
    def from_csg(cls, path: str | os.PathLike) -> ResultGroup:
        """Read a .csg file (docs/formats.md).

        A metafile written ``>name.cs`` is relative to the .csg's folder; an
        absolute path is taken as is; a plain relative path is relative to
        the current folder, or else to the project folder above the .csg's
        (cryoSPARC writes project-relative paths such as ``J42/J42_005_particles.cs``).

        Versions: a result's ``versions`` mapping if the .csg has one (csfast
        writes it). cryoSPARC's .csg files name only the final metafile; the
        other versions of such a result are the files beside it whose names
        differ from it only in the version number, by cryoSPARC's naming:
        ``J42_005_particles.cs`` is version 5, and beside it are
        ``J42_000_particles.cs``, ``J42_010_particles.cs``...;
        ``J4_class_00_00100_particles.cs`` is class 00 at version 100, and
        ``J4_class_00_final_particles.cs`` is class 00's final version, which
        its name does not number: it is taken as one above the highest
        version found beside it (0 when none is). A .csg written by csfast
        (``version: csfast-...``) lists every version itself, so nothing
        beside it is added. A passthrough result with no ``versions`` (cryoSPARC,
        csfast 0.1.0) has one metafile for every version of the group's own
        results (docs/writes.md).

        Anything that is not a valid .csg raises CsFormatError naming the
        file, among them documents beyond MAX_CSG_BYTES, MAX_CSG_NODES or
        MAX_CSG_DEPTH, YAML aliases, and values of the wrong type.
        """
        path = os.path.abspath(os.fspath(path))
        doc = _read_csg_document(path)
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("group"), dict)
            or not isinstance(doc.get("results"), dict)
        ):
            raise CsFormatError(f"{path}: a .csg file needs 'group' and 'results' mappings")
        g = doc["group"]
        folder = os.path.dirname(path)
        job_match = _JOB.search(os.path.basename(path))
        name = _text(g, "name", path, "group")
        item_type = _text(g, "type", path, "group")
        if not name or not item_type:
            raise CsFormatError(f"{path}: group needs a 'name' and a 'type'")
        results = {}
        listings: dict[str, list[str]] = {}
        # csfast's own .csg files list every version (a file left beside one
        # by a failed write is not a version of it).
        ours = str(doc.get("version") or "").startswith("csfast")
        unversioned = []  # passthrough results of cryoSPARC and csfast 0.1.0
        for rname, r in doc["results"].items():
            rname = str(rname)
            where = f"result {rname!r}"
            if not isinstance(r, dict) or "metafile" not in r:
                raise CsFormatError(f"{path}: {where} has no metafile")
            rtype = _text(r, "type", path, where) or result_type_of(rname, item_type)
            raw_versions = r.get("versions") or {}
            if not isinstance(raw_versions, dict):
                raise CsFormatError(f"{path}: {where}: versions must be a mapping")
            metafile = _text(r, "metafile", path, where)
            if not metafile:
                raise CsFormatError(f"{path}: {where}: empty metafile")
            versions = {}
            for v, m in raw_versions.items():
                if not isinstance(m, str) or not m:
                    raise CsFormatError(
                        f"{path}: {where}: the metafile of version {v!r:.40} "
                        f"is not a path ({m!r:.40})"
                    )
                versions[_version_key(v, path, where)] = _resolve(m, folder)
            num_items = r.get("num_items")
            if num_items is None:
                num_items = 0
            elif type(num_items) is not int or not 0 <= num_items < 2**63:
                raise CsFormatError(
                    f"{path}: {where}: num_items {num_items!r:.40} is not a "
                    "non-negative 64-bit integer"
                )
            passthrough = r.get("passthrough", "_passthrough_" in os.path.basename(metafile))
            if not isinstance(passthrough, bool):
                raise CsFormatError(
                    f"{path}: {where}: passthrough {passthrough!r:.40} is not true or false"
                )
            final = _resolve(metafile, folder)
            if not versions and not passthrough and not ours:
                versions = _versions_beside(final, listings)
            if final not in versions.values():
                versions[_version_of(final, versions)] = final
            results[rname] = Result(
                name=rname,
                item_type=rtype.split(".", 1)[0],
                versions=versions,
                num_items=num_items,
                passthrough=passthrough,
                result_type=rtype,
            )
            if passthrough and not raw_versions:
                unversioned.append(rname)
        serve_every_version(results, unversioned)
        return cls(
            name=name,
            item_type=item_type,
            results=results,
            title=_text(g, "title", path, "group"),
            description=_text(g, "description", path, "group"),
            job=job_match.group(1) if job_match else "",
            path=path,
        )

    def save_csg(self, path: str | os.PathLike | None = None) -> str:
        """Write this group as a .csg file, atomically; returns its path.

        Metafiles inside the .csg's folder (or below) are written ``>relative``,
        others as absolute paths. Beyond the keys of docs/formats.md, a result with
        several versions lists them under ``versions``, and a passthrough
        result says ``passthrough: true`` and always lists its ``versions``
        (the passthrough metafile of each version of the group).

        This writes the .csg alone: ``write_output`` is what writes a whole
        group safely (docs/writes.md).
        """
        target = os.path.abspath(os.fspath(path if path is not None else self.path or ""))
        if path is None and self.path is None:
            raise ValueError("save_csg needs a path: this group was not read from a .csg")
        folder = os.path.dirname(target)
        results: dict[str, Any] = {}
        for name, r in self.results.items():
            entry: dict[str, Any] = {
                "metafile": _relative(r.metafile, folder),
                "num_items": int(r.num_items),
                "type": r.result_type,
            }
            if r.passthrough:
                entry["passthrough"] = True
            if len(r.versions) > 1 or r.passthrough:
                entry["versions"] = {v: _relative(m, folder) for v, m in r.versions.items()}
            results[name] = entry
        doc = {
            "created": datetime.datetime.now().replace(microsecond=0),
            "group": {
                "name": self.name,
                "title": self.title or _title(self.name),
                "type": self.item_type,
                "description": self.description,
            },
            "results": results,
            "version": f"csfast-{__version__}",
        }
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
        atomic_write(target, lambda f: f.write(text))
        self.path = target
        return target

    # ------------------------------------------------------------------ load

    def load(
        self,
        slots: Sequence[str] | None = None,
        version: int | None = None,
        passthrough: bool = True,
    ) -> Dataset:
        """One table: the inner join on uid of the results asked for.

        ``slots`` names results (default: the group's non-passthrough results);
        ``passthrough`` adds the group's passthrough results. Each metafile is
        opened once, for all the results it holds. Rows follow the first
        named result's metafile. ``version`` picks a version (the final one
        by default); passthrough results come from the passthrough metafile
        written with that version, and those not part of it are left out
        (named in ``slots``, CsVersionError).
        """
        names = (
            list(slots)
            if slots is not None
            else [n for n, r in self.results.items() if not r.passthrough]
        )
        for n in names:
            self[n]  # noqa: B018 - raises CsResultError naming the group's results
        if passthrough:
            names += [n for n, r in self.results.items() if r.passthrough and n not in names]
        if not names:
            raise CsResultError(f"{self.label}: no results to load")
        parts: dict[str, list[str]] = {}
        for n in names:
            r = self.results[n]
            path = (
                self.passthrough_metafile(n, version) if r.passthrough else r.metafile_of(version)
            )
            if path is None:
                if slots is not None and n in slots:
                    raise CsVersionError(
                        f"passthrough result {r.label} is not part of version "
                        f"{self.version if version is None else version} "
                        f"(versions: {', '.join(map(str, r.versions))})"
                    )
                continue
            parts.setdefault(path, []).append(n)
        if not parts:
            raise CsResultError(f"{self.label}: no results to load for version {version}")
        tables = [Dataset.load(p, results=ns) for p, ns in parts.items()]
        return join_tables(tables)


def serve_every_version(results: Mapping[str, Result], names: Iterable[str]) -> None:
    """Map each named passthrough result's one metafile to every version of the
    group's own results: cryoSPARC and csfast 0.1.0 write one passthrough file
    that serves every version (docs/writes.md)."""
    own = {v for r in results.values() if not r.passthrough for v in r.versions}
    if not own:
        return
    for n in names:
        r = results[n]
        r.versions = dict.fromkeys(sorted(own), r.metafile)
        if len(r.counts) == 1:  # one file, one count
            r.counts = dict.fromkeys(sorted(own), *r.counts.values())


# ---------------------------------------------------------------------- .csg


# A .csg names a group's results: a few kB in practice, about 400 kB for 100
# results of 100 versions each. Bigger documents, deeper nesting and aliases
# are refused: they only serve to make a reader spend time or memory (an alias
# of an alias of ... expands exponentially once the values are used). Reading
# Each value costs PyYAML about 10 µs and 400 bytes (a node, its events and
# marks): the count of values bounds the cost, 1 s and 40 MB with libyaml.
MAX_CSG_BYTES = 2 * 1024 * 1024
MAX_CSG_DEPTH = 32
MAX_CSG_NODES = 100_000


class _CsgComposer(yaml.composer.Composer):
    """YAML's composer, refusing aliases, nesting deeper than MAX_CSG_DEPTH
    (the composer and constructor recurse once per level) and more than
    MAX_CSG_NODES values (keys, values and collections all count)."""

    _depth = 0
    _nodes = 0
    # From the parser it is mixed with (the loaders below); PyYAML's stubs
    # give the composer alone neither.
    check_event: Callable[..., bool]
    peek_event: Callable[..., Any]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not allowed in a .csg file",
                self.peek_event().start_mark,
            )
        if self._depth >= MAX_CSG_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_CSG_DEPTH} levels",
                self.peek_event().start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_CSG_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_CSG_NODES} values", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _CsgConstructor(yaml.constructor.SafeConstructor):
    """PyYAML's safe constructor with integers of at most 64 bits: Python
    hashes an integer to its value modulo 2**61 - 1, so a mapping keyed by
    larger ones chosen to collide would take quadratic time to build."""

    def construct_yaml_int(self, node: Any) -> int:
        # a long digit string is refused before int() spends time on it
        value = super().construct_yaml_int(node) if len(node.value) <= 80 else None
        if value is None or not -(2**63) <= value < 2**64:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer {node.value[:30]!r} beyond 64 bits", node.start_mark
            )
        return value


_CsgConstructor.add_constructor(  # type: ignore[type-var]  # PyYAML's stubs: base class only
    "tag:yaml.org,2002:int", _CsgConstructor.construct_yaml_int
)


class _PyCsgLoader(_CsgComposer, _CsgConstructor, yaml.SafeLoader):
    """PyYAML's safe loader (all Python) with the composer above."""


_CsgLoader: type = _PyCsgLoader
if getattr(yaml, "__with_libyaml__", False):

    class _CCsgLoader(
        _CsgComposer,
        yaml.cyaml.CParser,  # type: ignore[name-defined]
        _CsgConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml's parser (iterative C, 5 times faster than Python's) under the
        composer above: libyaml's own composer recurses in C and crashes on deep
        nesting."""

        def __init__(self, stream: bytes):
            yaml.cyaml.CParser.__init__(self, stream)  # type: ignore[attr-defined]
            _CsgComposer.__init__(self)
            _CsgConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _CsgLoader = _CCsgLoader


def _read_csg_document(path: str) -> Any:
    """The YAML document of a .csg, within MAX_CSG_BYTES and MAX_CSG_DEPTH, without
    aliases; CsFormatError naming the file for anything else."""
    with open_regular(path) as f:
        data = f.read(MAX_CSG_BYTES + 1)
    if len(data) > MAX_CSG_BYTES:
        raise CsFormatError(f"{path}: larger than {MAX_CSG_BYTES} bytes, beyond any real .csg")
    loader = None
    try:
        loader = _CsgLoader(data)  # PyYAML's reader checks the encoding here
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(text for text in (e.context, e.problem) if text)
        if "maximum nesting depth" in what:  # libyaml >= 0.2.5 stops deep flows itself
            what = f"nested deeper than {MAX_CSG_DEPTH} levels"
        raise CsFormatError(f"{path}: not a valid .csg (YAML) file: {what}{at}") from None
    except yaml.reader.ReaderError as e:  # bytes that are not text
        raise CsFormatError(
            f"{path}: not a valid .csg (YAML) file: {e.reason} at byte {e.position}"
        ) from None
    except yaml.YAMLError as e:
        raise CsFormatError(
            f"{path}: not a valid .csg (YAML) file: {' '.join(str(e).split())}"
        ) from None
    except (ValueError, OverflowError) as e:  # a date or number Python cannot hold
        raise CsFormatError(
            f"{path}: not a valid .csg (YAML) file: a value out of range ({e})"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _text(mapping: dict, key: str, path: str, where: str) -> str:
    """mapping[key] as text ("" when absent or null); a list or mapping is an error."""
    value = mapping.get(key)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise CsFormatError(
            f"{path}: {where}: {key} must be text, not a "
            f"{'mapping' if isinstance(value, dict) else 'list'}"
        )
    return str(value)


def _version_key(v: object, path: str, where: str) -> int:
    """A version number: an integer >= 0, or text of its digits (as YAML may quote it)."""
    if type(v) is int and v >= 0:
        return v
    if isinstance(v, str) and re.fullmatch(r"[0-9]{1,18}", v):
        return int(v)
    raise CsFormatError(f"{path}: {where}: version {v!r:.40} is not a non-negative integer")


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _version_of(metafile: str, others: dict[int, str] | None = None) -> int:
    """The version a metafile's name gives; a ``final`` one comes after ``others``."""
    m = _VERSIONED.match(os.path.basename(metafile.lstrip(">")))
    if m is None:
        return 0
    if m.group(2) == "final":
        return max(others) + 1 if others else 0
    return int(m.group(2))


def _versions_beside(final: str, listings: dict[str, list[str]]) -> dict[int, str]:
    """{version: metafile} of the files beside final named like it but for the version."""
    m = _VERSIONED.match(os.path.basename(final))
    if m is None:
        return {}
    folder = os.path.dirname(final)
    if folder not in listings:
        try:
            listings[folder] = os.listdir(folder)
        except OSError:  # a missing folder: check() reports the missing metafile
            listings[folder] = []
    head, tail = m.group(1), m.group(3)
    sibling = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    found = {}
    for name in listings[folder]:
        s = sibling.fullmatch(name)
        if s is not None:
            found[int(s.group(1))] = os.path.join(folder, name)
    return found


def _resolve(metafile: str, folder: str) -> str:
    if metafile.startswith(">"):
        return os.path.normpath(os.path.join(folder, metafile[1:]))
    if os.path.isabs(metafile):
        return metafile
    here = os.path.abspath(metafile)
    project = os.path.normpath(os.path.join(folder, os.pardir, metafile))
    return here if os.path.exists(here) or not os.path.exists(project) else project


def _relative(metafile: str, folder: str) -> str:
    path = os.path.abspath(metafile)
    rel = os.path.relpath(path, folder)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return ">" + rel.replace(os.sep, "/")


# ---------------------------------------------------------------------- output


@spill.spills_beside("folder")
def write_output(
    folder: str | os.PathLike,
    job: str,
    name: str,
    dataset: Dataset,
    item_type: str,
    results: Collection[str],
    passthrough: Dataset | None = None,
    version: int = 0,
    *,
    title: str | None = None,
    result_types: Mapping[str, str] | None = None,
    validate: bool = True,
) -> ResultGroup:
    """Write a job's output group; returns the ResultGroup (its ``path`` the .csg).

    - the new ``results`` (the fields of ``dataset`` of those results, plus
      uid) go to ``<job>_<version:03d>_<name>.cs``;
    - with ``passthrough`` (a ``Dataset``: typically the job's input,
      ``Input.load(passthrough=True)``), every result of it that ``results`` does not
      replace goes to ``<job>_passthrough_<name>.cs``, for exactly the output's
      uids and in the output's row order (CsUidError if an output uid is not
      in it);
    - ``<job>_<name>.csg`` ties them together, with each result's type:
      ``result_types`` maps result names to types (``"alignments3D"`` or
      ``"particle.alignments3D"``); a result it does not name has the type
      ``result_type_of`` gives (``alignments_class_0`` of a particle is
      ``particle.alignments3D``, ``blob`` is ``particle.blob``).

    With ``validate`` (the default), a new result whose type has minimum
    fields (``MIN_FIELDS``, as cryoSPARC requires) must have them all in
    ``dataset``: else CsFieldError listing what is missing, and nothing is
    written. ``validate=False`` writes it anyway.

    Writing another version of the same output adds its files and updates the
    .csg: earlier versions stay listed, each with the passthrough written
    with it, and a version written without ``passthrough`` takes the
    passthrough of the group's final version. Writing version N again never
    changes what another version loads. Fields of ``dataset`` outside
    ``results`` are not written.

    The write is all or nothing for readers (docs/writes.md): data files go
    to names the current .csg does not use (``<job>_005_<name>.1.cs`` when it
    uses ``<job>_005_<name>.cs``), the atomic replace of the .csg publishes
    them, and only then are the files it no longer names removed. Writers of
    one group take turns on a lock file, ``.<job>_<name>.csg.<hash>.lock``.
    """
    folder = os.fspath(folder)
    results = list(dict.fromkeys(results))
    if passthrough is not None and not isinstance(passthrough, Dataset):
        raise TypeError(
            f"{job}.{name}: passthrough is a Dataset, not "  # an Input before 0.2
            f"{type(passthrough).__name__}; for an Input, pass "
            "input.load(passthrough=True)"
        )
    if not results:
        raise CsResultError(f"{job}.{name}: an output group needs at least one new result")
    missing = [r for r in results if r not in dataset.prefixes()]
    if missing:
        raise CsResultError(
            f"{job}.{name}: results {missing} are not in the dataset "
            f"(it has: {', '.join(dataset.prefixes())})"
        )
    types = _result_types(f"{job}.{name}", item_type, result_types)
    if validate:
        _check_min_fields(f"{job}.{name}", dataset, results, item_type, types)
    csg_path = os.path.abspath(os.path.join(folder, f"{job}_{name}.csg"))
    n = len(dataset)

    main = _project(dataset, results)
    pt_table = None
    if passthrough is not None:
        carried = [p for p in passthrough.prefixes() if p not in results]
        if carried:
            pt_table = _passthrough_rows(passthrough, carried, main, f"{job}.{name}")

    with _GroupLock(csg_path) as lock:
        previous = ResultGroup.from_csg(csg_path) if os.path.exists(csg_path) else None
        if previous is not None and previous.item_type != item_type:
            raise CsArgumentError(
                f"{csg_path}: existing group is of item type "
                f"{previous.item_type!r}, not {item_type!r}"
            )
        in_use = _metafiles(previous)
        lock.clean(in_use)
        main_path = _free_name(csg_path, f"{job}_{version:03d}_{name}", in_use)
        pt_path = (
            None if pt_table is None else _free_name(csg_path, f"{job}_passthrough_{name}", in_use)
        )
        written = {p for p in (main_path, pt_path) if p is not None}
        # The files this write may leave unnamed: its own, and the group's files
        # in its folder (a .csg may name files of other jobs: never removed).
        own = {
            p
            for p in in_use
            if os.path.dirname(p) == os.path.dirname(csg_path)
            and os.path.basename(p).startswith(f"{job}_")
        }
        lock.journal(written | own)
        try:
            main.save(main_path)
            if pt_table is not None and pt_path is not None:
                pt_table.save(pt_path)
            group = _next_group(
                previous,
                job,
                name,
                item_type,
                results,
                types,
                n,
                version,
                main_path,
                pt_path,
                pt_table,
                title,
            )
            group.save_csg(csg_path)  # publishes the new files, atomically
        except OSError:  # atomic_write raises OSError only before its rename: not published
            _remove(written - in_use)
            raise
        _remove(own - _metafiles(group))
        lock.journal(set())
    return group


def _next_group(
    previous: ResultGroup | None,
    job: str,
    name: str,
    item_type: str,
    results: list[str],
    types: Mapping[str, str],
    n: int,
    version: int,
    main_path: str,
    pt_path: str | None,
    pt_table: Dataset | None,
    title: str | None,
) -> ResultGroup:
    """The group after writing ``version``: the previous one's results and versions,
    with this version's main and passthrough files."""
    new: dict[str, Result] = {}
    if previous is not None:
        for rname, r in previous.results.items():
            if rname in results:
                continue
            if r.passthrough:
                kept = _passthrough_at(
                    previous, r, version, pt_path, pt_table, types.get(rname, r.result_type)
                )
                if kept is None:
                    continue
                r = kept
            new[rname] = r
    for rname in results:
        versions = {}
        if (
            previous is not None
            and rname in previous.results
            and not previous.results[rname].passthrough
        ):
            versions = dict(previous.results[rname].versions)
        versions[version] = main_path
        new[rname] = Result(
            rname, item_type, versions, num_items=n, result_type=types.get(rname, "")
        )
    if pt_table is not None and pt_path is not None:
        for rname in pt_table.prefixes():
            if rname not in new:
                new[rname] = Result(
                    rname,
                    item_type,
                    {version: pt_path},
                    num_items=n,
                    passthrough=True,
                    result_type=types.get(rname, ""),
                )
    return ResultGroup(
        name=name,
        item_type=item_type,
        results=new,
        title=title or (previous.title if previous else _title(name)),
        description=previous.description if previous else "",
        job=job,
    )


def _passthrough_at(
    previous: ResultGroup,
    r: Result,
    version: int,
    pt_path: str | None,
    pt_table: Dataset | None,
    result_type: str,
) -> Result | None:
    """Passthrough result r of the previous group, with its file for ``version``:
    the new passthrough file if it carries r, none if a new passthrough does not
    (None when r is then part of no version), else the passthrough of the
    previous final version. The other versions keep theirs."""
    versions = dict(r.versions)
    if pt_table is not None and pt_path is not None:
        if r.name in pt_table.prefixes():
            versions[version] = pt_path
        else:
            versions.pop(version, None)
    elif version not in versions:
        final = previous.passthrough_metafile(r.name)
        if final is not None:
            versions[version] = final
    if not versions:
        return None
    return Result(
        r.name,
        r.item_type,
        versions,
        num_items=r.num_items,
        passthrough=True,
        result_type=result_type,
        counts=dict(r.counts),
    )


class _GroupLock:
    """The lock file of a group, ``.<job>_<name>.csg.<hash>.lock``, held (flock)
    while one writer writes the group; the lock goes with the writer's death.

    It is also the writer's journal: the names of the data files it is about
    to write and of the group's files it may leave unnamed, cleared once the
    new .csg is published and the unnamed ones removed. The next writer
    removes the files a killed writer journaled that the .csg does not name,
    and their temporary files (no live writer can hold them while the lock
    is ours).
    """

    def __init__(self, csg_path: str) -> None:
        self.csg_path = csg_path
        self.folder = os.path.dirname(csg_path)
        self.path = os.path.join(self.folder, f"{hidden_name(csg_path)}lock")
        self.fd = -1
        self.journaling = False

    def __enter__(self) -> _GroupLock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            self.journaling = True
        except PermissionError:  # another user's lock file: lock, but keep no journal
            self.fd = os.open(self.path, os.O_RDONLY)
            self.journaling = False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def journal(self, paths: set[str]) -> None:
        if not self.journaling:
            return
        text = "".join(os.path.basename(p) + "\n" for p in sorted(paths))
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        write_all(functools.partial(os.write, self.fd), text.encode("utf-8", "surrogateescape"))

    def clean(self, in_use: set[str]) -> None:
        """Remove what a killed writer left: its journaled files the .csg does not
        name, and the temporary files of every journaled file and of the .csg."""
        size = os.fstat(self.fd).st_size
        names = os.pread(self.fd, size, 0).decode("utf-8", "surrogateescape").splitlines()
        paths = {
            os.path.join(self.folder, n)
            for n in names
            if n not in ("", ".", "..") and os.sep not in n
        }
        for p in paths | {self.csg_path}:
            remove_stale_temps(p, age=0)
        _remove(paths - in_use)


def _metafiles(group: ResultGroup | None) -> set[str]:
    if group is None:
        return set()
    return {os.path.abspath(m) for r in group.results.values() for m in r.versions.values()}


def _free_name(csg_path: str, stem: str, in_use: set[str]) -> str:
    """``<stem>.cs``, or ``<stem>.1.cs``, ``<stem>.2.cs``...: the first name the
    current .csg does not use (a file of that name no .csg names is garbage)."""
    folder = os.path.dirname(csg_path)
    for k in itertools.count():
        path = os.path.join(folder, f"{stem}.cs" if k == 0 else f"{stem}.{k}.cs")
        if path not in in_use:
            return path
    raise AssertionError("unreachable")


def _remove(paths: set[str]) -> None:
    """Remove files no .csg names (a reader that read the old .csg just before
    may find one gone: FileNotFoundError, never a mixed group)."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _result_types(
    label: str, item_type: str, result_types: Mapping[str, str] | None
) -> dict[str, str]:
    """{result name: full type} from write_output's result_types (short types completed)."""
    types = {}
    for rname, rtype in (result_types or {}).items():
        full = rtype if "." in rtype else f"{item_type}.{rtype}"
        if full.split(".", 1)[0] != item_type:
            raise CsResultError(
                f"{label}: result {rname!r} cannot be of type {full!r} in a "
                f"{item_type!r} output group"
            )
        types[rname] = full
    return types


def _check_min_fields(
    label: str, dataset: Dataset, results: list[str], item_type: str, types: Mapping[str, str]
) -> None:
    """CsFieldError listing every new result that lacks its type's minimum fields."""
    have = set(dataset.fields())
    lacking = []
    for rname in results:
        rtype = types.get(rname) or result_type_of(rname, item_type)
        missing = [f for f in MIN_FIELDS.get(rtype, ()) if f"{rname}/{f}" not in have]
        if missing:
            lacking.append(f"{rname!r} ({rtype}) lacks {', '.join(missing)}")
    if lacking:
        raise CsFieldError(
            f"{label}: results miss their type's minimum fields: "
            f"{'; '.join(lacking)}; add them, or pass validate=False"
        )


def _project(ds: Dataset, results: Iterable[str]) -> Dataset:
    """A dataset of uid and the fields of the given results (mapped and lazy
    columns shared, owned ones copied)."""
    wanted = set(results)
    # The same rule as Dataset.filter_prefixes: a result's fields are "result/...".
    names = [k for k in ds.fields() if k == "uid" or ("/" in k and k.split("/", 1)[0] in wanted)]
    if len(names) == len(ds.fields()):
        return ds
    return ds._with_fields(names)


def _passthrough_rows(pt: Dataset, carried: list[str], main: Dataset, label: str) -> Dataset:
    """pt's fields of the carried results for exactly main's uids, in main's order."""
    uids = main.view("uid")
    if np.array_equal(pt.view("uid"), uids):
        # The job kept every input row in order (the common case): no join needed.
        return _project(pt, carried)
    table = Dataset.innerjoin_many(Dataset({"uid": uids}), pt)
    if len(table) != len(main):
        absent = np.setdiff1d(uids, pt.view("uid"))
        raise CsUidError(
            f"{label}: {len(absent)} output uids are not in the passthrough input "
            f"(e.g. {', '.join(str(int(u)) for u in absent[:5])}); an output can only "
            "pass through results of items it received"
        )
    # The joined table is ours alone, so narrowing it in place copies nothing.
    return table.filter_prefixes(carried)
