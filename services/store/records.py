"""Records the store keeps. Plain msgspec Structs so that they encode to the wire unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class EntityUid(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The identity of an entity: AuthZEN `type` + `id` (Cedar `type::"id"`)."""

    type: str
    id: str


class EntityRecord(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """An entity of the policy information point: attributes and the entities it belongs to.

    `parents` are Cedar parents (`principal in Role::"admin"`), so group and role membership is
    transitive for policies and for search.
    """

    type: str
    id: str
    properties: dict[str, Any] = {}
    parents: list[EntityUid] = []

    @property
    def uid(self) -> EntityUid:
        return EntityUid(self.type, self.id)


class EntityChanges(msgspec.Struct):
    """What changed in the stored entities after a revision, for incremental sync of instances."""

    revision: int
    upserted: list[EntityRecord]
    deleted: list[EntityUid]


class SigningKey(msgspec.Struct):
    """An asymmetric signing key kept in the store. `private_jwk` never leaves the process."""

    kid: str
    alg: str
    private_jwk: str
    created_at: datetime
    retires_at: datetime | None = None
