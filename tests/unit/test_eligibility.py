"""AR-96: approver eligibility, decided by the service."""

from __future__ import annotations

import msgspec
import pytest

from services.access_requests.eligibility import Parties, RequestView, refusal, selected
from services.access_requests.workflows import ApproverSelector, Step, Workflow
from services.pdp.entities import EntityIndex
from services.store.records import EntityRecord, EntityUid

ALICE, BOB, CAROL, DAVE = (EntityUid("User", name) for name in ("alice", "bob", "carol", "dave"))
AGENT = EntityUid("Agent", "trader-7")
INDEX = EntityIndex(
    [
        EntityRecord("User", "carol", parents=[EntityUid("Role", "risk")]),
        EntityRecord("User", "dave", parents=[EntityUid("Team", "desk")]),
        EntityRecord("Team", "desk", parents=[EntityUid("Role", "risk")]),
        EntityRecord("User", "bob"),
    ]
)
VIEW = RequestView(subject={"acts_for": {"__entity": {"type": "User", "id": "alice"}}}, resource={"owner": {"__entity": {"type": "User", "id": "alice"}}, "watchers": [{"__entity": {"type": "User", "id": "bob"}}]})
PARTIES = Parties(subject=AGENT, requester=ALICE.id)
OWNER_THEN_RISK = Workflow(
    steps=[
        Step(name="owner", approvers=[ApproverSelector(attribute="resource.owner")]),
        Step(name="risk", approvers=[ApproverSelector(group=EntityUid("Role", "risk")), ApproverSelector(ids=[ALICE])]),
    ]
)


def test_selectors_resolve_attributes_groups_transitively_and_ids() -> None:
    assert selected([ApproverSelector(attribute="resource.owner")], VIEW, INDEX) == {ALICE}
    assert selected([ApproverSelector(attribute="resource.watchers")], VIEW, INDEX) == {BOB}
    assert selected([ApproverSelector(attribute="resource.missing.deeper")], VIEW, INDEX) == set()
    assert selected([ApproverSelector(group=EntityUid("Role", "risk"))], VIEW, INDEX) == {CAROL, DAVE, EntityUid("Team", "desk")}
    assert selected([ApproverSelector(ids=[BOB])], VIEW, INDEX) == {BOB}


def check(approver: EntityUid, step: int, decided: dict[int, list[EntityUid]] | None = None, workflow: Workflow = OWNER_THEN_RISK, parties: Parties = PARTIES) -> str | None:
    return refusal(approver, workflow=workflow, step_index=step, parties=parties, view=VIEW, index=INDEX, decided=decided or {})


def test_ar_96_only_selected_approvers_decide() -> None:
    assert check(BOB, 0) == "not_an_approver"
    assert check(CAROL, 1) is None


def test_ar_96_no_self_approval_by_subject_requester_or_actor_unless_allowed() -> None:
    # alice is the owner (step 0) but also the requester: refused by default
    assert check(ALICE, 0) == "self_approval"
    assert check(ALICE, 0, parties=Parties(subject=AGENT, actors=frozenset({ALICE.id}))) == "self_approval"
    assert check(ALICE, 0, parties=Parties(subject=ALICE)) == "self_approval"
    allowed = msgspec.structs.replace(OWNER_THEN_RISK, allow_self_approval=True)
    assert check(ALICE, 0, workflow=allowed) is None
    assert check(ALICE, 0, parties=Parties(subject=AGENT)) is None  # not a party: the owner approves


def test_separation_of_duties_across_steps() -> None:
    other = Parties(subject=AGENT)
    assert check(ALICE, 1, decided={0: [ALICE]}, parties=other) == "separation_of_duties"
    relaxed = msgspec.structs.replace(
        OWNER_THEN_RISK, steps=[OWNER_THEN_RISK.steps[0], msgspec.structs.replace(OWNER_THEN_RISK.steps[1], same_approvers_allowed=True)]
    )
    assert check(ALICE, 1, decided={0: [ALICE]}, workflow=relaxed, parties=other) is None


@pytest.mark.parametrize("step", [0, 1])
def test_a_step_is_decided_once_per_approver(step: int) -> None:
    approver = ALICE if step == 0 else CAROL
    assert check(approver, step, decided={step: [approver]}, parties=Parties(subject=AGENT)) == "already_decided"
