"""The one module that calls cedarpy's private `_internal` extension (the fastest call path).

cedarpy is pinned to an exact version in pyproject.toml because `_internal` is not its public
API. Everything else in AROP goes through the names defined here.
"""

from __future__ import annotations

import re
from typing import Any

import cedarpy
import msgspec
from cedarpy import _internal

PolicySet = _internal.PolicySet
Schema = _internal.Schema
Entities = _internal.Entities


class CedarResponse(msgspec.Struct):
    decision: str  # "Allow" | "Deny" | "NoDecision"
    diagnostics: "CedarDiagnostics"


class CedarDiagnostics(msgspec.Struct):
    reason: list[str] = []
    errors: list[str] = []


_response_decoder = msgspec.json.Decoder(CedarResponse)
_ERRORED_POLICY = re.compile(r"^error while evaluating policy `([^`]+)`")


def is_authorized_batch(requests: list[dict[str, Any]], policies: PolicySet, entities: Entities) -> list[CedarResponse]:
    """Evaluate Cedar requests (`principal`/`action`/`resource` as {type,id} dicts, `context`
    as a JSON string) against one policy set and one parsed entities handle."""
    return [_response_decoder.decode(raw) for raw in _internal.is_authorized_batch(requests, policies, entities, None, False)]


def errored_policies(diagnostics: CedarDiagnostics) -> list[str]:
    """Ids of the policies whose evaluation raised an error (Cedar skips those policies)."""
    return [m.group(1) for m in map(_ERRORED_POLICY.match, diagnostics.errors) if m]


def policy_to_json(text: str) -> dict[str, Any]:
    """Parse Cedar policy text into its JSON (EST) form; ValueError on a syntax error."""
    return msgspec.json.decode(cedarpy.policies_to_json_str(text))


def policy_set_from_json(static_policies: dict[str, Any]) -> PolicySet:
    """Build a policy set whose policy ids are the keys of `static_policies`."""
    document = {"staticPolicies": static_policies, "templates": {}, "templateLinks": []}
    return PolicySet.from_json_str(msgspec.json.encode(document).decode())


def validate_policy(text: str, schema: Schema) -> list[str]:
    """Schema validation errors of one policy (empty when it type-checks)."""
    result = msgspec.json.decode(_internal.validate_policies(text, schema))
    return [error["error"] for error in result.get("errors", [])]


def schema_from_text(text: str, *, json_format: bool) -> Schema:
    return Schema.from_json_str(text) if json_format else Schema.from_str(text)


def policy_tree(text: str) -> Any:
    """The typed syntax tree (cedarpy.pst) of Cedar policy text, for static analysis."""
    return cedarpy.policies_to_pst(text)
