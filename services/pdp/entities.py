"""The in-process entity index: the policy information point behind every decision.

Entities come from the bundle's entities.json and from the store (the admin API and
`arop entities import`); a stored entity replaces a bundle entity with the same uid, and the
schema's action groups come last. Cedar gets a per-request slice, never the whole set (handing
Cedar the whole store costs a clone of it per call, DESIGN.md §3): the request's entities and
the closure of everything reachable from them, from the context and from the policies' literal
entities through parents and references (`part`, `reachable`).

An index is immutable; the runtime builds a new one when the bundle or the store changes and
swaps it in with one assignment, so a request always sees one consistent version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import msgspec

from services.pdp.values import to_cedar_record
from services.store.records import EntityRecord, EntityUid

MAX_ATTRIBUTE_DEPTH = 32
_encode = msgspec.json.Encoder().encode


def action_records(actions: dict[str, list[str]]) -> list[EntityRecord]:
    """Action entities with their groups (`action x in [all]` in the schema)."""
    return [
        EntityRecord("Action", name, parents=[EntityUid("Action", parent) for parent in parents])
        for name, parents in actions.items()
        if parents
    ]


def entity_refs(value: Any) -> Iterator[EntityUid]:
    """Entities referenced from attribute values (`{"__entity": {"type", "id"}}`), any depth."""
    if isinstance(value, dict):
        ref = value.get("__entity")
        if isinstance(ref, dict) and isinstance(ref.get("type"), str) and isinstance(ref.get("id"), str):
            yield EntityUid(ref["type"], ref["id"])
            return
        for item in value.values():
            yield from entity_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from entity_refs(item)


def cedar_entity(uid: EntityUid, attrs: dict[str, Any], parents: list[EntityUid]) -> bytes:
    return _encode({"uid": {"type": uid.type, "id": uid.id}, "attrs": attrs, "parents": [{"type": p.type, "id": p.id} for p in parents]})


class EntityIndex:
    def __init__(self, *layers: Iterable[EntityRecord]) -> None:
        """Later layers replace earlier ones uid by uid: bundle, then store, then the schema's
        action groups, which entity data can never redefine."""
        records: dict[EntityUid, EntityRecord] = {}
        for layer in layers:
            for record in layer:
                records[record.uid] = record
        self.records = records
        self.attrs = {uid: to_cedar_record(r.properties, "properties", MAX_ATTRIBUTE_DEPTH) for uid, r in records.items()}
        self.fragments = {uid: cedar_entity(uid, self.attrs[uid], r.parents) for uid, r in records.items()}
        self.refs = {uid: tuple(dict.fromkeys(entity_refs(attrs))) for uid, attrs in self.attrs.items() if attrs}
        ids_by_type: dict[str, list[str]] = {}
        for uid in records:
            ids_by_type.setdefault(uid.type, []).append(uid.id)
        self.ids_by_type = {kind: sorted(ids) for kind, ids in ids_by_type.items()}
        self._ancestors: dict[EntityUid, tuple[EntityUid, ...]] = {}
        self._parts: dict[EntityUid, Part] = {}

    def __len__(self) -> int:
        return len(self.records)

    def ancestors(self, uid: EntityUid) -> tuple[EntityUid, ...]:
        """Every entity `uid` is transitively `in` (cycles tolerated), cached per index."""
        cached = self._ancestors.get(uid)
        if cached is not None:
            return cached
        found: dict[EntityUid, None] = {}
        record = self.records.get(uid)
        pending = list(record.parents) if record else []
        while pending:
            parent = pending.pop()
            if parent in found or parent == uid:
                continue
            found[parent] = None
            parent_record = self.records.get(parent)
            if parent_record:
                pending.extend(parent_record.parents)
        result = tuple(found)
        self._ancestors[uid] = result
        return result

    def entity(self, uid: EntityUid, properties: dict[str, Any] | None) -> bytes:
        """The Cedar JSON of `uid` as one evaluation sees it: stored attributes with the request's
        properties over them. An unknown uid is spelled out too (no attributes, no parents), so
        an evaluation's document always says what it assumes about its own entities."""
        record = self.records.get(uid)
        if not properties:
            return self.fragments[uid] if record is not None else cedar_entity(uid, {}, [])
        if record is None:
            return cedar_entity(uid, properties, [])
        return cedar_entity(uid, {**self.attrs[uid], **properties}, record.parents)

    def part(self, uid: EntityUid, properties: dict[str, Any] | None) -> Part:
        """What Cedar may need about `uid` in one evaluation: the entity itself (stored
        attributes with the request's properties over them) and the transitive closure of
        stored entities reachable from it through parents and entity references, however deep
        (`resource.owner.manager in Group::"blocked"` must see the manager and its groups:
        a missing entity makes `in` and `has` silently false, which can disable a forbid)."""
        if not properties:
            cached = self._parts.get(uid)
            if cached is not None:
                return cached
        fragment = self.entity(uid, properties)
        record = self.records.get(uid)
        first = list(record.parents) if record else []
        if properties and b'"__entity"' in fragment:
            first.extend(entity_refs({**self.attrs.get(uid, {}), **properties}))
        elif not properties:
            first.extend(self.refs.get(uid, ()))
        part = self._close({uid: fragment}, {uid}, first)
        if not properties and record is not None:
            self._parts[uid] = part  # bounded by the index: only stored entities are cached
        return part

    def reachable(self, roots: Iterable[EntityUid]) -> Part:
        """The closure of stored entities reachable from `roots` (entity references in a
        request's context, entities named by policies), the roots included when stored."""
        return self._close({}, set(), list(roots))

    def _close(self, out: dict[EntityUid, bytes], reached: set[EntityUid], pending: list[EntityUid]) -> Part:
        while pending:
            uid = pending.pop()
            if uid in reached:
                continue
            reached.add(uid)
            record = self.records.get(uid)
            if record is None:
                continue  # an unknown uid: Cedar treats it as absent, as the whole store would
            out[uid] = self.fragments[uid]
            pending.extend(record.parents)
            pending.extend(self.refs.get(uid, ()))
        return Part(out, frozenset(reached))


class Part(NamedTuple):
    """Entity fragments for Cedar, and every uid reached (stored or not) while collecting them."""

    fragments: dict[EntityUid, bytes]
    reached: frozenset[EntityUid]
