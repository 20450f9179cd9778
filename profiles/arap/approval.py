"""Approvals at re-evaluation (spec/arap.md §12): the ARS-signed `approval.state`, the PDP's
verification of `context.approval` (AR-66..AR-72) and the §12.3 guidance on a denied
re-evaluation.

Two verification sources, combinable (§12.1): the bound reference (`state`, a compact JWS) and
the lookup (the stored approval record). Each present source becomes one `_Grant` and every
grant must pass the same checks; a known `approval.id` alone never authorizes (AR-66).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from profiles.arap.compare import (
    Covered,
    bound_document,
    documents_match,
    relevant_members,
)
from profiles.arap.model import JSONObject, format_instant, parse_instant
from profiles.arap.signed import (
    APPROVAL_TYP,
    KeyResolver,
    UnverifiedToken,
    media_type,
    numeric_date,
    sign_jwt,
    verify_jwt,
)

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

Reason = Literal["approval_expired", "out_of_scope", "grant_pending", "policy_denied", "approval_unverifiable"]
NextAction = Literal["request", "retry", "none"]

# §12.3: the default `next_action` of each reason code.
_DEFAULT_NEXT_ACTION: dict[str, NextAction] = {
    "approval_expired": "request",
    "out_of_scope": "request",
    "grant_pending": "retry",
    "policy_denied": "none",
    "approval_unverifiable": "none",
}


class ApprovalRecord(msgspec.Struct, frozen=True):
    """AR-70: the stored approval the PDP can look up (shared-state topology). `status` is that
    of the task or item it came from; only `approved` and not `revoked` applies (AR-71)."""

    approval_id: str
    task_id: str
    status: str
    subject: JSONObject
    resource: JSONObject
    action: JSONObject
    context_members: list[str]
    context_values: JSONObject
    approved_until: str
    evaluation_id: str | None = None
    requester: str | None = None
    approved_at: str | None = None
    revoked: bool = False


class ApplicableApproval(msgspec.Struct, frozen=True):
    """The approval applies to the current request; the permit echoes `approved_until` (AR-74)."""

    approval_id: str
    task_id: str
    evaluation_id: str | None
    approved_until: datetime


class RejectedApproval(msgspec.Struct, frozen=True):
    """The request is evaluated as not approved by this approval (AR-66), with the §12.3 reason."""

    reason: Reason
    detail: str


ApprovalLookup = Callable[[str], ApprovalRecord | None]


class _Grant(msgspec.Struct, frozen=True):
    """One verified source of an approval's facts, normalised."""

    source: str
    task_id: str
    evaluation_id: str | None
    bound: JSONObject
    members: list[str]
    requester: str | None
    deadline: datetime
    active: bool


class _Rejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.outcome = RejectedApproval(reason=reason, detail=detail)


def approval_claims(
    *,
    issuer: str,
    audience: str,
    approval_id: str,
    task_id: str,
    covered: Covered,
    members: Iterable[str],
    approved_until: datetime,
    now: datetime,
    evaluation_id: str | None = None,
    requester: str | None = None,
) -> JSONObject:
    """The `approval.state` JWT claims (§12.1 Impl, AR-69, AR-70): `aud` the verifying PDP,
    `exp` ≤ `approved_until`, the exact-match scope (act-stripped Subject, Resource, Action,
    member set and bound Context values) and the requester."""
    if covered.bulk:
        raise ValueError("an approval covers one Subject, Resource and Action (AR-65)")
    bound_members = relevant_members(members)
    claims: JSONObject = {
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int(approved_until.timestamp()),
        "approval_id": approval_id,
        "task_id": task_id,
        "approved_until": format_instant(approved_until),
        "binding_context_members": bound_members,
        **bound_document(covered, bound_members),
    }
    if evaluation_id is not None:
        claims["evaluation_id"] = evaluation_id
    if requester is not None:
        claims["requester"] = requester
    return claims


def sign_approval_state(claims: JSONObject, key: ECKey) -> str:
    """AR-69: a compact JWS (ES256, `kid`, `typ: arap-approval+jwt`) for `approval.state`."""
    return sign_jwt(claims, key, APPROVAL_TYP)


def verify_approval(
    approval: Any,
    request: Covered,
    *,
    resolve_key: KeyResolver,
    audience: str,
    now: datetime,
    lookup: ApprovalLookup | None,
    caller: str | None = None,
) -> ApplicableApproval | RejectedApproval:
    """Does `context.approval` (parsed JSON, as the PEP sent it) apply to the current request?

    `lookup` is None only in the pure bound-reference topology (no shared state); given, the
    record is required and authoritative for status (AR-71). In order:
    approval_unverifiable — malformed object; `state` not an ES256 JWS we trust with our `aud`
    (AR-69); `state` approval id ≠ `approval.id` (AR-67) or its `approved_until` ≠ the object's;
    no record where one is required, nothing verifiable at all (AR-68), sources disagreeing on
    the task. approval_expired — past `approved_until`/`exp`, or the record not approved,
    revoked, cancelled or superseded (AR-71, AR-75). out_of_scope — the current request is not
    equal (§4) to the approved Subject, Resource, Action and bound Context (AR-72), or the
    authenticated `caller` is not the requester the approval is bound to (AR-66).
    """
    if request.bulk:
        raise ValueError("re-evaluation is per item (AR-65)")
    try:
        approval_id, approved_until = _reference(approval)
        grants = _grants(approval, approval_id, approved_until, resolve_key, audience, lookup)
        for grant in grants:
            _check_current(grant, now)
        for grant in grants:
            _check_scope(grant, request, caller)
    except _Rejected as rejected:
        return rejected.outcome
    first = grants[0]
    return ApplicableApproval(
        approval_id=approval_id,
        task_id=first.task_id,
        evaluation_id=first.evaluation_id,
        approved_until=min(grant.deadline for grant in grants),
    )


def _reference(approval: Any) -> tuple[str, datetime]:
    """AR-64: an object with a string `id` and an RFC 3339 `approved_until`."""
    if not isinstance(approval, dict) or not isinstance(approval.get("id"), str):
        raise _Rejected("approval_unverifiable", "context.approval is not an approval object with an id")
    approved_until = approval.get("approved_until")
    try:
        return approval["id"], parse_instant(approved_until if isinstance(approved_until, str) else "")
    except ValueError:
        raise _Rejected("approval_unverifiable", "approval.approved_until is not an RFC 3339 date-time") from None


def _grants(
    approval: JSONObject,
    approval_id: str,
    approved_until: datetime,
    resolve_key: KeyResolver,
    audience: str,
    lookup: ApprovalLookup | None,
) -> list[_Grant]:
    grants: list[_Grant] = []
    if "state" in approval:
        grants.append(_state_grant(approval["state"], approval_id, approved_until, resolve_key, audience))
    if lookup is not None:
        record = lookup(approval_id)
        if record is None:
            raise _Rejected("approval_unverifiable", "approval.id is unknown")
        grants.append(_record_grant(record))
    if not grants:
        raise _Rejected("approval_unverifiable", "nothing verifiable: no approval.state and no shared approval state")
    if len({grant.task_id for grant in grants}) != 1:
        raise _Rejected("approval_unverifiable", "approval.state and the approval record name different tasks")
    return grants


def _state_grant(
    state: Any, approval_id: str, approved_until: datetime, resolve_key: KeyResolver, audience: str
) -> _Grant:
    """AR-67, AR-69, AR-70: the bound reference, verified and turned into a grant."""
    if not isinstance(state, str):
        raise _Rejected("approval_unverifiable", "approval.state is not a compact JWS")
    try:
        verified = verify_jwt(state, resolve_key=resolve_key, audience=audience)
    except UnverifiedToken as exc:
        raise _Rejected("approval_unverifiable", f"approval.state: {exc.detail}") from None
    claims = verified.claims
    if media_type(verified.header.get("typ")) != APPROVAL_TYP or not isinstance(claims.get("iss"), str):
        raise _Rejected("approval_unverifiable", "approval.state is not an approval state (typ, iss)")
    if claims.get("approval_id") != approval_id:
        raise _Rejected("approval_unverifiable", "approval.id does not match the id inside approval.state")
    members = claims.get("binding_context_members")
    task_id = claims.get("task_id")
    try:
        deadline = numeric_date(claims, "exp")
    except ValueError:
        deadline = None
    if (
        deadline is None
        or not isinstance(task_id, str)
        or not isinstance(members, list)
        or not all(isinstance(name, str) for name in members)
        or not all(name in claims for name in ("subject", "resource", "action"))
    ):
        raise _Rejected("approval_unverifiable", "approval.state lacks task_id, exp, scope or binding_context_members")
    if "approved_until" in claims:
        try:
            protected = parse_instant(claims["approved_until"])
        except ValueError:
            raise _Rejected("approval_unverifiable", "approval.state approved_until is malformed") from None
        if protected != approved_until:
            raise _Rejected("approval_unverifiable", "approval.approved_until differs from approval.state")
        deadline = min(deadline, protected)
    evaluation_id = claims.get("evaluation_id")
    requester = claims.get("requester")
    return _Grant(
        source="approval.state",
        task_id=task_id,
        evaluation_id=evaluation_id if isinstance(evaluation_id, str) else None,
        bound={name: claims.get(name, {}) for name in ("subject", "resource", "action", "context")},
        members=members,
        requester=requester if isinstance(requester, str) else None,
        deadline=deadline,
        active=True,
    )


def _record_grant(record: ApprovalRecord) -> _Grant:
    """AR-70/AR-71: the looked-up record, authoritative for status and revocation."""
    return _Grant(
        source="approval record",
        task_id=record.task_id,
        evaluation_id=record.evaluation_id,
        bound={
            "subject": record.subject,
            "resource": record.resource,
            "action": record.action,
            "context": record.context_values,
        },
        members=record.context_members,
        requester=record.requester,
        deadline=parse_instant(record.approved_until),
        active=record.status == "approved" and not record.revoked,
    )


def _check_current(grant: _Grant, now: datetime) -> None:
    """AR-71/AR-74/AR-75: unexpired and still approved (not revoked, cancelled, superseded)."""
    if not grant.active:
        raise _Rejected("approval_expired", f"{grant.source}: the approval was revoked or is no longer approved")
    if now > grant.deadline:
        raise _Rejected("approval_expired", f"{grant.source}: the approval expired at {format_instant(grant.deadline)}")


def _check_scope(grant: _Grant, request: Covered, caller: str | None) -> None:
    """AR-72 exact-match scope; AR-66 requester binding when the caller is known."""
    if not documents_match(grant.bound, request, grant.members):
        raise _Rejected("out_of_scope", f"{grant.source}: the request is outside the approved scope")
    if caller is not None and grant.requester is not None and caller != grant.requester:
        raise _Rejected("out_of_scope", f"{grant.source}: the approval is bound to another requester")


def next_action_for(reason: str | None, has_fresh_access_request: bool) -> NextAction:
    """§12.3 for the PDP: the default `next_action` of `reason`; `request` only when the
    response carries a fresh `access_request` (otherwise `none`, matching AR-76)."""
    action = _DEFAULT_NEXT_ACTION.get(reason or "")
    if action is None:
        action = "request" if has_fresh_access_request else "none"
    if action == "request" and not has_fresh_access_request:
        return "none"
    return action
