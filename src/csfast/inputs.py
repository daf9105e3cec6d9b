"""Input groups: the input side of a job (MODEL.md).

An ``InputSpec`` says what a job reads (item type, slots, how many
connections); an ``Input`` holds the output groups connected to it, with
per-connection overrides and cleared slots, checks the requirements and
assembles one table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dataset import Dataset
from .errors import CsError, CsUidError, InputError
from .format import CsInfo, inspect
from .groups import SINGLE_ITEM_TYPES, Result, ResultGroup, join_tables

__all__ = ["Slot", "InputSpec", "Connection", "Input"]


@dataclass(frozen=True)
class Slot:
    """A result an input group reads: ``Slot("blob")``, ``Slot("ctf", required=False)``."""

    name: str
    required: bool = True

    @classmethod
    def parse(cls, slot: str | Slot) -> Slot:
        """A Slot from a Slot or a string: ``"blob"`` (required), ``"?ctf"`` (optional)."""
        if isinstance(slot, Slot):
            return slot
        if slot.startswith("?"):
            return cls(slot[1:], required=False)
        return cls(slot)


@dataclass(frozen=True)
class InputSpec:
    """What an input group accepts.

    ``slots`` as Slot objects or strings (``"blob"`` required, ``"?ctf"``
    optional); ``count_max`` None means unbounded; ``repeat_allowed`` lets
    the same group be connected twice and the same uid appear in two rows.
    ``name`` is used in messages (default: the item type + "s").
    """

    item_type: str
    slots: Sequence[Slot | str]
    count_min: int = 1
    count_max: int | None = None
    repeat_allowed: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        slots = tuple(Slot.parse(s) for s in self.slots)
        names = [s.name for s in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names repeat: {names}")
        if self.count_min < 0 or (self.count_max is not None and self.count_max < self.count_min):
            raise ValueError(f"invalid counts: count_min={self.count_min}, "
                             f"count_max={self.count_max}")
        object.__setattr__(self, "slots", slots)
        if not self.name:
            object.__setattr__(self, "name", f"{self.item_type}s")

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise InputError([f"input {self.name!r} has no slot {name!r} "
                          f"(slots: {', '.join(s.name for s in self.slots)})"])


@dataclass
class Connection:
    """One output group plugged into an input, with its overrides and cleared slots."""

    group: ResultGroup
    overrides: dict[str, Result] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)

    def result_for(self, slot: str) -> Result | None:
        """The result that fills a slot: an override, the group's own, or None."""
        if slot in self.cleared:
            return None
        if slot in self.overrides:
            return self.overrides[slot]
        return self.group.results.get(slot)


def _group_key(group: ResultGroup) -> tuple:
    """Same results in the same files: the same group, however it was obtained."""
    return tuple(sorted((n, os.path.abspath(r.metafile)) for n, r in group.results.items()))


class Input:
    """An input group of a job: connections, overrides, checks and assembly.

    ``load`` returns one table: per connection, the inner join on uid of its
    slot results (and, with ``passthrough``, of the group's other results);
    then the connections appended in order. Within a connection, rows follow
    the group's own first metafile (that of its first slot not overridden)
    and columns follow the slots' order (results sharing a metafile stay
    together), then the passthrough results;
    across connections, columns are the fields every connection has.
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
            raise InputError([f"input {self.spec.name!r} has no connection {index} "
                              f"(it has {len(self._connections)})"])
        return self._connections[index]

    def connect(self, group: ResultGroup) -> int:
        """Plug an output group in; returns its connection index."""
        self._connections.append(Connection(group))
        return len(self._connections) - 1

    def disconnect(self, connection: int) -> ResultGroup:
        """Remove a connection; later connections move down one index."""
        self._connection(connection)
        return self._connections.pop(connection).group

    def override(self, connection: int, slot: str, result: Result) -> None:
        """Fill one slot of one connection from an individual result of another group.

        The result's fields are renamed to the slot's name when the names differ.
        """
        conn = self._connection(connection)
        self.spec.slot(slot)
        conn.cleared.discard(slot)
        conn.overrides[slot] = result

    def clear(self, connection: int, slot: str) -> None:
        """Empty an optional slot of one connection (its result is not loaded)."""
        conn = self._connection(connection)
        if self.spec.slot(slot).required:
            raise InputError([f"input {self.spec.name!r}: connection {connection} "
                              f"({conn.group.label}): slot {slot!r} is required and cannot "
                              "be cleared; override it instead"])
        conn.overrides.pop(slot, None)
        conn.cleared.add(slot)

    # ---------------------------------------------------------------- checks

    def _used(self, conn: Connection, passthrough: bool) -> tuple[dict[str, Result],
                                                                    dict[str, Result]]:
        """({slot: result} of filled slots, {name: result} of passthrough extras)."""
        slots = {s.name: r for s in self.spec.slots if (r := conn.result_for(s.name))}
        names = {s.name for s in self.spec.slots}
        # A passthrough result the group's final version does not carry stays out.
        extras = {n: r for n, r in conn.group.results.items() if n not in names and (
            not r.passthrough or conn.group.passthrough_metafile(n) is not None)} \
            if passthrough else {}
        return slots, extras

    def check(self, passthrough: bool = True) -> list[str]:
        """Every problem with this input's requirements; empty when they hold.

        Reads only .cs headers (presence on disk, fields, row counts).
        ``passthrough`` also checks the results that would be carried along.
        """
        spec, name = self.spec, self.spec.name
        problems: list[str] = []
        n = len(self._connections)
        if n < spec.count_min:
            problems.append(
                f"input {name!r} needs at least {spec.count_min} connection"
                f"{'s' if spec.count_min > 1 else ''}, has {n}; "
                f"connect a {spec.item_type!r} output group")
        if spec.count_max is not None and n > spec.count_max:
            problems.append(
                f"input {name!r} takes at most {spec.count_max} connection"
                f"{'s' if spec.count_max > 1 else ''}, has {n}; disconnect {n - spec.count_max}")
        if not spec.repeat_allowed:
            seen: dict[tuple, int] = {}
            for i, conn in enumerate(self._connections):
                first = seen.setdefault(_group_key(conn.group), i)
                if first != i:
                    problems.append(
                        f"input {name!r}: {conn.group.label} is connected twice (connections "
                        f"{first} and {i}) and repeat_allowed is False; disconnect "
                        f"connection {i}")
        headers: dict[str, CsInfo | str] = {}
        for i, conn in enumerate(self._connections):
            problems += self._check_connection(i, conn, passthrough, headers)
        return problems

    def _check_connection(self, i: int, conn: Connection, passthrough: bool,
                          headers: dict[str, CsInfo | str]) -> list[str]:
        spec = self.spec
        where = f"input {spec.name!r}: connection {i} ({conn.group.label})"
        if conn.group.item_type != spec.item_type:
            return [f"{where}: group is of item type {conn.group.item_type!r}, input expects "
                    f"{spec.item_type!r}; connect a {spec.item_type!r} output group"]
        problems: list[str] = []
        slots, extras = self._used(conn, passthrough)
        for s in spec.slots:
            if s.required and s.name not in slots:
                why = (f"{conn.group.label} has no {s.name!r} result (it has: "
                       f"{', '.join(conn.group.results) or 'none'})")
                problems.append(
                    f"{where}: required slot {s.name!r} is empty: {why}; override the slot "
                    f"with a '{spec.item_type}.{s.name}' result of another group")
        rows: dict[str, int] = {}
        for what, used in (("slot", slots), ("passthrough result", extras)):
            for key, r in used.items():
                if r.item_type != spec.item_type:
                    problems.append(
                        f"{where}: result {r.label} is of item type {r.item_type!r}, "
                        f"{what} {key!r} expects {spec.item_type!r}; use a "
                        f"'{spec.item_type}' result")
                    continue
                info = _header(r.metafile, headers)
                if isinstance(info, str):
                    job = r.group.split(".", 1)[0] if r.group else "its job"
                    problems.append(f"{where}: {what} {key!r}: metafile of {r.label}: {info}; "
                                    f"re-run {job} or connect another group")
                elif not any(f.split("/", 1)[0] == r.name for f in info.dtype.names):
                    problems.append(f"{where}: {what} {key!r}: metafile {r.metafile} of "
                                    f"{r.label} holds no {r.name!r} fields; fix its .csg")
                else:
                    rows[key] = info.rows
        problems += self._check_override_counts(where, conn, slots, rows)
        return problems

    def _check_override_counts(self, where: str, conn: Connection, slots: dict[str, Result],
                               rows: dict[str, int]) -> list[str]:
        """Overrides whose item counts cannot fill the connection's items."""
        own = [rows[k] for k, r in slots.items() if k not in conn.overrides and k in rows]
        own += [rows[k] for k in rows if k not in slots]
        group_rows = own[0] if own else conn.group.num_items
        single = self.spec.item_type in SINGLE_ITEM_TYPES
        problems = []
        for slot, r in conn.overrides.items():
            if slot not in rows or slot in conn.cleared:
                continue
            if single and rows[slot] != 1:
                problems.append(
                    f"{where}: slot {slot!r} is overridden by {r.label}, which holds "
                    f"{rows[slot]} items; a {self.spec.item_type!r} override must hold exactly one")
            elif rows[slot] == 1 and group_rows > 1:
                problems.append(
                    f"{where}: slot {slot!r} is overridden by the one-item result {r.label}, "
                    f"but {conn.group.label} holds {group_rows} items; override with a result "
                    "of the same items")
        return problems

    # ---------------------------------------------------------------- loading

    def load(self, passthrough: bool = True) -> Dataset:
        """Check the requirements (InputError listing every problem), then assemble.

        Per connection: its slot results and, with ``passthrough``, the
        group's other results, inner-joined on uid (each metafile opened once;
        an overridden slot is filled only from the override). Then the
        connections appended in order; a uid in two rows raises InputError
        unless the spec's ``repeat_allowed``.
        """
        problems = self.check(passthrough)
        if problems:
            raise InputError(problems)
        tables = [self._load_connection(i, c, passthrough)
                  for i, c in enumerate(self._connections)]
        if not tables:
            return Dataset()
        if len(tables) == 1:
            return tables[0]
        try:
            return Dataset.append_many(*tables, repeat_allowed=self.spec.repeat_allowed)
        except CsUidError as e:
            raise InputError([self._repeat_message(tables, e)]) from e

    def _load_connection(self, i: int, conn: Connection, passthrough: bool) -> Dataset:
        where = f"input {self.spec.name!r}: connection {i} ({conn.group.label})"
        slots, extras = self._used(conn, passthrough)
        # Tables to join: one per metafile of the group's own results (so each
        # file opens once), one per metafile of the overrides (their fields
        # renamed to the slot's name where it differs; a result filling two
        # slots is loaded once per slot). An overridden slot's own result is
        # never loaded: the override wins. Tables go in the order of the first
        # slot they fill, extras last, which orders the columns by slot.
        own: dict[str, tuple[int, list[str]]] = {}
        ov: list[tuple[int, str, dict[str, str]]] = []
        for rank, (key, r) in enumerate(list(slots.items()) + list(extras.items())):
            if key not in conn.overrides:
                own.setdefault(r.metafile, (rank, []))[1].append(r.name)
                continue
            for _, path, renames in ov:
                if path == r.metafile and r.name not in renames:
                    renames[r.name] = key
                    break
            else:
                ov.append((rank, r.metafile, {r.name: key}))
        parts = [(rank, Dataset.load(p, prefixes=names), None)
                 for p, (rank, names) in own.items()]
        for rank, path, renames in ov:
            t = Dataset.load(path, prefixes=list(renames))
            if any(a != b for a, b in renames.items()):
                t.rename_fields(lambda k, m=renames: _renamed(k, m))
            parts.append((rank, t, renames))
        parts.sort(key=lambda p: p[0])
        if self.spec.item_type in SINGLE_ITEM_TYPES and ov:
            # One item per group: the override's item takes the connection's uid.
            own_tables = [t for _, t, renames in parts if renames is None]
            uid = own_tables[0]["uid"] if own_tables else Dataset.load(
                next(iter(conn.group.results.values())).metafile, fields=["uid"])["uid"]
            for _, t, renames in parts:
                if renames is not None:
                    t["uid"] = uid
        tables = [t for _, t, _ in parts]
        own_first = next((t for _, t, renames in parts if renames is None), None)
        if own_first is not None and tables[0] is not own_first:
            # Rows follow the group's own items even when an override fills
            # the first slot: a uid-only table in front fixes the row order.
            tables.insert(0, Dataset({"uid": own_first["uid"]}))
        joined = join_tables(tables)
        if len(joined) == 0 and len(tables) > 1 and all(len(t) for t in tables):
            raise InputError([self._no_shared_uid(where, parts)])
        return joined

    def _no_shared_uid(self, where: str,
                       parts: list[tuple[int, Dataset, dict[str, str] | None]]) -> str:
        own = [t for _, t, renames in parts if renames is None]
        for _, t, renames in parts:
            if renames is not None and own and len(own[0].subset_uids(t["uid"])) == 0:
                slots = ", ".join(repr(s) for s in renames.values())
                return (f"{where}: the override of slot {slots} shares no uid with the "
                        f"connection's items; override with a result of the same items")
        return (f"{where}: the tables share no uid with each other; they describe "
                "different items")

    def _repeat_message(self, tables: list[Dataset], error: CsUidError) -> str:
        name = self.spec.name
        for j in range(1, len(tables)):
            for i in range(j):
                shared = tables[i].subset_uids(tables[j]["uid"])
                if len(shared):
                    a, b = self._connections[i].group.label, self._connections[j].group.label
                    some = ", ".join(str(int(u)) for u in np.asarray(shared["uid"])[:3])
                    return (f"input {name!r}: connections {i} ({a}) and {j} ({b}) share "
                            f"{len(shared)} uids (e.g. {some}) and repeat_allowed is False; "
                            "connect groups of different items")
        return f"input {name!r}: {error}"


def _renamed(field_name: str, renames: dict[str, str]) -> str:
    head, sep, tail = field_name.partition("/")
    return f"{renames[head]}/{tail}" if sep and head in renames else field_name


def _header(path: str, cache: dict[str, CsInfo | str]) -> CsInfo | str:
    """The header of a metafile, or a short text saying why it cannot be read."""
    if path not in cache:
        try:
            cache[path] = inspect(path)
        except FileNotFoundError:
            cache[path] = f"{path} is missing on disk"
        except (OSError, CsError) as e:
            cache[path] = f"{path} cannot be read ({getattr(e, 'strerror', None) or e})"
    return cache[path]
