"""cryoSPARC project folders, read offline: every job's outputs and inputs from its job.json.

A project folder holds one folder per job (``J42/``) with the job's metafiles
and its job document, ``job.json`` (docs/projects.md). Two shapes of the
document exist, with cryosparc-tools' field names:

- cryoSPARC v4 and earlier: top-level ``input_slot_groups``,
  ``output_result_groups`` and ``output_results``;
- v5: ``spec.inputs`` and ``spec.outputs``.

Both are read into the same objects: each output group a ``ResultGroup``
(every result with all its versions and metafiles), each input group an
``Input`` with its spec and its connections restored slot by slot, so that
``Input.load()`` assembles what the job read. Opening a project and reading
a job's outputs and inputs reads job documents only, one job at a time, when
first asked.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._version import __version__
from .errors import CsFormatError, CsProjectError, InputError
from .format import atomic_write, open_regular
from .groups import Result, ResultGroup, serve_every_version
from .inputs import Input, InputSpec, Slot
from .tables import inspect

__all__ = ["Project", "Job", "JOB_DOCUMENT", "write_job"]

JOB_DOCUMENT = "job.json"

_JOB_UID = re.compile(r"J(\d+)")
_MISSING = object()


# ---------------------------------------------------------------------- documents
#
# Both shapes are first read into these plain records (checking every key the
# model needs), then turned into ResultGroups and Inputs.


@dataclass(frozen=True)
class _ResultDoc:
    name: str
    type: str  # full: "particle.alignments3D"
    versions: tuple[int, ...]
    metafiles: tuple[str, ...]  # relative to the project folder
    counts: tuple[int, ...]  # one per version (-1: unknown), or empty when the document has none
    passthrough: bool


@dataclass(frozen=True)
class _OutputDoc:
    name: str
    item_type: str
    title: str
    description: str
    num_items: int | None
    results: tuple[_ResultDoc, ...]


@dataclass(frozen=True)
class _SlotDoc:
    name: str
    type: str  # full
    required: bool


@dataclass(frozen=True)
class _SourceDoc:
    """Where a slot (or, with ``slot`` None, a passthrough result) of a connection comes from."""

    slot: str | None
    job: str
    group: str
    result: str
    version: int | None  # None: the final version ("F")
    key: str  # where it is in the document, for messages


@dataclass(frozen=True)
class _ConnectionDoc:
    job: str
    group: str
    sources: tuple[_SourceDoc, ...]
    key: str


@dataclass(frozen=True)
class _InputDoc:
    name: str
    item_type: str
    title: str
    slots: tuple[_SlotDoc, ...]
    count_min: int
    count_max: int | None
    repeat_allowed: bool
    connections: tuple[_ConnectionDoc, ...]
    key: str


class _Reader:
    """Typed access to a job document's keys; every failure names the job and the key."""

    def __init__(self, job: str, path: str):
        self.job, self.path = job, path

    def error(self, key: str, what: str) -> CsFormatError:
        return CsFormatError(f"job {self.job} ({self.path}): key {key!r} {what}")

    def get(
        self, obj: Mapping[str, Any], where: str, key: str, kind: str, default: Any = _MISSING
    ) -> Any:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(f"{where}.{key}" if where else key, "is missing")
            return default
        ok, want = _KINDS[kind]
        if not ok(value):
            raise self.error(
                f"{where}.{key}" if where else key, f"must be {want}, not {_shown(value)}"
            )
        return value

    def items(
        self,
        obj: Mapping[str, Any],
        where: str,
        key: str,
        default: Any = _MISSING,
        by_name: bool = False,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The mappings of a list (``by_name``: of a mapping, by name) with their key paths."""
        path = f"{where}.{key}" if where else key
        value = self.get(obj, where, key, "dict" if by_name else "list", default)
        pairs = (
            value.items()
            if isinstance(value, dict)
            else ((f"[{i}]", v) for i, v in enumerate(value))
        )
        out = []
        for k, v in pairs:
            at = f"{path}{k}" if k.startswith("[") else f"{path}.{k}"
            if not isinstance(v, dict):
                raise self.error(at, f"must be a mapping, not {_shown(v)}")
            out.append((at, v))
        return out


def _is_int(v: Any) -> bool:
    return type(v) is int  # JSON integers; not bool


def _ints(v: Any) -> bool:
    """A list of non-negative integers (one pass in C for the usual short lists)."""
    return type(v) is list and all(type(x) is int for x in v) and (not v or min(v) >= 0)


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "str?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "count": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "count_max": (
        lambda v: v is None or v == "inf" or (_is_int(v) and v >= 0),
        'a non-negative integer, "inf" or null',
    ),
    "version": (
        lambda v: v == "F" or (_is_int(v) and v >= 0),
        '"F" or a non-negative version number',
    ),
    "versions": (_ints, "a list of version numbers"),
    "paths": (
        lambda v: type(v) is list and all(type(x) is str and x for x in v),
        "a list of paths",
    ),
    "counts": (lambda v: (_is_int(v) and v >= 0) or _ints(v), "an item count or a list of them"),
    "passthrough": (
        lambda v: v is False or v is None or isinstance(v, str),
        "false or an input name",
    ),
    "list": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
}


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _full_type(item_type: str, dtype: str) -> str:
    """v5 names result types short (``ctf``); v4 and csfast name them in full (``particle.ctf``)."""
    return dtype if "." in dtype else f"{item_type}.{dtype}"


def _result(r: _Reader, where: str, doc: Mapping[str, Any], name: str, rtype: str) -> _ResultDoc:
    """The keys a v4 output result and a v5 output result share."""
    versions = r.get(doc, where, "versions", "versions", [])
    metafiles = r.get(doc, where, "metafiles", "paths", [])
    if len(versions) != len(metafiles):
        raise r.error(
            f"{where}.metafiles", f"lists {len(metafiles)} metafiles for {len(versions)} versions"
        )
    if len(set(versions)) != len(versions):
        raise r.error(f"{where}.versions", f"repeats a version: {versions}")
    counts = r.get(doc, where, "num_items", "counts", [])
    if isinstance(counts, list):
        if counts and len(counts) != len(versions):
            raise r.error(
                f"{where}.num_items", f"lists {len(counts)} counts for {len(versions)} versions"
            )
    elif versions:  # one count: the final version's (older documents)
        counts = [counts if v == max(versions) else -1 for v in versions]
    return _ResultDoc(
        name,
        rtype,
        tuple(versions),
        tuple(metafiles),
        tuple(counts),
        r.get(doc, where, "passthrough", "bool", False),
    )


def _version(value: int | str) -> int | None:
    return None if value == "F" else int(value)


def _count_max(value: int | str | None) -> int | None:
    return None if value is None or value == "inf" else int(value)


def _outputs_v4(r: _Reader, doc: Mapping[str, Any]) -> list[_OutputDoc]:
    by_group: dict[str, list[_ResultDoc]] = {}
    for at, res in r.items(doc, "", "output_results"):
        name = r.get(res, at, "name", "str")
        group = r.get(res, at, "group_name", "str")
        rtype = r.get(res, at, "type", "str")
        by_group.setdefault(group, []).append(_result(r, at, res, name, rtype))
    outputs = []
    for at, g in r.items(doc, "", "output_result_groups"):
        name = r.get(g, at, "name", "str")
        counts = r.get(g, at, "num_items", "counts", None)
        outputs.append(
            _OutputDoc(
                name,
                r.get(g, at, "type", "str"),
                r.get(g, at, "title", "text", ""),
                r.get(g, at, "description", "text", ""),
                counts[-1]
                if isinstance(counts, list) and counts
                else counts
                if isinstance(counts, int)
                else None,
                tuple(by_group.pop(name, ())),
            )
        )
    if by_group:
        group = next(iter(by_group))
        raise r.error(
            "output_results", f"names group {group!r}, which is not in output_result_groups"
        )
    return outputs


@dataclass(frozen=True)
class _Keys:
    """The names a document shape gives to the same things in its input groups."""

    sources: str  # a connection's list of what fills each slot
    slot: str  # the slot filled (null: a passthrough result)
    slot_default: Any  # the slot when the key is absent (_MISSING: required)
    group: str  # the output group of the job
    result: str  # the result in that group
    count_max: Any  # count_max when absent (unbounded)


_V4 = _Keys("slots", "slot_name", _MISSING, "group_name", "result_name", None)
_V5 = _Keys("results", "name", None, "output", "result", "inf")


def _input_doc(
    r: _Reader,
    at: str,
    g: Mapping[str, Any],
    name: str,
    item_type: str,
    slots: tuple[_SlotDoc, ...],
    keys: _Keys,
) -> _InputDoc:
    """The keys a v4 input slot group and a v5 input share, with their names in ``keys``."""
    connections = []
    for cat, c in r.items(g, at, "connections", []):
        sources = tuple(
            _SourceDoc(
                r.get(s, sat, keys.slot, "str?", keys.slot_default),
                r.get(s, sat, "job_uid", "str"),
                r.get(s, sat, keys.group, "str"),
                r.get(s, sat, keys.result, "str"),
                _version(r.get(s, sat, "version", "version", "F")),
                sat,
            )
            for sat, s in r.items(c, cat, keys.sources, [])
        )
        connections.append(
            _ConnectionDoc(
                r.get(c, cat, "job_uid", "str"), r.get(c, cat, keys.group, "str"), sources, cat
            )
        )
    return _InputDoc(
        name,
        item_type,
        r.get(g, at, "title", "text", ""),
        slots,
        r.get(g, at, "count_min", "count", 0),
        _count_max(r.get(g, at, "count_max", "count_max", keys.count_max)),
        r.get(g, at, "repeat_allowed", "bool", False),
        tuple(connections),
        at,
    )


def _inputs_v4(r: _Reader, doc: Mapping[str, Any]) -> list[_InputDoc]:
    inputs = []
    for at, g in r.items(doc, "", "input_slot_groups"):
        slots = tuple(
            _SlotDoc(
                r.get(s, sat, "name", "str"),
                r.get(s, sat, "type", "str"),
                not r.get(s, sat, "optional", "bool", False),
            )
            for sat, s in r.items(g, at, "slots")
        )
        inputs.append(
            _input_doc(
                r, at, g, r.get(g, at, "name", "str"), r.get(g, at, "type", "str"), slots, _V4
            )
        )
    return inputs


def _outputs_v5(r: _Reader, spec: Mapping[str, Any]) -> list[_OutputDoc]:
    outputs = []
    for at, o in r.items(spec, "spec", "outputs", {}, by_name=True):
        name = at.rsplit(".", 1)[1]
        item_type = r.get(o, at, "type", "str")
        results = tuple(
            _result(
                r,
                rat,
                res,
                r.get(res, rat, "name", "str"),
                _full_type(item_type, r.get(res, rat, "dtype", "str")),
            )
            for rat, res in r.items(o, at, "results", [])
        )
        outputs.append(
            _OutputDoc(
                name,
                item_type,
                r.get(o, at, "title", "text", ""),
                r.get(o, at, "description", "text", ""),
                r.get(o, at, "num_items", "count", None),
                results,
            )
        )
    return outputs


def _inputs_v5(r: _Reader, spec: Mapping[str, Any]) -> list[_InputDoc]:
    inputs = []
    for at, i in r.items(spec, "spec", "inputs", {}, by_name=True):
        item_type = r.get(i, at, "type", "str")
        slots = tuple(
            _SlotDoc(
                r.get(s, sat, "name", "str"),
                _full_type(item_type, r.get(s, sat, "dtype", "str")),
                r.get(s, sat, "required", "bool", False),
            )
            for sat, s in r.items(i, at, "slots", [])
        )
        inputs.append(_input_doc(r, at, i, at.rsplit(".", 1)[1], item_type, slots, _V5))
    return inputs


# ---------------------------------------------------------------------- jobs


class Job:
    """One job of a project, from its job document.

    ``uid`` (``J42``), ``type`` (``homo_refine_new``), ``title``, ``status``
    and ``shape`` (``"v4"`` or ``"v5"``: which shape of document) are read
    when the job is opened; ``outputs`` and ``inputs`` when first used.
    """

    def __init__(self, project: Project, uid: str, doc: Mapping[str, Any], path: str):
        self.project = project
        self.uid = uid
        self.path = path
        self._reader = _Reader(uid, path)
        r = self._reader
        if not isinstance(doc, dict):
            raise CsFormatError(f"job {uid} ({path}): the document is not a JSON object")
        self._doc = doc
        spec = doc.get("spec")
        if spec is not None:
            self.shape = "v5"
            spec = r.get(doc, "", "spec", "dict")
            self.type: str = r.get(spec, "spec", "type", "str")
        elif any(k in doc for k in ("input_slot_groups", "output_results", "output_result_groups")):
            self.shape = "v4"
            # v4 documents name the job type "job_type" ("type" is its alias).
            key = "type" if "type" in doc and "job_type" not in doc else "job_type"
            self.type = r.get(doc, "", key, "str")
        else:
            raise CsFormatError(
                f"job {uid} ({path}): neither a v5 job document (key 'spec') nor a v4 one "
                "(keys 'input_slot_groups', 'output_result_groups', 'output_results')"
            )
        self.title: str = r.get(doc, "", "title", "text", "")
        self.status: str = r.get(doc, "", "status", "text", "")
        declared = r.get(doc, "", "uid", "str", uid)
        if declared != uid:
            raise r.error("uid", f"is {declared!r} but the document is in folder {uid}/")
        self._input_docs: list[_InputDoc] | None = None
        self._outputs: dict[str, ResultGroup] | None = None

    def __repr__(self) -> str:
        return f"Job({self.uid}, {self.type!r}, {self.status or 'no status'}, {self.title!r})"

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    def _inputs_documents(self) -> list[_InputDoc]:
        if self._input_docs is None:
            self._input_docs = (
                _inputs_v5(self._reader, self._doc["spec"])
                if self.shape == "v5"
                else _inputs_v4(self._reader, self._doc)
            )
        return self._input_docs

    @property
    def outputs(self) -> dict[str, ResultGroup]:
        """Output group name -> ResultGroup, every result with all its versions.

        Metafile paths are made absolute (the document's are relative to the
        project folder). A result with no metafile yet (a job that has not
        written it) is left out. ``Result.num_items`` is the final version's
        count; ``Result.counts`` each version's, where the document gives them.
        """
        if self._outputs is None:
            docs = (
                _outputs_v5(self._reader, self._doc["spec"])
                if self.shape == "v5"
                else _outputs_v4(self._reader, self._doc)
            )
            self._outputs = {o.name: self._group(o) for o in docs}
        return dict(self._outputs)

    def _group(self, o: _OutputDoc) -> ResultGroup:
        results = {}
        for rd in o.results:
            if not rd.metafiles:
                continue
            versions = {
                v: os.path.join(self.project.path, m)
                for v, m in zip(rd.versions, rd.metafiles, strict=True)
            }
            counts = {v: n for v, n in zip(rd.versions, rd.counts, strict=False) if n >= 0}
            final = max(versions)
            num = counts.get(final, o.num_items or 0)
            results[rd.name] = Result(
                rd.name,
                rd.type.split(".", 1)[0],
                versions,
                num_items=num,
                passthrough=rd.passthrough,
                result_type=rd.type,
                counts=counts,
            )
        if not str(self._doc.get("version") or "").startswith("csfast"):
            # cryoSPARC writes one passthrough file for every version of a group
            serve_every_version(
                results, [n for n, r in results.items() if r.passthrough and len(r.versions) == 1]
            )
        return ResultGroup(
            name=o.name,
            item_type=o.item_type,
            results=results,
            title=o.title,
            description=o.description,
            job=self.uid,
        )

    def input_names(self) -> list[str]:
        """The names of the job's input groups (without building them)."""
        return [i.name for i in self._inputs_documents()]

    @property
    def inputs(self) -> dict[str, Input]:
        """Input group name -> Input with its spec and connections as the job had them.

        Built anew on each access (an Input is mutable). Each connection is
        the referenced job's output group; a slot filled by anything but the
        group's own result of the same name at its final version is an
        override (at the listed version); the results listed with no slot are
        carried as passthrough, and only those.
        """
        return {i.name: self._input(i) for i in self._inputs_documents()}

    def _input(self, i: _InputDoc) -> Input:
        slots = [Slot(s.name, type=s.type, required=s.required) for s in i.slots]
        try:
            spec = InputSpec(
                i.item_type,
                slots,
                count_min=i.count_min,
                count_max=i.count_max,
                repeat_allowed=i.repeat_allowed,
                name=i.name,
            )
        except ValueError as e:  # repeated slots, counts out of order, a slot of another type
            raise self._reader.error(i.key, f"is not a valid input group: {e}") from None
        inp = Input(spec)
        for c in i.connections:
            self._connection(inp, c)
        return inp

    def _connection(self, inp: Input, c: _ConnectionDoc) -> None:
        """Connect c's group to inp as the document lists it: version, overrides, passthrough."""
        group = self._referenced(c.job, c.group, c.key)
        names = {s.name for s in inp.spec.slots}
        listed = {s.slot for s in c.sources if s.slot is not None}
        sources = []
        for s in c.sources:
            if s.slot is None and s.result in names:
                # Carried under a slot's name, its fields are the slot's: it fills the
                # slot, unless the slot is listed (then what the slot names wins).
                if s.result in listed:
                    continue
                s = replace(s, slot=s.result)
            sources.append(s)
        own = [s for s in sources if (s.job, s.group) == (c.job, c.group)]
        for s in own:
            if s.result not in group:
                raise self._missing_result(s, group)
        # The connection's version: the one every own versioned result is read at.
        versions = sorted(
            {s.version for s in own if not group[s.result].passthrough},
            key=lambda v: -1 if v is None else v,
        )
        version = versions[0] if len(versions) == 1 else None
        carried = []
        for s in sources:
            if s.slot is not None:
                if s.slot not in names:
                    raise self._reader.error(
                        s.key, f"names slot {s.slot!r}, which input {inp.spec.name!r} does not have"
                    )
                continue
            if (s.job, s.group) != (c.job, c.group):
                raise self._reader.error(
                    s.key,
                    f"carries passthrough result {s.job}.{s.group}.{s.result} from "
                    f"another group than the connection's ({c.job}.{c.group})",
                )
            if len(versions) > 1 and not group[s.result].passthrough:
                shown = ", ".join("F" if v is None else str(v) for v in versions)
                raise self._reader.error(
                    s.key,
                    f"carries result {s.result!r} while the connection reads its own "
                    f"results at several versions ({shown}); csfast carries a "
                    "connection's passthrough results at one version",
                )
            carried.append(s.result)
        try:
            index = inp.connect(group, version=version, passthrough=carried)
        except InputError as e:
            raise self._reader.error(
                c.key, "cannot be restored: " + "; ".join(e.problems)
            ) from None
        listed = set()
        for s in sources:
            if s.slot is None:
                continue
            listed.add(s.slot)
            same = (s.job, s.group, s.result) == (c.job, c.group, s.slot)
            if same and s.version == version:
                continue
            source = (
                group
                if (s.job, s.group) == (c.job, c.group)
                else self._referenced(s.job, s.group, s.key)
            )
            if s.result not in source:
                raise self._missing_result(s, source)
            try:
                inp.override(index, s.slot, source[s.result], version=s.version)
            except InputError as e:  # a result of another type, a version it does not have
                raise self._reader.error(
                    s.key, "cannot be restored: " + "; ".join(e.problems)
                ) from None
        for slot in inp.spec.slots:
            # The job did not read an optional slot the document does not list.
            if slot.name not in listed and not slot.required and slot.name in group:
                inp.clear(index, slot.name)

    def _missing_result(self, s: _SourceDoc, group: ResultGroup) -> CsFormatError:
        if group.results:
            have = ", ".join(group.results)
        else:  # a job that has not written its outputs (yet)
            have = f"no results written (job {group.job}: {self.project.job(group.job).status})"
        return self._reader.error(
            s.key, f"names result {s.result!r} of {group.label}, which has {have}"
        )

    def _referenced(self, job: str, group: str, key: str) -> ResultGroup:
        if not self.project.has_job(job):
            raise self._reader.error(
                key, f"refers to job {job}, which is not in the project (no {job}/{JOB_DOCUMENT})"
            )
        outputs = self.project.job(job).outputs
        if group not in outputs:
            raise self._reader.error(
                key,
                f"refers to output {group!r} of {job}, which has "
                f"{', '.join(outputs) or 'no outputs'}",
            )
        return outputs[group]


class Project:
    """A cryoSPARC project folder, read offline: ``Project(path).job("J42").inputs``.

    Only job documents are read (each when its job is first asked for); no
    metafile is opened until something is loaded.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(self.path):
            raise CsProjectError(
                f"{self.path}: not a folder (a cryoSPARC project folder "
                "holds one folder per job, J1/ J2/ ..., each with a "
                f"{JOB_DOCUMENT})"
            )
        self._jobs: dict[str, Job] = {}

    def __repr__(self) -> str:
        return f"Project({self.path!r})"

    def jobs(self) -> list[str]:
        """Uids of the jobs that have a job document, in numeric order (J2 before J10)."""
        found = []
        with os.scandir(self.path) as entries:
            for e in entries:
                m = _JOB_UID.fullmatch(e.name)
                if m and os.path.isfile(os.path.join(e.path, JOB_DOCUMENT)):
                    found.append((int(m.group(1)), e.name))
        return [name for _, name in sorted(found)]

    def has_job(self, uid: str) -> bool:
        """Whether the folder holds job ``uid`` with its job document."""
        return uid in self._jobs or (
            _JOB_UID.fullmatch(uid) is not None
            and os.path.isfile(os.path.join(self.path, uid, JOB_DOCUMENT))
        )

    def job(self, uid: str) -> Job:
        """The job ``uid`` (``"J42"``); CsProjectError if it has no job document here."""
        if uid in self._jobs:
            return self._jobs[uid]
        path = os.path.join(self.path, uid, JOB_DOCUMENT)
        if not self.has_job(uid):
            raise CsProjectError(
                f"project {self.path} has no job {uid!r} "
                f"(no {uid}/{JOB_DOCUMENT}); its jobs: {_span(self.jobs())}"
            )
        with open_regular(path) as f:
            try:
                doc = json.load(f)
            except ValueError as e:  # not JSON, not UTF-8, an integer of over 4,300 digits
                raise CsFormatError(f"job {uid} ({path}): not a valid JSON document: {e}") from None
            except RecursionError:
                raise CsFormatError(
                    f"job {uid} ({path}): not a valid JSON document: nested too deep"
                ) from None
        job = self._jobs[uid] = Job(self, uid, doc, path)
        return job


def _span(uids: Sequence[str]) -> str:
    if not uids:
        return "none"
    return ", ".join(uids) if len(uids) <= 10 else f"{', '.join(uids[:3])} ... {uids[-1]}"


# ---------------------------------------------------------------------- writing


def write_job(
    project: str | os.PathLike,
    uid: str,
    job_type: str,
    *,
    title: str = "",
    status: str = "completed",
    inputs: Iterable[Input] = (),
    outputs: Iterable[ResultGroup] = (),
) -> str:
    """Write ``<project>/<uid>/job.json``, a v5 job document, atomically; returns its path.

    ``outputs``: the job's output groups (as ``write_output`` returns them),
    metafiles written relative to the project folder, with one item count
    per version (a count the group does not hold is read from the metafile's
    header). ``inputs``: the job's
    Inputs, keyed by their spec's name, each connection listed slot by slot
    (the result that fills it, its job, group and version; overrides
    included) and its passthrough results with no slot. ``Project`` reads
    the document back into the same groups and inputs.
    """
    root = os.path.abspath(os.fspath(project))
    folder = os.path.join(root, uid)
    os.makedirs(folder, exist_ok=True)
    doc = {
        "uid": uid,
        "title": title,
        "status": status,
        "version": f"csfast-{__version__}",
        "spec": {
            "type": job_type,
            "inputs": {inp.spec.name: _input_document(inp) for inp in inputs},
            "outputs": {g.name: _output_document(g, root) for g in outputs},
        },
    }
    text = (json.dumps(doc, indent=2) + "\n").encode()
    path = os.path.join(folder, JOB_DOCUMENT)
    atomic_write(path, lambda f: f.write(text))
    return path


def _short_type(item_type: str, result_type: str) -> str:
    head, _, tail = result_type.partition(".")
    return tail if head == item_type and tail else result_type


def _output_document(group: ResultGroup, root: str) -> dict[str, Any]:
    results = []
    for r in group.results.values():
        versions = sorted(r.versions)
        # v5 lists one count per version; a count the group does not know (an
        # earlier version re-read from a .csg) is read from its metafile's header.
        counts = [
            r.counts[v]
            if v in r.counts
            else r.num_items
            if v == r.version
            else inspect(r.versions[v]).rows
            for v in versions
        ]
        results.append(
            {
                "name": r.name,
                "dtype": _short_type(group.item_type, r.result_type),
                "versions": versions,
                "metafiles": [_project_relative(r.versions[v], root) for v in versions],
                "num_items": counts,
                "passthrough": r.passthrough,
            }
        )
    return {
        "type": group.item_type,
        "title": group.title,
        "description": group.description,
        "num_items": group.num_items,
        "results": results,
    }


def _project_relative(path: str, root: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return os.path.abspath(path)
    return rel.replace(os.sep, "/")


def _input_document(inp: Input) -> dict[str, Any]:
    spec = inp.spec
    connections = []
    for i, conn in enumerate(inp.connections):
        group = conn.group
        if not group.job:
            raise InputError(
                f"input {spec.name!r}: connection {i} ({group.label}) is a group "
                "of no job; a job document can only name groups of jobs"
            )
        results = []
        for slot in spec.slots:
            r = conn.result_for(slot.name)
            if r is None:
                continue
            job, _, output = r.group_label.partition(".")
            results.append(
                _source(slot.name, spec.item_type, r, job, output, conn.version_for(slot.name))
            )
        names = {s.name for s in spec.slots}
        carried = (
            conn.passthrough
            if conn.passthrough is not None
            else [n for n in group.results if n not in names]
        )
        results += [
            _source(None, spec.item_type, group.results[n], group.job, group.name, conn.version)
            for n in carried
        ]
        connections.append({"job_uid": group.job, "output": group.name, "results": results})
    return {
        "type": spec.item_type,
        "title": spec.name.replace("_", " ").capitalize(),
        "slots": [
            {
                "name": s.name,
                "dtype": _short_type(spec.item_type, spec.slot_type(s.name)),
                "required": s.required,
            }
            for s in spec.slots
        ],
        "count_min": spec.count_min,
        "count_max": "inf" if spec.count_max is None else spec.count_max,
        "repeat_allowed": spec.repeat_allowed,
        "connections": connections,
    }


def _source(
    slot: str | None, item_type: str, r: Result, job: str, output: str, version: int | None
) -> dict[str, Any]:
    return {
        "name": slot,
        "dtype": _short_type(item_type, r.result_type),
        "job_uid": job,
        "output": output,
        "result": r.name,
        "version": "F" if version is None else version,
    }
