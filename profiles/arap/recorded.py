"""Denial binding by a server-resolvable `evaluation_id` (spec/arap.md §5.1, AR-30).

When the PDP emits a requestable denial without (or besides) a token, it records what binds
(`record_evaluation`); the ARS resolves `denial.evaluation_id` to that record and verifies the
submission against it (`verify_recorded`), never against what the PEP echoed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from profiles.arap.binding import VerifiedBinding
from profiles.arap.compare import (
    Covered,
    bound_document,
    documents_match,
    relevant_members,
)
from profiles.arap.errors import ExpiredDenial, InvalidDenialBinding, NotRequestable
from profiles.arap.model import JSONObject, format_instant, parse_instant


class RecordedEvaluation(msgspec.Struct, frozen=True):
    """§5.1 Impl: what the PDP records per evaluation. `expires_at` (RFC 3339) ends the binding
    window, which never outlasts the hint's expiry (AR-15). Single form only: bundles bind per
    item (§6 ambiguity note, D-ARAP-6)."""

    evaluation_id: str
    subject: JSONObject
    resource: JSONObject
    action: JSONObject
    context_members: list[str]
    context_values: JSONObject
    expires_at: str
    template: str | None = None
    requestable: bool = True


def record_evaluation(
    *,
    evaluation_id: str,
    covered: Covered,
    members: Iterable[str],
    expires_at: datetime,
    template: str | None = None,
    requestable: bool = True,
) -> RecordedEvaluation:
    """The record of one evaluation (AR-17 evaluation_id style): the act-stripped Subject, the
    target, the bound member set (machinery names removed) and the Context restricted to it."""
    if covered.bulk:
        raise ValueError("an evaluation records one Subject, Resource and Action")
    bound_members = relevant_members(members)
    document = bound_document(covered, bound_members)
    return RecordedEvaluation(
        evaluation_id=evaluation_id,
        subject=document["subject"],
        resource=document["resource"],
        action=document["action"],
        context_members=bound_members,
        context_values=document["context"],
        expires_at=format_instant(expires_at),
        template=template,
        requestable=requestable,
    )


def verify_recorded(
    recorded: RecordedEvaluation | None, covered: Covered, *, now: datetime, skew: timedelta
) -> VerifiedBinding:
    """AR-30: unknown id → InvalidDenialBinding; resolvable but not a requestable denial →
    NotRequestable (§5.1 Impl; requestability precedes binding, §8.5); recorded values not
    equal to the submission (§4) → InvalidDenialBinding; past the *recorded* `expires_at`
    (+ skew, AR-14) → ExpiredDenial. The echoed `denial.expires_at` plays no part (§19 item 6).
    """
    if recorded is None:
        raise InvalidDenialBinding("denial.evaluation_id is unknown to this service")
    if not recorded.requestable:
        raise NotRequestable("the evaluation this denial echoes was not a requestable denial")
    bound = {
        "subject": recorded.subject,
        "resource": recorded.resource,
        "action": recorded.action,
        "context": recorded.context_values,
    }
    if not documents_match(bound, covered, recorded.context_members):
        raise InvalidDenialBinding("the submission differs from the recorded evaluation")
    deadline = parse_instant(recorded.expires_at)
    if now > deadline + skew:
        raise ExpiredDenial(f"the denial expired at {format_instant(deadline)}")
    return VerifiedBinding(
        evaluation_id=recorded.evaluation_id, members=recorded.context_members, deadline=deadline
    )
