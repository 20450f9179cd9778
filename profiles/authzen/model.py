"""AuthZEN Authorization API 1.0 wire types (spec/authzen-api.md §2, §4-§7).

Unknown members are ignored at every level (AZ-45): no Struct forbids unknown fields.
Optional members default to None so that `null` reads as absent (AZ-48 ambiguity note) and
is omitted on output (`omit_defaults`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

JSONObject = dict[str, Any]


class _Wire(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    pass


class Subject(_Wire):
    """AZ-3: `type` and `id` are strings; `properties` an object."""

    type: str
    id: str
    properties: JSONObject | None = None


class Resource(_Wire):
    type: str
    id: str
    properties: JSONObject | None = None


class Action(_Wire):
    """AZ-3: an Action has `name` only (no type/id)."""

    name: str
    properties: JSONObject | None = None


class EvaluationRequest(_Wire):
    """§4: one Access Evaluation. All three entities are required (AZ-44)."""

    subject: Subject
    action: Action
    resource: Resource
    context: JSONObject | None = None


EvaluationsSemantic = Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"]


class EvaluationOptions(_Wire):
    """AZ-11: a closed set; an unknown value is a 400 (ambiguity note §5.3). Other keys ignored."""

    evaluations_semantic: EvaluationsSemantic = "execute_all"


class EvaluationsRequest(_Wire):
    """§5.1: the batch request. Items are kept raw so that one bad item is an item error (§5.5),
    not a whole-request 400; top-level defaults are typed because they apply to every item."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: JSONObject | None = None
    evaluations: list[msgspec.Raw] | None = None
    options: EvaluationOptions | None = None


class EvaluationItem(_Wire):
    """One raw item of §5.1, any member may be absent; typed entities when present."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: JSONObject | None = None


class Decision(_Wire):
    """AZ-4: `decision` is a JSON boolean; `context` an object when present."""

    decision: bool
    context: JSONObject | None = None


class EvaluationsResponse(_Wire):
    """AZ-12/AZ-13: the array only, no top-level decision."""

    evaluations: list[Decision]


# -- search (§6) ----------------------------------------------------------------------------


class SearchedEntity(_Wire):
    """The searched-for subject or resource: `type` required; `id` ignored (AZ-18)."""

    type: str
    id: str | None = None
    properties: JSONObject | None = None


class PageRequest(_Wire):
    """§6.6: `token` from a previous `next_token`; `limit` a non-negative integer."""

    token: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=0)] | None = None
    properties: JSONObject | None = None


class SubjectSearchRequest(_Wire):
    subject: SearchedEntity
    action: Action
    resource: Resource
    context: JSONObject | None = None
    page: PageRequest | None = None


class ResourceSearchRequest(_Wire):
    subject: Subject
    action: Action
    resource: SearchedEntity
    context: JSONObject | None = None
    page: PageRequest | None = None


class ActionSearchRequest(_Wire):
    """§6.5: no `action` member; one sent is ignored as unknown."""

    subject: Subject
    resource: Resource
    context: JSONObject | None = None
    page: PageRequest | None = None


class EntityResult(_Wire):
    type: str
    id: str


class ActionResult(_Wire):
    name: str


class PageResponse(_Wire):
    """AZ-21/AZ-24: `next_token` always present when `page` is; "" marks the last page."""

    next_token: str
    count: int
    total: int


class EntitySearchResponse(_Wire):
    """§6.2 for subject and resource search: `page` first so a streaming PEP reads `count`
    early; `results` always present (AZ-17: only entities of the searched type)."""

    page: PageResponse
    results: list[EntityResult]


class ActionSearchResponse(_Wire):
    """§6.2 for action search."""

    page: PageResponse
    results: list[ActionResult]


# -- metadata (§7) --------------------------------------------------------------------------


class Metadata(_Wire):
    """§7.1. Members without a value are omitted (AZ-29)."""

    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str | None = None
    search_subject_endpoint: str | None = None
    search_resource_endpoint: str | None = None
    search_action_endpoint: str | None = None
    capabilities: list[str] | None = None
    jwks_uri: str | None = None
    signed_metadata: str | None = None


class ErrorBody(_Wire):
    """§8.4 ambiguity note: every error body is a JSON object (AZ-42)."""

    error: str
    message: str
