"""ARAP error responses (spec/arap.md §14): RFC 9457 problem details with the ARAP type URNs.

Each problem is an exception class carrying its type URN, HTTP status and title (AR-83), so a
rule raises the exact problem the service answers with and the service renders it with
`problem_body`. Malformed bodies have no ARAP type: they are `about:blank` 400s (§8.1 Impl).
"""

from __future__ import annotations

from typing import ClassVar

from profiles.arap.model import Problem

PROBLEM_PREFIX = "urn:openid:authzen:access-request:error:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class ARAPError(Exception):
    """A problem answered as `application/problem+json` (AR-83)."""

    type: ClassVar[str]
    status: ClassVar[int]
    title: ClassVar[str]

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ARAPError):
    """§8.1 Impl / AR-77: malformed submission or rejected callback endpoint; no ARAP type exists."""

    type = "about:blank"
    status = 400
    title = "Bad Request"


class NotRequestable(ARAPError):
    """AR-43: the submission is not based on a requestable denial."""

    type = PROBLEM_PREFIX + "not_requestable"
    status = 400
    title = "Not requestable"


class InvalidDenialBinding(ARAPError):
    """AR-26, AR-30..AR-32: binding material missing, unverifiable or not matching the submission."""

    type = PROBLEM_PREFIX + "invalid_denial_binding"
    status = 400
    title = "Invalid denial binding"


class ExpiredDenial(ARAPError):
    """AR-14, AR-27, AR-30: the freshness deadline of the denial has passed (410, not 400)."""

    type = PROBLEM_PREFIX + "expired_denial"
    status = 410
    title = "Expired denial"


class DuplicateRequest(ARAPError):
    """AR-47: an Idempotency-Key reused by the same requester with a non-equivalent body."""

    type = PROBLEM_PREFIX + "duplicate_request"
    status = 409
    title = "Duplicate request"


class UnknownTask(ARAPError):
    """§14: the task is unknown or not available to this caller (never 403, §19 item 13)."""

    type = PROBLEM_PREFIX + "unknown_task"
    status = 404
    title = "Unknown task"


class TaskExpired(ARAPError):
    """AR-59: the task handle expired or was retired."""

    type = PROBLEM_PREFIX + "task_expired"
    status = 410
    title = "Task expired"


class InvalidTaskState(ARAPError):
    """AR-57, AR-61: the operation is impossible in the task's current state."""

    type = PROBLEM_PREFIX + "invalid_task_state"
    status = 409
    title = "Invalid task state"


def problem_body(exc: ARAPError) -> Problem:
    """The RFC 9457 body of a problem (AR-83)."""
    return Problem(type=exc.type, title=exc.title, status=exc.status, detail=exc.detail)
