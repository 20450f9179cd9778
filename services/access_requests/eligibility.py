"""Who may approve a step of a workflow (ARAP AR-96; DESIGN.md §3 "Workflows").

Eligibility is decided here, by the service, never by a page: the reviewer UI and API only ask.
An approver must be selected by the step, must not be a party to the request (the subject, the
requester, or any actor in the delegation chain) unless the workflow allows self-approval, must
not have approved an earlier step unless the step allows the same approvers (separation of
duties), and decides a step at most once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from services.access_requests.workflows import ApproverSelector, Step, Workflow
from services.pdp.entities import EntityIndex, entity_refs
from services.store.records import EntityUid

Refusal = Literal["not_an_approver", "self_approval", "separation_of_duties", "already_decided"]


class Parties(msgspec.Struct, frozen=True):
    """Who the request is by and for: the subject entity, the identifiers of the delegation
    chain acting for it (`subject.properties.act`, `client.actor`: ARAP actors are identified by
    strings, not typed entities) and the caller that submitted it.

    Actor and requester identifiers match an approver by id whatever its type: for refusing
    self-approval, a false match only refuses more (AR-96)."""

    subject: EntityUid
    actors: frozenset[str] = frozenset()
    requester: str | None = None

    def includes(self, who: EntityUid) -> bool:
        return who == self.subject or who.id == self.requester or who.id in self.actors


class RequestView(msgspec.Struct, frozen=True):
    """The attributes of the request's subject and resource as the request described them
    (request properties over stored attributes): what `subject.x` / `resource.x` selectors read."""

    subject: Mapping[str, Any]
    resource: Mapping[str, Any]


def selected(selectors: Sequence[ApproverSelector], view: RequestView, index: EntityIndex) -> set[EntityUid]:
    """The entities the selectors name: attribute paths resolve to entity references (one, or a
    set of them), a group to every stored entity transitively in it, ids to themselves."""
    found: set[EntityUid] = set()
    for selector in selectors:
        if selector.attribute is not None:
            found.update(_at_path(selector.attribute, view))
        elif selector.group is not None:
            group = selector.group
            found.update(uid for uid in index.records if group in index.ancestors(uid))
        elif selector.ids is not None:
            found.update(selector.ids)
    return found


def _at_path(path: str, view: RequestView) -> Iterable[EntityUid]:
    root, *members = path.split(".")
    value: Any = view.subject if root == "subject" else view.resource
    for member in members:
        if not isinstance(value, Mapping) or member not in value:
            return ()
        value = value[member]
    return entity_refs(value)


def refusal(
    approver: EntityUid,
    *,
    workflow: Workflow,
    step_index: int,
    parties: Parties,
    view: RequestView,
    index: EntityIndex,
    decided: Mapping[int, Iterable[EntityUid]],
    escalated: bool = False,
) -> Refusal | None:
    """Why `approver` may not decide step `step_index` now, or None when they may. `decided`
    maps each step index to the approvers who already decided it; an `escalated` step also
    accepts its `escalate_to` approvers."""
    step: Step = workflow.steps[step_index]
    if approver in decided.get(step_index, ()):
        return "already_decided"
    candidates = [*step.approvers, *step.escalate_to] if escalated else step.approvers
    if approver not in selected(candidates, view, index):
        return "not_an_approver"
    if parties.includes(approver) and not workflow.allow_self_approval:
        return "self_approval"
    if not step.same_approvers_allowed and any(approver in set(decided.get(earlier, ())) for earlier in range(step_index)):
        return "separation_of_duties"
    return None
