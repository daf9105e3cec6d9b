"""Input groups: the input side of a job (docs/model.md).

An ``InputSpec`` says what a job reads (item type, slots, how many
connections); an ``Input`` holds the output groups connected to it, with
per-connection overrides and cleared slots, checks the requirements and
assembles one table.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._core import isin
from .dataset import Dataset
from .errors import CsError, CsUidError, InputError
from .format import CsInfo
from .groups import SINGLE_ITEM_TYPES, Result, ResultGroup
from .joins import join_tables
from .tables import inspect

__all__ = ["Slot", "InputSpec", "Connection", "Input"]


@dataclass(frozen=True)
class Slot:
    """A result an input group reads: a name and the result type it takes.

    ``Slot("blob")``, ``Slot("ctf", required=False)``,
    ``Slot("alignments3D", type="particle.alignments3D")``. ``type`` may be
    given in full (``"particle.alignments3D"``) or short (``"alignments3D"``,
    completed with the input's item type); it defaults to the slot's name.
    """

    name: str
    type: str | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if self.type is None:
            object.__setattr__(self, "type", self.name)
        elif not isinstance(self.type, str) or not self.type:
            raise TypeError(
                f"slot {self.name!r}: type must be a result type such as "
                f"'particle.ctf' or 'ctf', not {self.type!r} (pass required= "
                "by keyword)"
            )

    def full_type(self, item_type: str) -> str:
        """The result type this slot takes in an input of ``item_type`` (``particle.ctf``)."""
        assert self.type is not None  # set in __post_init__
        return self.type if "." in self.type else f"{item_type}.{self.type}"

    @classmethod
    def parse(cls, slot: str | Slot) -> Slot:
        """A Slot from a Slot or a string: ``"blob"`` (required), ``"?ctf"`` (optional)."""
        if isinstance(slot, Slot):
            return slot
        if slot.startswith("?"):
            return cls(slot[1:], required=False)
        return cls(slot)


@dataclass(frozen=True, init=False)
class InputSpec:
    """What an input group accepts.

    ``slots`` as Slot objects or strings (``"blob"`` required, ``"?ctf"``
    optional); ``count_max`` None means unbounded; ``repeat_allowed`` lets
    the same group be connected twice and the same uid appear in two rows.
    ``name`` is used in messages (default: the item type + "s").
    """

    item_type: str
    slots: tuple[Slot, ...]
    count_min: int = 1
    count_max: int | None = None
    repeat_allowed: bool = False
    name: str = ""

    def __init__(
        self,
        item_type: str,
        slots: Sequence[Slot | str],
        count_min: int = 1,
        count_max: int | None = None,
        repeat_allowed: bool = False,
        name: str = "",
    ) -> None:
        for key, value in (
            ("item_type", item_type),
            ("count_min", count_min),
            ("count_max", count_max),
            ("repeat_allowed", repeat_allowed),
            ("name", name),
        ):
            object.__setattr__(self, key, value)
        parsed = tuple(Slot.parse(s) for s in slots)
        names = [s.name for s in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names repeat: {names}")
        for s in parsed:
            if s.full_type(self.item_type).split(".", 1)[0] != self.item_type:
                raise ValueError(
                    f"slot {s.name!r} takes {s.full_type(self.item_type)!r} "
                    f"results, not of the input's item type {self.item_type!r}"
                )
        if self.count_min < 0 or (self.count_max is not None and self.count_max < self.count_min):
            raise ValueError(
                f"invalid counts: count_min={self.count_min}, count_max={self.count_max}"
            )
        object.__setattr__(self, "slots", parsed)
        if not name:
            object.__setattr__(self, "name", f"{self.item_type}s")

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise InputError(
            [
                f"input {self.name!r} has no slot {name!r} "
                f"(slots: {', '.join(s.name for s in self.slots)})"
            ]
        )

    def slot_type(self, name: str) -> str:
        """The full result type slot ``name`` takes (``particle.alignments3D``)."""
        return self.slot(name).full_type(self.item_type)


@dataclass
class Connection:
    """One output group plugged into an input, with its overrides and cleared slots.

    ``version`` is the version of the group's own results that is loaded
    (None: the final one); ``passthrough`` None carries every result of the
    group that no slot names, a tuple carries exactly those results.
    ``override_versions`` and ``passthrough_versions`` hold the versions
    chosen for single results (others: ``version``).
    """

    group: ResultGroup
    version: int | None = None
    passthrough: tuple[str, ...] | None = None
    passthrough_versions: dict[str, int | None] = field(default_factory=dict)
    overrides: dict[str, Result] = field(default_factory=dict)
    override_versions: dict[str, int | None] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)

    def result_for(self, slot: str) -> Result | None:
        """The result that fills a slot: an override, the group's own, or None."""
        if slot in self.cleared:
            return None
        if slot in self.overrides:
            return self.overrides[slot]
        return self.group.results.get(slot)

    def version_for(self, slot: str) -> int | None:
        """The version loaded for a slot or passthrough result (None: the final one)."""
        if slot in self.overrides:
            return self.override_versions.get(slot)
        return self.passthrough_versions.get(slot, self.version)


def _group_key(group: ResultGroup) -> tuple:
    """Same results in the same files: the same group, however it was obtained."""
    return tuple(sorted((n, os.path.abspath(r.metafile)) for n, r in group.results.items()))


@dataclass
class _Use:
    """One result a connection loads: under ``key`` (a slot, or its own name)."""

    key: str
    what: str  # "slot" or "passthrough result"
    result: Result
    version: int | None
    override: bool

    @property
    def metafile(self) -> str:
        return self.result.metafile_of(self.version)


@dataclass
class _Part:
    """One table a connection joins: a metafile and the results read from it."""

    path: str
    uses: list[_Use]
    override: bool

    @property
    def renames(self) -> dict[str, str]:
        return {u.result.name: u.key for u in self.uses}


class Input:
    """An input group of a job: connections, overrides, checks and assembly.

    ``load`` returns one table: per connection, the inner join on uid of its
    slot results (and, with ``passthrough``, of the group's other results);
    then the connections appended in order. Within a connection, rows follow
    the connection's items: those of the group's own first metafile (that
    of its first slot not overridden, else of its first passthrough result,
    else of its first result); columns follow the slots' order (results
    sharing a metafile stay together), then the passthrough results;
    across connections, columns are the fields every connection has.
    No item is dropped silently: a table that covers only part of the
    connection's items is a problem ``check`` reports with counts, and
    ``load`` refuses it unless ``allow_drop=True``.
    """

    def __init__(self, spec: InputSpec):
        self.spec = spec
        self._connections: list[Connection] = []

    def __repr__(self) -> str:
        conns = ", ".join(c.group.label for c in self._connections)
        return f"Input({self.spec.name!r}, {self.spec.item_type!r}, connections=[{conns}])"

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections)

    def _connection(self, index: int) -> Connection:
        if not 0 <= index < len(self._connections):
            raise InputError(
                [
                    f"input {self.spec.name!r} has no connection {index} "
                    f"(it has {len(self._connections)})"
                ]
            )
        return self._connections[index]

    def connect(
        self,
        group: ResultGroup,
        version: int | None = None,
        passthrough: Sequence[str] | Mapping[str, int | None] | None = None,
    ) -> int:
        """Plug an output group in; returns its connection index.

        ``version``: the version of the group's results to load (a number
        as in ``Result.versions``; None: the final one). ``passthrough``:
        None carries every result of the group that no slot names; a
        sequence of result names carries exactly those (empty: none); a
        mapping {name: version} also gives each one's version (None: final).

        A group result named like a slot but of another type does not fill
        the slot: ``check`` reports it until the slot is overridden with a
        result of the slot's type (or cleared, if optional).
        """
        where = f"input {self.spec.name!r}: {group.label}"
        if version is not None:
            version = int(version)
            own = [r for r in group.results.values() if not r.passthrough]
            if own and not any(version in r.versions for r in own):
                have = sorted({v for r in own for v in r.versions})
                raise InputError(
                    [f"{where} has no version {version} (versions: {', '.join(map(str, have))})"]
                )
        names: tuple[str, ...] | None = None
        if passthrough is not None:
            if isinstance(passthrough, str):
                raise TypeError("passthrough takes a sequence of result names, not a string")
            names = tuple(dict.fromkeys(passthrough))
            unknown = [n for n in names if n not in group.results]
            if unknown:
                raise InputError(
                    [
                        f"{where} has no result {', '.join(map(repr, unknown))} to "
                        f"pass through (results: {', '.join(group.results)})"
                    ]
                )
            slots = {s.name for s in self.spec.slots}
            named = [n for n in names if n in slots]
            if named:
                raise InputError(
                    [
                        f"{where}: {', '.join(map(repr, named))} is a slot of the "
                        "input, not a passthrough result"
                    ]
                )
        versions = {}
        if isinstance(passthrough, Mapping):
            for n, v in passthrough.items():
                r = group.results[n]
                if v is not None and not r.passthrough and int(v) not in r.versions:
                    raise InputError(
                        [
                            f"{where}: passthrough result {n!r}: {r.label} has no "
                            f"version {v} (versions: "
                            f"{', '.join(map(str, r.versions))})"
                        ]
                    )
                versions[n] = None if v is None else int(v)
        self._connections.append(
            Connection(group, version=version, passthrough=names, passthrough_versions=versions)
        )
        return len(self._connections) - 1

    def disconnect(self, connection: int | None = None) -> ResultGroup | list[ResultGroup]:
        """Remove a connection and return its group; later connections move down one index.

        With no index, remove every connection and return their groups.
        """
        if connection is None:
            groups = [c.group for c in self._connections]
            self._connections.clear()
            return groups
        self._connection(connection)
        return self._connections.pop(connection).group

    def override(
        self, connection: int, slot: str, result: Result, version: int | None = None
    ) -> None:
        """Fill one slot of one connection from an individual result (of any group).

        The result must be of the slot's type (``spec.slot_type(slot)``), else
        InputError naming the slot, the result and both types. ``version``:
        the result's version to load (None: the final one). The result's
        fields are renamed to the slot's name when the names differ.
        """
        conn = self._connection(connection)
        expected = self.spec.slot_type(slot)
        where = f"input {self.spec.name!r}: connection {connection} ({conn.group.label})"
        if result.result_type != expected:
            raise InputError(
                [
                    f"{where}: slot {slot!r} takes {expected!r} results; "
                    f"{result.label} is of type {result.result_type!r}; override "
                    f"with a {expected!r} result"
                ]
            )
        if version is not None:
            version = int(version)
            if not result.passthrough and version not in result.versions:
                raise InputError(
                    [
                        f"{where}: slot {slot!r}: {result.label} has no version "
                        f"{version} (versions: "
                        f"{', '.join(map(str, result.versions))})"
                    ]
                )
        conn.cleared.discard(slot)
        conn.overrides[slot] = result
        conn.override_versions[slot] = version

    def clear(self, connection: int, slot: str) -> None:
        """Empty an optional slot of one connection (its result is not loaded)."""
        conn = self._connection(connection)
        if self.spec.slot(slot).required:
            raise InputError(
                [
                    f"input {self.spec.name!r}: connection {connection} "
                    f"({conn.group.label}): slot {slot!r} is required and cannot "
                    "be cleared; override it instead"
                ]
            )
        conn.overrides.pop(slot, None)
        conn.override_versions.pop(slot, None)
        conn.cleared.add(slot)

    # ---------------------------------------------------------------- checks

    def _slots(self, slots: Sequence[str] | None) -> tuple[Slot, ...]:
        """The spec's slots, or those named (in the spec's order)."""
        if slots is None:
            return self.spec.slots
        if isinstance(slots, str):
            raise TypeError("slots takes a sequence of slot names, not a string")
        wanted = {self.spec.slot(n).name for n in slots}
        return tuple(s for s in self.spec.slots if s.name in wanted)

    def _fills(self, conn: Connection, slot: Slot) -> Result | None:
        """The result that fills a slot, or None (a group result of another type does not)."""
        r = conn.result_for(slot.name)
        if (
            r is not None
            and slot.name not in conn.overrides
            and r.result_type != slot.full_type(self.spec.item_type)
        ):
            return None
        return r

    def _uses(self, conn: Connection, passthrough: bool, slots: tuple[Slot, ...]) -> list[_Use]:
        """What a connection loads: its filled slots, then its passthrough results."""
        uses = [
            _Use(s.name, "slot", r, conn.version_for(s.name), s.name in conn.overrides)
            for s in slots
            if (r := self._fills(conn, s)) is not None
        ]
        if passthrough:
            names = {s.name for s in self.spec.slots}
            # By default every other result, but not a passthrough result
            # that the version loaded does not carry (docs/writes.md).
            carried = (
                conn.passthrough
                if conn.passthrough is not None
                else [
                    n
                    for n, r in conn.group.results.items()
                    if n not in names
                    and (
                        not r.passthrough
                        or conn.group.passthrough_metafile(n, conn.version_for(n)) is not None
                    )
                ]
            )
            uses += [
                _Use(n, "passthrough result", conn.group.results[n], conn.version_for(n), False)
                for n in carried
            ]
        return uses

    def check(self, passthrough: bool = True, slots: Sequence[str] | None = None) -> list[str]:
        """Every problem with this input's requirements; empty when they hold.

        Reads .cs headers (presence on disk, fields, row counts against the
        group's ``num_items``) and uid columns (no other column): a slot or
        passthrough table that covers only part of the connection's items is
        reported with counts. ``passthrough`` also checks the results that
        would be carried along; ``slots`` checks only the slots named.
        """
        return [text for text, _ in self._problems(passthrough, slots)]

    def _problems(
        self,
        passthrough: bool,
        slots: Sequence[str] | None,
    ) -> list[tuple[str, bool]]:
        """(message, is_a_drop) for every problem, in order."""
        spec, name = self.spec, self.spec.name
        chosen = self._slots(slots)
        problems: list[tuple[str, bool]] = []
        n = len(self._connections)
        if n < spec.count_min:
            problems.append(
                (
                    f"input {name!r} needs at least {spec.count_min} connection"
                    f"{'s' if spec.count_min > 1 else ''}, has {n}; "
                    f"connect a {spec.item_type!r} output group",
                    False,
                )
            )
        if spec.count_max is not None and n > spec.count_max:
            problems.append(
                (
                    f"input {name!r} takes at most {spec.count_max} connection"
                    f"{'s' if spec.count_max > 1 else ''}, has {n}; "
                    f"disconnect {n - spec.count_max}",
                    False,
                )
            )
        if not spec.repeat_allowed:
            seen: dict[tuple, int] = {}
            for i, conn in enumerate(self._connections):
                first = seen.setdefault(_group_key(conn.group), i)
                if first != i:
                    problems.append(
                        (
                            f"input {name!r}: {conn.group.label} is connected twice (connections "
                            f"{first} and {i}) and repeat_allowed is False; disconnect "
                            f"connection {i}",
                            False,
                        )
                    )
        headers: dict[str, CsInfo | str] = {}
        uid_cache: dict[str, np.ndarray] = {}
        for i, conn in enumerate(self._connections):
            found, readable = self._check_connection(i, conn, passthrough, chosen, headers)
            problems += [(p, False) for p in found]
            if readable:
                problems += [
                    (p, True) for p in self._check_coverage(i, conn, passthrough, chosen, uid_cache)
                ]
        return problems

    def _check_connection(
        self,
        i: int,
        conn: Connection,
        passthrough: bool,
        slots: tuple[Slot, ...],
        headers: dict[str, CsInfo | str],
    ) -> tuple[list[str], bool]:
        """(problems, whether every table it would join can be read)."""
        spec = self.spec
        where = f"input {spec.name!r}: connection {i} ({conn.group.label})"
        if conn.group.item_type != spec.item_type:
            return [
                f"{where}: group is of item type {conn.group.item_type!r}, input expects "
                f"{spec.item_type!r}; connect a {spec.item_type!r} output group"
            ], False
        problems: list[str] = []
        uses = self._uses(conn, passthrough, slots)
        filled = {u.key for u in uses if u.what == "slot"}
        for s in slots:
            if s.name in filled or s.name in conn.cleared:
                continue
            expected = s.full_type(spec.item_type)
            own = conn.group.results.get(s.name)
            if own is not None:
                fix = " or clear it" if not s.required else ""
                problems.append(
                    f"{where}: slot {s.name!r} takes {expected!r} results; "
                    f"{own.label} is of type {own.result_type!r}; override the slot with a "
                    f"{expected!r} result{fix}"
                )
            elif s.required:
                why = (
                    f"{conn.group.label} has no {s.name!r} result (it has: "
                    f"{', '.join(conn.group.results) or 'none'})"
                )
                problems.append(
                    f"{where}: required slot {s.name!r} is empty: {why}; override the slot "
                    f"with a {expected!r} result of another group"
                )
        rows: dict[str, int] = {}
        miscounted: dict[tuple[str, int, int], list[Result]] = {}
        for u in uses:
            r, key, what = u.result, u.key, u.what
            if r.item_type != spec.item_type:
                problems.append(
                    f"{where}: result {r.label} is of item type {r.item_type!r}, "
                    f"{what} {key!r} expects {spec.item_type!r}; use a "
                    f"'{spec.item_type}' result"
                )
                continue
            if u.version is not None and not r.passthrough and u.version not in r.versions:
                problems.append(
                    f"{where}: {what} {key!r}: {r.label} has no version {u.version} "
                    f"(versions: {', '.join(map(str, r.versions))})"
                )
                continue
            info = _header(u.metafile, headers)
            if isinstance(info, str):
                job = r.group_label.split(".", 1)[0] if r.group_label else "its job"
                problems.append(
                    f"{where}: {what} {key!r}: metafile of {r.label}: {info}; "
                    f"re-run {job} or connect another group"
                )
            elif not any(f.split("/", 1)[0] == r.name for f in info.dtype.names or ()):
                problems.append(
                    f"{where}: {what} {key!r}: metafile {u.metafile} of "
                    f"{r.label} holds no {r.name!r} fields; fix its .csg"
                )
            else:
                rows[key] = info.rows
                said = r.num_items_of(u.version)
                if said and said != info.rows:
                    miscounted.setdefault((u.metafile, said, info.rows), []).append(r)
        for (path, said, held), results in miscounted.items():
            problems.append(
                f"{where}: {', '.join(r.label for r in results)}: num_items says {said:,}, "
                f"the metafile {path} holds {held:,} items; the group's description and its "
                "file disagree: re-run its job or fix its .csg"
            )
        counts = self._check_override_counts(where, conn, uses, rows)
        # The uids are compared only when every table reads and no override is
        # already known to hold the wrong number of items.
        return problems + counts, len(rows) == len(uses) and not counts

    def _check_override_counts(
        self, where: str, conn: Connection, uses: list[_Use], rows: dict[str, int]
    ) -> list[str]:
        """Overrides whose item counts cannot fill the connection's items."""
        own = [rows[u.key] for u in uses if not u.override and u.key in rows]
        group_rows = own[0] if own else conn.group.num_items
        single = self.spec.item_type in SINGLE_ITEM_TYPES
        problems = []
        for u in uses:
            if not u.override or u.key not in rows:
                continue
            slot, r = u.key, u.result
            if single and rows[slot] != 1:
                problems.append(
                    f"{where}: slot {slot!r} is overridden by {r.label}, which holds "
                    f"{rows[slot]} items; a {self.spec.item_type!r} override must hold exactly one"
                )
            elif rows[slot] == 1 and group_rows > 1:
                problems.append(
                    f"{where}: slot {slot!r} is overridden by the one-item result {r.label}, "
                    f"but {conn.group.label} holds {group_rows} items; override with a result "
                    "of the same items"
                )
        return problems

    def _check_coverage(
        self,
        i: int,
        conn: Connection,
        passthrough: bool,
        slots: tuple[Slot, ...],
        cache: dict[str, np.ndarray],
    ) -> list[str]:
        """Tables that lack some of the connection's items (uid columns only)."""
        where = f"input {self.spec.name!r}: connection {i} ({conn.group.label})"
        parts, items = self._plan(conn, passthrough, slots)
        single = self.spec.item_type in SINGLE_ITEM_TYPES
        ref = _uids(items, cache)
        problems = []
        counted: dict[str, int] = {}  # an override may read a file the group reads too
        for part in parts:
            # A one-item override takes the connection's uid: nothing to cover.
            if part.path == items or (single and part.override):
                continue
            if part.path not in counted:
                counted[part.path] = int(np.count_nonzero(isin(ref, _uids(part.path, cache))))
            covered = counted[part.path]
            if covered < len(ref):
                what = ", ".join(f"{u.what} {u.key!r}" for u in part.uses)
                labels = ", ".join(u.result.label for u in part.uses)
                problems.append(
                    f"{where}: {what} ({labels}) covers {covered:,} of the connection's "
                    f"{len(ref):,} items; {len(ref) - covered:,} would be dropped: use a "
                    "result of the same items, or load with allow_drop=True"
                )
        return problems

    # ---------------------------------------------------------------- loading

    def load(
        self, passthrough: bool = True, slots: Sequence[str] | None = None, allow_drop: bool = False
    ) -> Dataset:
        """Check the requirements (InputError listing every problem), then assemble.

        Per connection: its slot results (only those named in ``slots``, if
        given) and, with ``passthrough``, its passthrough results,
        inner-joined on uid (each metafile opened once; an overridden slot is
        filled only from the override). Then the connections appended in
        order; a uid in two rows raises InputError unless the spec's
        ``repeat_allowed``. A table that covers only part of a connection's
        items is an InputError naming the slot and the counts, unless
        ``allow_drop`` (then those items drop out of the join).
        """
        found = self._problems(passthrough, slots)
        refused = [text for text, drop in found if not (drop and allow_drop)]
        if refused:
            raise InputError(refused)
        chosen = self._slots(slots)
        tables = [
            self._load_connection(i, c, passthrough, chosen)
            for i, c in enumerate(self._connections)
        ]
        if not tables:
            return Dataset()
        if len(tables) == 1:
            return tables[0]
        try:
            return Dataset.append_many(*tables, repeat_allowed=self.spec.repeat_allowed)
        except CsUidError as e:
            raise InputError([self._repeat_message(tables, e)]) from e

    def _plan(
        self,
        conn: Connection,
        passthrough: bool,
        slots: tuple[Slot, ...],
    ) -> tuple[list[_Part], str]:
        """The tables a connection joins, in column order, and the metafile of its items.

        One table per metafile of the group's own results (so each file opens
        once), one per metafile of the overrides (a result filling two slots
        is read once per slot). An overridden slot's own result is never
        read: the override wins. An override from a metafile the group's own
        results are read from, whose name is the slot's, is read with them
        (a job document lists every slot's result, mostly the group's own).
        Tables go in the order of the first slot they fill, passthrough
        results last, which orders the columns by slot. The connection's
        items are those of its first own table, else of the group's first
        result.
        """
        uses = self._uses(conn, passthrough, slots)
        own_paths = {u.metafile for u in uses if not u.override}
        parts: list[_Part] = []
        own: dict[str, _Part] = {}
        for u in uses:
            path = u.metafile
            if not u.override or (u.result.name == u.key and path in own_paths):
                if path not in own:
                    own[path] = _Part(path, [], False)
                    parts.append(own[path])
                own[path].uses.append(u)
                continue
            for part in parts:
                if part.override and part.path == path and u.result.name not in part.renames:
                    part.uses.append(u)
                    break
            else:
                parts.append(_Part(path, [u], True))
        if own:
            return parts, next(iter(own))
        first = next(iter(conn.group.results.values()))
        version = conn.version if conn.version in first.versions else None
        return parts, first.metafile_of(version)

    def _load_connection(
        self, i: int, conn: Connection, passthrough: bool, slots: tuple[Slot, ...]
    ) -> Dataset:
        where = f"input {self.spec.name!r}: connection {i} ({conn.group.label})"
        parts, items = self._plan(conn, passthrough, slots)
        tables = []
        for part in parts:
            t = Dataset.load(part.path, results=[u.result.name for u in part.uses])
            renames = part.renames
            if part.override and any(a != b for a, b in renames.items()):
                t.rename_fields(functools.partial(_renamed, renames=renames))
            tables.append(t)
        if parts and parts[0].path == items and not parts[0].override:
            uid = tables[0]["uid"]
        else:
            # Rows follow the connection's items even when an override fills
            # the first slot: a uid-only table in front fixes the row order.
            own = next((t for p, t in zip(parts, tables, strict=True) if not p.override), None)
            uid = own["uid"] if own is not None else Dataset.load(items, fields=["uid"])["uid"]
            tables.insert(0, Dataset({"uid": uid}))
            parts = [_Part(items, [], False)] + parts
        if self.spec.item_type in SINGLE_ITEM_TYPES:
            # One item per group: the override's item takes the connection's uid.
            for p, t in zip(parts, tables, strict=True):
                if p.override:
                    t["uid"] = uid
        try:
            return join_tables(tables, names=[p.path for p in parts])
        except CsUidError:  # tables that share no uid: say which slot's table is foreign
            raise InputError([self._no_shared_uid(where, parts, tables)]) from None

    def _no_shared_uid(self, where: str, parts: list[_Part], tables: list[Dataset]) -> str:
        items = tables[0]
        for p, t in zip(parts, tables, strict=True):
            if p.override and len(items.subset_uids(t.view("uid"))) == 0:
                slots = ", ".join(repr(u.key) for u in p.uses)
                return (
                    f"{where}: the override of slot {slots} shares no uid with the "
                    f"connection's items; override with a result of the same items"
                )
        return f"{where}: the tables share no uid with each other; they describe different items"

    def _repeat_message(self, tables: list[Dataset], error: CsUidError) -> str:
        name = self.spec.name
        for j in range(1, len(tables)):
            for i in range(j):
                shared = tables[i].subset_uids(tables[j].view("uid"))
                if len(shared):
                    a, b = self._connections[i].group.label, self._connections[j].group.label
                    some = ", ".join(str(int(u)) for u in np.asarray(shared.view("uid"))[:3])
                    return (
                        f"input {name!r}: connections {i} ({a}) and {j} ({b}) share "
                        f"{len(shared)} uids (e.g. {some}) and repeat_allowed is False; "
                        "connect groups of different items"
                    )
        return f"input {name!r}: {error}"


def _renamed(field_name: str, renames: dict[str, str]) -> str:
    head, sep, tail = field_name.partition("/")
    return f"{renames[head]}/{tail}" if sep and head in renames else field_name


def _uids(path: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    """The uid column of a metafile (mapped: only the uid column is read)."""
    if path not in cache:
        col = Dataset.load(path, fields=["uid"]).view("uid")
        cache[path] = col if col.dtype == np.uint64 else col.astype(np.uint64)
    return cache[path]


def _header(path: str, cache: dict[str, CsInfo | str]) -> CsInfo | str:
    """The header of a metafile (.cs or CSDAT), or a short text saying why it cannot be read."""
    if path not in cache:
        try:
            cache[path] = inspect(path)
        except FileNotFoundError:
            cache[path] = f"{path} is missing on disk"
        except (OSError, CsError) as e:
            cache[path] = f"{path} cannot be read ({getattr(e, 'strerror', None) or e})"
    return cache[path]
