"""Access Request submission rules (spec/arap.md §6, §8).

Shape (§8.1 Impl → 400), binding coverage (AR-31/AR-32 → which denial covers which items),
the merged `requested_access` of an item, and the idempotency fingerprint (AR-47).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from profiles.arap.compare import Covered, Target
from profiles.arap.errors import BadRequest, InvalidDenialBinding
from profiles.arap.jcs import canonicalize
from profiles.arap.model import Denial, JSONObject, Submission, parse_instant
from profiles.authzen.model import Action, Resource, Subject


class Coverage(msgspec.Struct, frozen=True):
    """One denial to verify and what it must cover (AR-32). `items` are the indices of the
    bundle items it covers; `()` for a submission without items."""

    denial: Denial
    covered: Covered
    items: tuple[int, ...]


class RequestedAccess(msgspec.Struct, frozen=True):
    """The well-known `requested_access` members (§8.1), parsed, plus every extension member."""

    requested_until: datetime | None = None
    emergency: bool = False
    extensions: JSONObject = msgspec.field(default_factory=dict)


def check_shape(submission: Submission) -> None:
    """§8.1 and its Impl note: `resource`+`action` xor a non-empty `items`; RFC 3339 expiries;
    well-typed `requested_access`. Violations are 400 `about:blank` (BadRequest).
    (`subject` and each item's `resource`/`action` are required by the types themselves.)"""
    if submission.items is not None:
        if submission.resource is not None or submission.action is not None:
            raise BadRequest("resource and action must be absent when items is present")
        if not submission.items:
            raise BadRequest("items must not be empty")
    elif submission.resource is None or submission.action is None:
        raise BadRequest("resource and action are required without items")
    for denial in _denials(submission):
        _instant(denial.expires_at, "denial.expires_at")
    indices: list[int | None] = list(range(len(submission.items))) if submission.items else [None]
    for index in indices:
        requested_access(submission, index)


def _denials(submission: Submission) -> list[Denial]:
    item_denials = [item.denial for item in submission.items or () if item.denial is not None]
    return ([submission.denial] if submission.denial else []) + item_denials


def _instant(value: Any, member: str) -> datetime:
    try:
        return parse_instant(value)
    except ValueError:
        raise BadRequest(f"{member} must be an RFC 3339 date-time with a time zone") from None


def requested_access(submission: Submission, index: int | None = None) -> RequestedAccess:
    """§8.1: item `index`'s `requested_access` merged over the top-level one, item members
    winning (member by member, not deep), parsed; extension members are kept (AR-84)."""
    merged = dict(submission.requested_access or {})
    if index is not None and submission.items:
        merged.update(submission.items[index].requested_access or {})
    until = merged.pop("requested_until", None)
    emergency = merged.pop("emergency", False)
    if not isinstance(emergency, bool):
        raise BadRequest("requested_access.emergency must be a boolean")
    return RequestedAccess(
        requested_until=_instant(until, "requested_access.requested_until") if until is not None else None,
        emergency=emergency,
        extensions=merged,
    )


def entity_json(entity: Subject | Resource | Action) -> JSONObject:
    """The AuthZEN object as plain JSON for comparison (AR-22): `type`, `id`, `properties` with
    their original values; a `null` or absent `properties` is absent (D-AZ-3, D-ARAP-2)."""
    value: JSONObject = msgspec.to_builtins(entity)
    return value


def _target(resource: Resource, action: Action) -> Target:
    return Target(resource=entity_json(resource), action=entity_json(action))


def coverage_plan(submission: Submission) -> list[Coverage]:
    """AR-31/AR-32: every denial present, with what it must cover, so that every item is covered.

    - no items: the top-level denial binds the single S/R/A + Context;
    - items, one without its own denial: a top-level bundle denial is REQUIRED and covers every
      item (bulk form, submission order);
    - items, each with its own denial: each covers Subject + that item + Context (single form);
      a top-level denial, if also sent, is verified as a bundle denial too (D-ARAP-7).
    A denial without binding material, or a required one missing → InvalidDenialBinding.
    Call after `check_shape`.
    """
    subject, context = entity_json(submission.subject), submission.context
    if not submission.items:
        assert submission.resource is not None and submission.action is not None
        single = Covered(subject, context, (_target(submission.resource, submission.action),))
        return [Coverage(_with_material(submission.denial, "denial"), single, ())]
    targets = tuple(_target(item.resource, item.action) for item in submission.items)
    plan: list[Coverage] = []
    if submission.denial is not None or any(item.denial is None for item in submission.items):
        denial = _with_material(submission.denial, "a top-level denial covering every item")
        plan.append(Coverage(denial, Covered(subject, context, targets, bulk=True), tuple(range(len(targets)))))
    for index, item in enumerate(submission.items):
        if item.denial is not None:
            denial = _with_material(item.denial, f"items[{index}].denial")
            plan.append(Coverage(denial, Covered(subject, context, (targets[index],)), (index,)))
    return plan


def _with_material(denial: Denial | None, what: str) -> Denial:
    """AR-31: a denial needs a `binding_token` or an `evaluation_id`."""
    if denial is None:
        raise InvalidDenialBinding(f"{what} is required")
    if not denial.binding_token and not denial.evaluation_id:
        raise InvalidDenialBinding(f"{what} carries neither binding_token nor evaluation_id")
    return denial


def request_fingerprint(body: Any) -> str:
    """AR-47: the idempotency equivalence of two submission bodies (parsed JSON): SHA-256 hex of
    their JCS, so whitespace and member order do not matter and every value does."""
    try:
        return hashlib.sha256(canonicalize(body)).hexdigest()
    except ValueError as exc:
        raise BadRequest(f"the request body has no canonical JSON form: {exc}") from None
