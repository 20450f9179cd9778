"""ARAP wire types (spec/arap.md §2, §8, §9, §11-§14) and RFC 3339 instants.

Structs describe shapes; the binding and scope rules compare the *original* JSON values
(`compare.py`), so values that bind (`context`, `properties`, `approval.state`) stay plain parsed
JSON. Unknown members are ignored (AR-85): no Struct forbids unknown fields. Optional members
default to None and are omitted on output, like the AuthZEN types they extend.
Timestamps are RFC 3339 strings on the wire; `parse_instant` / `format_instant` convert them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec

from profiles.authzen.model import Action, Resource, Subject

JSONObject = dict[str, Any]


class _Wire(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    pass


# -- RFC 3339 instants ---------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime; ValueError for anything else.

    Stricter than `datetime.fromisoformat` on purpose: a time zone is required (a naive time
    has no instant), and ISO 8601 variants RFC 3339 excludes (basic format, date only, week
    dates) are refused. Fractions beyond microseconds are truncated; leap second 60 is refused
    because Python cannot represent it.
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time with a time zone: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "").ljust(6, "0")[:6])
    offset = timedelta()
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"invalid UTC offset in {text!r}")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        offset = -offset if match.group(9) == "-" else offset
    local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    try:
        return local.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ValueError(f"{text!r} is outside the representable range") from None


def format_instant(instant: datetime) -> str:
    """RFC 3339 in UTC with `Z`; seconds precision unless the instant has a sub-second part."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a naive datetime is not an instant")
    utc = instant.astimezone(UTC)
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


# -- Decision Context (§2) -----------------------------------------------------------------


class AccessRequestHint(_Wire):
    """`context.access_request` of a requestable denial (§2). `display` is an extension point."""

    expires_at: str
    endpoint: str | None = None
    template: str | None = None
    binding_token: str | None = None
    display: JSONObject | None = None
    form_url: str | None = None
    request_schema_url: str | None = None
    request_catalogs_url: str | None = None


# -- Submission (§8) -----------------------------------------------------------------------


class Denial(_Wire):
    """§8.2: the echo of the denied Decision. Whether it carries binding material is an
    `invalid_denial_binding` question (AR-31), not a shape one, so both members are optional."""

    expires_at: str
    evaluation_id: str | None = None
    binding_token: str | None = None
    evaluated_at: str | None = None
    reason: str | None = None
    template: str | None = None


class SubmissionItem(_Wire):
    """§8.1 bundle item. `requested_access` stays JSON: it is an extension point (AR-84)."""

    resource: Resource
    action: Action
    requested_access: JSONObject | None = None
    denial: Denial | None = None


class Callback(_Wire):
    """§13: where and for which events the ARS notifies the PEP."""

    endpoint: str
    state: str | None = None
    events: list[str] | None = None


class ActorLink(_Wire):
    """§8.4: the next link of a delegation chain, toward the Subject."""

    sub: str
    iss: str | None = None
    sub_profile: str | None = None
    act: ActorLink | None = None


class Actor(_Wire):
    """§8.4: the immediate actor; identity = (issuer, id). Audit metadata unless verified (AR-42)."""

    id: str
    issuer: str | None = None
    type: str | None = None
    act: ActorLink | None = None


class Source(_Wire):
    session_id: str | None = None
    external_url: str | None = None
    integration_id: str | None = None


class Client(_Wire):
    id: str | None = None
    name: str | None = None
    actor: Actor | None = None
    source: Source | None = None


class Submission(_Wire):
    """§8.1: the Access Request body. `subject` is required by the type (missing → 400);
    the resource/action-xor-items rule is `submission.check_shape`."""

    subject: Subject
    resource: Resource | None = None
    action: Action | None = None
    items: list[SubmissionItem] | None = None
    context: JSONObject | None = None
    denial: Denial | None = None
    requested_access: JSONObject | None = None
    callback: Callback | None = None
    client: Client | None = None


# -- Task and result (§9, §10, §12) --------------------------------------------------------


class Approval(_Wire):
    """AR-64. `state` is any JSON value and opaque; UNSET keeps "absent" apart from `null`."""

    id: str
    approved_until: str
    approved_at: str | None = None
    state: Any = msgspec.UNSET


class Result(_Wire):
    """§12: only `reevaluate` is defined; an unknown mode is never approval (AR-63)."""

    mode: str
    approval: Approval | None = None


class Progress(_Wire):
    current_step: int | None = None
    total_steps: int | None = None
    step_name: str | None = None
    awaiting: list[str] | None = None


class TaskLinks(_Wire):
    ticket: str | None = None
    review: str | None = None
    cancel: str | None = None


class TaskItem(_Wire):
    """§9: positional per-item outcome; `result` REQUIRED when the item is approved (AR-58)."""

    resource: Resource
    action: Action
    status: str
    result: Result | None = None


class Task(_Wire):
    """§9: the task handle. `status_endpoint` is REQUIRED in every representation (§19 item 9)."""

    id: str
    status: str
    status_endpoint: str
    expires_at: str | None = None
    progress: Progress | None = None
    display: JSONObject | None = None
    links: TaskLinks | None = None
    items: list[TaskItem] | None = None


class TaskResponse(_Wire):
    """§9/§10/§11: every ARS task answer is `{"task": …, "result"?: …}` (§11 ambiguity note)."""

    task: Task
    result: Result | None = None


class CancelRequest(_Wire):
    reason: str | None = None
    comment: str | None = None


class CallbackBody(_Wire):
    """AR-79: `task`, optionally `result`, and the submission's `state` echoed top-level."""

    task: Task
    state: str | None = None
    result: Result | None = None


class Problem(_Wire):
    """RFC 9457 problem details (AR-83)."""

    type: str
    title: str
    status: int
    detail: str | None = None
