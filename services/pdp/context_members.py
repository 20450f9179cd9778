"""Which request context members are authorization-relevant (ARAP AR-17, AR-19, D-ARAP-9).

What binds in a requestable denial (the `binding_context_members` of a `binding_token`, the
member set of a recorded evaluation) and so in an approval's exact-match scope is the set of
context members a policy can read. A member no policy reads cannot change a decision, and
binding it would only make a later, equivalent request differ (a volatile `time` or request id,
AR-19). The set is read off the policies' syntax once per bundle version: every name a
condition uses as `context.<name>` or `context has <name>`. A condition that uses `context` any
other way (compares it whole, passes it on) may depend on every member, so the set is then
unknown and every member the request sends binds.

Reserved names never bind: the engine fills them itself (`action_properties`, verified
`client_evidence`) or the service verifies them (`approval`), whatever the PEP sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ACTION_PROPERTIES = "action_properties"
CLIENT_EVIDENCE = "client_evidence"
APPROVAL = "approval"
RESERVED_CONTEXT = frozenset({ACTION_PROPERTIES, CLIENT_EVIDENCE, APPROVAL})

_CONTEXT = {"Var": "context"}
_MEMBER_ACCESS = (".", "has")  # EST operators whose `left` is a record and `attr` a member name


def used_members(policy: dict[str, Any]) -> frozenset[str] | None:
    """The context member names one policy's conditions read (its JSON EST body, as
    `cedar.policy_to_json` gives it); None when a condition uses `context` as a whole value.
    `context has a.b` is `context has a && context.a has b` in the EST, so it names `a`."""
    names: set[str] = set()
    return frozenset(names) if _collect(policy.get("conditions", []), names) else None


def bundle_members(policies: Iterable[dict[str, Any]]) -> frozenset[str] | None:
    """The union over every policy (standing, tiered, auto-approval conditions), reserved names
    removed; None as soon as one policy reads the context whole."""
    names: set[str] = set()
    for policy in policies:
        used = used_members(policy)
        if used is None:
            return None
        names |= used
    return frozenset(names - RESERVED_CONTEXT)


def request_members(bound: frozenset[str] | None, context: dict[str, Any] | None) -> frozenset[str]:
    """The member set a requestable denial binds: the bundle's, or, when the bundle reads the
    context whole (`bound` None), every member the request sent except the reserved ones."""
    if bound is not None:
        return bound
    return frozenset(context or ()) - RESERVED_CONTEXT


def _collect(node: Any, names: set[str]) -> bool:
    """Add the member names `node` reads to `names`; False when it uses `context` whole."""
    if isinstance(node, list):
        return all(_collect(child, names) for child in node)
    if not isinstance(node, dict):
        return True
    if node == _CONTEXT:
        return False
    for operator in _MEMBER_ACCESS:
        access = node.get(operator)
        if isinstance(access, dict) and access.get("left") == _CONTEXT and isinstance(access.get("attr"), str):
            names.add(access["attr"])
            return True
    return all(_collect(child, names) for child in node.values())
