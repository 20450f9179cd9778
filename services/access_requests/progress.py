"""Where a task stands in its workflow: who decided which step, and what follows from it.

The state is kept in the task record (`TaskRecord.workflow`) and changed only together with
the task, in one store transaction. These functions are pure: the service reads the task,
asks what a decision, a timeout or a cancellation does, and writes the result back under
optimistic concurrency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from services.access_requests.workflows import Workflow
from services.store.records import EntityUid


class StepDecision(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One approver's decision on one step. `approved_until` is the approver's narrowing."""

    step: int
    approver: EntityUid
    decision: Literal["approve", "deny"]
    at: datetime
    comment: str | None = None
    reason: str | None = None
    approved_until: datetime | None = None


class Note(msgspec.Struct, kw_only=True):
    by: EntityUid
    at: datetime
    text: str


class WorkflowState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The workflow part of a task. `responded` is the status code the submission was answered
    with, so that an idempotent retry gets the same one (§8.6 Impl); `policies` are the
    requestable policies that made the access requestable (shown to reviewers only)."""

    step: int = 0
    step_started_at: datetime
    decisions: list[StepDecision] = []
    comments: list[Note] = []
    escalated: list[int] = []
    policies: list[str] = []
    responded: int = 202
    closed_reason: str | None = None

    def decided(self) -> dict[int, list[EntityUid]]:
        """Step index → the approvers who decided it, in order."""
        out: dict[int, list[EntityUid]] = {}
        for decision in self.decisions:
            out.setdefault(decision.step, []).append(decision.approver)
        return out

    def approvals_of(self, step: int) -> list[StepDecision]:
        return [d for d in self.decisions if d.step == step and d.decision == "approve"]


def read_state(document: dict[str, Any]) -> WorkflowState:
    return msgspec.convert(document, WorkflowState)


def write_state(state: WorkflowState) -> dict[str, Any]:
    written: dict[str, Any] = msgspec.to_builtins(state)
    return written


def step_complete(workflow: Workflow, state: WorkflowState, step: int) -> bool:
    """A step completes when `quorum` distinct approvers approved it."""
    approvers = {d.approver for d in state.approvals_of(step)}
    return len(approvers) >= workflow.steps[step].quorum


def narrowest_until(state: WorkflowState) -> datetime | None:
    """The earliest `approved_until` any approver asked for, if any did."""
    narrowed = [d.approved_until for d in state.decisions if d.decision == "approve" and d.approved_until]
    return min(narrowed) if narrowed else None
