"""Structural comparison of bound values (spec/arap.md §3, §4).

Every binding check (inline token claims, `binding_hash`, recorded evaluations) and every
approval-scope check reduces to one question: is the *bound document* built from the
submission (or current request) structurally equal (AR-21) to the one the PDP bound?
The bound document is `{"subject": S', "resource": R, "action": A, "context": C}` (single) or
`{"subject": S', "items": [{"resource", "action"}, …], "context": C}` (bulk), exactly the
object AR-25 hashes, so inline and hash modes cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from profiles.arap.model import JSONObject

# AR-17 and the §3 ambiguity note: machinery members and re-evaluation members never bind.
NEVER_BOUND = frozenset(
    {"access_request", "evaluation_id", "evaluated_at", "reason", "approval", "next_action", "retry_after"}
)


def json_equal(a: Any, b: Any) -> bool:
    """AR-21: same JSON type and equal value, on plain parsed JSON.

    A bool never equals a number (Python's `True == 1` is the §19 item 3 trap). Numbers compare
    as the IEEE doubles RFC 8785 serialises, so 1, 1.0 and 1e0 are equal; a number outside the
    double range has no canonical form and equals nothing (fail closed). Strings compare code
    point by code point; arrays in order; objects by member-name set; absent is not null.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is bool and type(b) is bool and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        left, right = _double(a), _double(b)
        return left is not None and right is not None and left == right
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    return False


def _double(number: float) -> float | None:
    try:
        value = float(number)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def strip_act(subject: Any) -> Any:
    """AR-22: drop `subject.properties.act`, applied to both sides of every comparison.

    An emptied `properties` is dropped too (§4 ambiguity note, D-ARAP-1), so a subject bound with
    only `act` matches the same subject submitted without `properties` (the actor moved to
    `client.actor`, AR-41). The input is not modified.
    """
    if not isinstance(subject, dict):
        return subject
    properties = subject.get("properties")
    if not isinstance(properties, dict) or "act" not in properties:
        return subject
    stripped = {key: value for key, value in subject.items() if key != "properties"}
    remaining = {key: value for key, value in properties.items() if key != "act"}
    if remaining:
        stripped["properties"] = remaining
    return stripped


def context_view(context: JSONObject | None, members: Iterable[str]) -> JSONObject:
    """AR-18/AR-22: only the bound member names; an absent member stays absent (not null)."""
    context = context or {}
    return {name: context[name] for name in members if name in context}


def relevant_members(names: Iterable[str]) -> list[str]:
    """AR-17/AR-19 for issuers: the member-name set as bound, sorted, machinery names removed.

    Sorting makes the set deterministic in tokens and records; the set semantics are unchanged.
    """
    return sorted(set(names) - NEVER_BOUND)


class Target(msgspec.Struct, frozen=True):
    """One requested Resource and Action, as plain parsed JSON."""

    resource: JSONObject
    action: JSONObject


class Covered(msgspec.Struct, frozen=True):
    """What one binding (or one approval) covers, as plain parsed JSON (AR-25, AR-32, AR-72).

    `bulk` selects the bundle form (all items, in submission order) over the single form
    (exactly one target): they are different documents even for a one-item bundle.
    """

    subject: JSONObject
    context: JSONObject | None
    targets: tuple[Target, ...]
    bulk: bool = False

    def __post_init__(self) -> None:
        if not self.targets or (not self.bulk and len(self.targets) != 1):
            raise ValueError("a single binding covers exactly one target, a bulk one at least one")


def bound_document(covered: Covered, members: Sequence[str] | None) -> JSONObject:
    """The document that binds (AR-22, AR-25): act-stripped Subject, the target(s), and the
    Context restricted to `members` (`{}` when no member set was bound, AR-18)."""
    document: JSONObject = {"subject": strip_act(covered.subject)}
    if covered.bulk:
        document["items"] = [{"resource": t.resource, "action": t.action} for t in covered.targets]
    else:
        document["resource"] = covered.targets[0].resource
        document["action"] = covered.targets[0].action
    document["context"] = context_view(covered.context, members or ())
    return document


def documents_match(bound: JSONObject, covered: Covered, members: Sequence[str] | None) -> bool:
    """AR-21/AR-22: does a bound document (token claims, record, approval) match `covered`?

    The bound subject is act-stripped again: stripping is applied to both sides, whoever built
    the bound document.
    """
    return json_equal({**bound, "subject": strip_act(bound.get("subject"))}, bound_document(covered, members))
