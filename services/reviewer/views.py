"""What the pages show, computed from the service's answers: plain functions, no HTTP.

The service decides who may see and decide what; these only arrange its answers for people:
the chain of agents acting for a subject, `authorization_details` as readable rows, durations,
and the filters of the inbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from profiles.arap.model import format_instant, parse_instant

# The inbox's age filter: name → (label, newer than, older than).
AGES: dict[str, tuple[str, timedelta | None, timedelta | None]] = {
    "1h": ("Last hour", timedelta(hours=1), None),
    "1d": ("Last 24 hours", timedelta(days=1), None),
    "older": ("Older than 24 hours", None, timedelta(days=1)),
}
# What a reviewer may narrow an approval to, at most the cap the service computed.
DURATIONS = [(timedelta(hours=1), "1 hour"), (timedelta(hours=4), "4 hours"), (timedelta(days=1), "1 day"), (timedelta(days=7), "7 days")]
# Risks whose approval needs the reviewer's explicit confirmation (D-UI-6).
CONFIRMED_RISKS = frozenset({"high", "critical"})


def needs_confirmation(risk: str) -> bool:
    return risk in CONFIRMED_RISKS


def entity(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "—"
    return f"{value.get('type')} {value.get('id')}"


def acting_chain(subject: Mapping[str, Any], client: Mapping[str, Any] | None) -> list[str]:
    """Who acts for the subject, outermost first: the client's actor and its `act` links, then
    the subject's own `act` chain (RFC 8693 §4.1 nesting, `sub` or `id` naming each actor)."""
    chain: list[str] = []
    links: list[Any] = []
    actor = (client or {}).get("actor")
    if isinstance(actor, Mapping):
        links.append(actor)
    act = (subject.get("properties") or {}).get("act")
    if act is not None:
        links.append(act)
    for link in links:
        while isinstance(link, Mapping):
            name = link.get("sub") or link.get("id")
            if isinstance(name, str):
                chain.append(f"{link['type']} {name}" if isinstance(link.get("type"), str) else name)
            link = link.get("act")
    return chain


def detail_rows(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One RAR authorization detail (RFC 9396 §2) as label/value rows, common fields first."""
    rows = [("Type", str(detail.get("type", "—")))]
    for name, label in (("actions", "Actions"), ("locations", "Locations"), ("datatypes", "Data types"), ("identifier", "Identifier"), ("privileges", "Privileges")):
        if name in detail:
            rows.append((label, _text(detail[name])))
    rows += [(name.replace("_", " ").capitalize(), _text(value)) for name, value in detail.items() if name not in {"type", "actions", "locations", "datatypes", "identifier", "privileges"}]
    return rows


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def context_rows(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request's context, minus what has its own section (details, justification)."""
    hidden = {"authorization_details", "business_justification", "approval"}
    return [(name, _text(value)) for name, value in context.items() if name not in hidden]


def authorization_details(context: Mapping[str, Any]) -> list[list[tuple[str, str]]]:
    details = context.get("authorization_details")
    if not isinstance(details, list):
        return []
    return [detail_rows(d) for d in details if isinstance(d, Mapping)]


def requested_duration(task: Mapping[str, Any]) -> str | None:
    """How long the requester asked for (`requested_access.requested_until`), from submission."""
    until = (task.get("requested_access") or {}).get("requested_until")
    try:
        return span(parse_instant(until) - parse_instant(task["created_at"])) if isinstance(until, str) else None
    except ValueError:
        return None


def span(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def when(instant: str | None) -> str:
    """An RFC 3339 instant as people read it, in UTC: 2026-11-23 09:30 UTC."""
    if not instant:
        return "—"
    try:
        return parse_instant(instant).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return instant


def age(created_at: str, now: datetime) -> str:
    return span(now - parse_instant(created_at)) + " ago"


def duration_choices(now: datetime, cap: str | None) -> list[tuple[str, str]]:
    """(approved_until, label) of the approvals offered: the longest the service allows now,
    then the shorter standard ones under it. The form sends the instant shown, so a page left
    open grants no later than it said (the service refuses one past its cap)."""
    if cap is None:
        return []
    until = parse_instant(cap)
    choices = [(format_instant(until), f"The most allowed: until {when(format_instant(until))}")]
    choices += [(format_instant(now + delta), f"{label}: until {when(format_instant(now + delta))}") for delta, label in DURATIONS if now + delta < until]
    return choices


def filtered(tasks: Iterable[Mapping[str, Any]], now: datetime, *, template: str, risk: str, age_filter: str) -> list[Mapping[str, Any]]:
    kept = []
    newer, older = AGES[age_filter][1:] if age_filter in AGES else (None, None)
    for task in tasks:
        created = parse_instant(task["created_at"])
        if template and task["template"] != template or risk and task["risk"] != risk:
            continue
        if newer is not None and now - created > newer or older is not None and now - created <= older:
            continue
        kept.append(task)
    return kept


def counts(tasks: Iterable[Mapping[str, Any]], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(t[key]) for t in tasks).items()))
