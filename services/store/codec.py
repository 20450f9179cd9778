"""Encoding shared by the store back ends: entity JSON columns and UTC timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.store.records import EntityChanges, EntityRecord, EntityUid

_decode_properties = msgspec.json.Decoder(dict[str, Any]).decode
_decode_parents = msgspec.json.Decoder(list[EntityUid]).decode


# What a tombstone keeps: the uid only, so a deleted entity's attributes do not linger.
EMPTY_PROPERTIES = "{}"
EMPTY_PARENTS = "[]"


def encode_entity(entity: EntityRecord) -> tuple[str, str]:
    """The `properties` and `parents` columns of `entity`, as JSON text."""
    return (
        msgspec.json.encode(entity.properties).decode(),
        msgspec.json.encode(entity.parents).decode(),
    )


def decode_changes(revision: int, rows: Iterable[Sequence[Any]]) -> EntityChanges:
    """EntityChanges from `(type, id, properties, parents, deleted)` rows (JSON as text)."""
    changes = EntityChanges(revision=revision, upserted=[], deleted=[])
    for type_, id_, properties, parents, deleted in rows:
        if deleted:
            changes.deleted.append(EntityUid(type_, id_))
        else:
            record = EntityRecord(type_, id_, _decode_properties(properties), _decode_parents(parents))
            changes.upserted.append(record)
    return changes


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC. Naive datetimes are refused: guessing their zone would shift keys' lives."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {moment!r}")
    return moment.astimezone(UTC)
