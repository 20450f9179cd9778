"""Task lifecycle (spec/arap.md §9-§11): statuses, bundle aggregation, the exactly-once terminal
transition, cancellation and what a task answer must carry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from profiles.arap.errors import InvalidTaskState, TaskExpired
from profiles.arap.model import Result, TaskResponse, parse_instant

PENDING = "pending"
PARTIAL = "partial"
REEVALUATE = "reevaluate"
# §10.1: the terminal statuses a single task or a bundle item can reach.
ITEM_TERMINAL = frozenset({"approved", "denied", "expired", "cancelled", "failed"})
# `partial` is terminal too, but only ever computed for a bundle (AR-53), never transitioned to.
TERMINAL = ITEM_TERMINAL | {PARTIAL}
STATUSES = TERMINAL | {PENDING}


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def aggregate_status(item_statuses: Sequence[str]) -> str:
    """AR-53: any non-terminal item → `pending`; one shared terminal status → it; else `partial`.

    A status that is not an item terminal status counts as non-terminal (AR-53's
    "implementation-defined non-terminal status").
    """
    if not item_statuses:
        raise ValueError("a bundle has at least one item")
    if any(status not in ITEM_TERMINAL for status in item_statuses):
        return PENDING
    distinct = set(item_statuses)
    return distinct.pop() if len(distinct) == 1 else PARTIAL


def transition(current: str, new: str) -> str:
    """AR-57: `pending` moves exactly once to a terminal status and never changes again.

    A terminal `current` → InvalidTaskState (409). `new` must be an item terminal status:
    `pending` is not a move, and `partial` is computed by `aggregate_status`.
    """
    if is_terminal(current):
        raise InvalidTaskState(f"the task is already {current}")
    if new not in ITEM_TERMINAL:
        raise ValueError(f"{new!r} is not a status a task or item transitions to")
    return new


def cancel(statuses: Sequence[str]) -> list[str]:
    """AR-61: cancel a task given its item statuses (a single task: its one status).

    Pending items become `cancelled`, terminal ones stay; if nothing was pending the task
    cannot be cancelled → InvalidTaskState (409). Recompute the aggregate with
    `aggregate_status` (`cancelled`, or `partial` when some items had finished).
    """
    if all(is_terminal(status) for status in statuses):
        raise InvalidTaskState("every item of the task is already terminal")
    return [status if is_terminal(status) else transition(status, "cancelled") for status in statuses]


def check_retrievable(expires_at: str | None, now: datetime) -> None:
    """AR-59 and its ambiguity note: after `task.expires_at` the handle answers 410 task_expired."""
    if expires_at is not None and now >= parse_instant(expires_at):
        raise TaskExpired(f"the task handle expired at {expires_at}")


def check_task_response(response: TaskResponse) -> None:
    """What a task answer must carry; ValueError names the first violation (an ARS bug).

    - AR-57: a known status; `partial` only for bundles; a bundle's status is the AR-53 aggregate.
    - AR-58/AR-64: approved without items ⇒ top-level `reevaluate` result with an approval;
      with items ⇒ such a result in each approved item.
    - AR-58/AR-54: any other result (non-approved task or item, a bundle's top-level result)
      is diagnostic and carries no approval.
    """
    task = response.task
    if task.status not in STATUSES:
        raise ValueError(f"unknown task status {task.status!r}")
    if task.items is None:
        if task.status == PARTIAL:
            raise ValueError("partial is a bundle-only status")
        _check_result(response.result, approved=task.status == "approved", where="result")
        return
    if task.status != aggregate_status([item.status for item in task.items]):
        raise ValueError(f"bundle status {task.status!r} is not the aggregate of its items (AR-53)")
    _check_result(response.result, approved=False, where="result")
    for index, item in enumerate(task.items):
        _check_result(item.result, approved=item.status == "approved", where=f"items[{index}].result")


def _check_result(result: Result | None, *, approved: bool, where: str) -> None:
    if not approved:
        if result is not None and result.approval is not None:
            raise ValueError(f"{where}: only an approved task or item carries an approval")
        return
    if result is None or result.mode != REEVALUATE or result.approval is None:
        raise ValueError(f"{where}: an approved task or item carries a reevaluate result with an approval")
    parse_instant(result.approval.approved_until)
