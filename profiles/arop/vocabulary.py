"""The OAuth → AuthZEN vocabulary (spec/arop.md §10, OP-40): how each `authorization_details`
type and each scope token becomes resource/action pairs, declared in the bundle's `oauth.toml`.

    identity_scopes = ["openid"]          # scopes the AS serves itself: not evaluated

    [authorization_details.file_access]
    resource_type = "File"                # default: the RAR type itself
    id = "locations"                      # resource id: each `locations` entry, or `identifier`
    properties = ["project"]              # extra members copied into resource.properties
    context = ["amount"]                  # extra members copied into the evaluation context
    default_action = "read"               # optional: the action when `actions` is absent

    [scopes."files:read"]
    resource = { type = "FileStore", id = "files" }
    action = "read"

One element yields one pair per action × location (§10 default vocabulary): resource
`{type, id, properties: {location, datatypes, privileges, <properties>}}`, action `{name}`.
Members named in `context` go into the evaluation context instead, shared by every pair of the
request (`request_context`): the request is one unit (OP-38), evaluated and approved in one
context, so two elements that disagree on such a member are refused.
Sidecar, PDP and RSs must agree on this mapping (OP-40); the PDP sees every member that is
granted, so a member the type does not declare is refused (D-AROP-7).
"""

from __future__ import annotations

import tomllib
from typing import Annotated, Any, Literal

import msgspec

from profiles.arap.compare import json_equal
from profiles.arap.model import JSONObject
from profiles.arop.errors import (
    INVALID_AUTHORIZATION_DETAILS,
    INVALID_SCOPE,
    OAuthFailure,
)
from profiles.arop.requested import Requested, is_scope_token
from profiles.authzen.model import Action, Resource

VOCABULARY_FILE = "oauth.toml"
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

# TX-63: the common RAR members the default rule maps itself; `location` is the property it adds.
_MAPPED_MEMBERS = frozenset({"type", "actions", "locations", "identifier", "datatypes", "privileges"})
_RESERVED_PROPERTIES = _MAPPED_MEMBERS | {"location"}
SIDECAR_CONTEXT = frozenset({"client_id", "dpop_jkt", "x5t_s256", "resource", "approval", "transaction_challenge"})
"""§10: the context members the sidecar itself sets; no element member may take their place."""


class DetailsType(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How one `authorization_details` type maps (§10)."""

    resource_type: NonEmpty | None = None
    id: Literal["identifier", "locations"] = "locations"
    properties: tuple[NonEmpty, ...] = ()
    context: tuple[NonEmpty, ...] = ()
    default_action: NonEmpty | None = None


class ScopeResource(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: NonEmpty
    id: NonEmpty


class ScopeMapping(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One scope token's resource and action (§10)."""

    resource: ScopeResource
    action: NonEmpty


class Vocabulary(msgspec.Struct, frozen=True):
    authorization_details: dict[str, DetailsType] = {}
    scopes: dict[str, ScopeMapping] = {}
    identity_scopes: frozenset[str] = frozenset({"openid"})


Origin = Literal["authorization_details", "scope"]


class Pair(msgspec.Struct, frozen=True):
    """One AuthZEN resource/action to evaluate, and where it came from (§5 step 1): the index
    of its `authorization_details` element or scope token."""

    resource: Resource
    action: Action
    origin: Origin
    index: int


# -- loading -------------------------------------------------------------------------------

_TOP_LEVEL = ("authorization_details", "scopes", "identity_scopes")


def parse_vocabulary(text: str) -> tuple[Vocabulary, list[str]]:
    """Parse and validate oauth.toml; return it with its problems, each naming its key.
    Problems keep the bundle from loading (like workflows.toml)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Vocabulary(), [f"{VOCABULARY_FILE}: {exc}"]
    problems = [f"{key}: unknown key (expected one of {', '.join(_TOP_LEVEL)})" for key in data if key not in _TOP_LEVEL]
    types = _entries(data, "authorization_details", DetailsType, problems)
    scopes = _entries(data, "scopes", ScopeMapping, problems)
    identity = _identity_scopes(data, problems)
    for name, kind in types.items():
        problems.extend(_type_problems(name, kind))
    for token in scopes:
        problems.extend(_scope_problems(token, identity))
    return Vocabulary(authorization_details=types, scopes=scopes, identity_scopes=identity), problems


def _entries(data: JSONObject, table: str, kind: type[Any], problems: list[str]) -> dict[str, Any]:
    declared = data.get(table, {})
    if not isinstance(declared, dict):
        problems.append(f"{table}: must be a table keyed by name")
        return {}
    entries = {}
    for name, value in declared.items():
        try:
            entries[name] = msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            problems.append(_describe(exc, f"{table}.{name}"))
    return entries


def _describe(exc: msgspec.ValidationError, root: str) -> str:
    message, _, where = str(exc).partition(" - at `$")
    return f"{root}{where.rstrip('`')}: {message}"


def _identity_scopes(data: JSONObject, problems: list[str]) -> frozenset[str]:
    declared = data.get("identity_scopes", ["openid"])
    if not isinstance(declared, list) or not all(isinstance(token, str) for token in declared):
        problems.append("identity_scopes: must be an array of scope tokens")
        return frozenset()
    problems.extend(f"identity_scopes: {token!r} is not an RFC 6749 scope token" for token in declared if not is_scope_token(token))
    return frozenset(declared)


def _type_problems(name: str, kind: DetailsType) -> list[str]:
    where = f"authorization_details.{name}.properties"
    problems = [f"{where}: {prop!r} is mapped by the default rule" for prop in kind.properties if prop in _RESERVED_PROPERTIES]
    if len(set(kind.properties)) != len(kind.properties):
        problems.append(f"{where}: names a member twice")
    where = f"authorization_details.{name}.context"
    problems += [f"{where}: {member!r} is mapped by the default rule" for member in kind.context if member in _RESERVED_PROPERTIES]
    problems += [f"{where}: {member!r} is set by the sidecar" for member in kind.context if member in SIDECAR_CONTEXT]
    problems += [f"{where}: {member!r} is also a property" for member in kind.context if member in kind.properties]
    if len(set(kind.context)) != len(kind.context):
        problems.append(f"{where}: names a member twice")
    return problems


def _scope_problems(token: str, identity: frozenset[str]) -> list[str]:
    problems = [] if is_scope_token(token) else [f"scopes.{token!r}: not an RFC 6749 scope token"]
    if token in identity:
        problems.append(f"scopes.{token!r}: also an identity scope; it is either evaluated or not")
    return problems


# -- expansion -----------------------------------------------------------------------------


def expand(requested: Requested, vocabulary: Vocabulary) -> list[Pair]:
    """OP-40, §5 step 1, §10: every resource/action pair the request asks for.

    An unknown or malformed element → invalid_authorization_details (TX-65); an unknown scope
    token → invalid_scope. A request that asks for nothing evaluable → invalid_scope (RFC 6749
    §3.3: without a usable scope the AS fails the request).
    """
    pairs: list[Pair] = []
    for index, element in enumerate(requested.authorization_details):
        pairs.extend(_element_pairs(element, index, vocabulary))
    for index, token in enumerate(requested.scope):
        if token in vocabulary.identity_scopes:
            continue
        mapping = vocabulary.scopes.get(token)
        if mapping is None:
            raise OAuthFailure(INVALID_SCOPE, "unknown scope")
        resource = Resource(type=mapping.resource.type, id=mapping.resource.id)
        pairs.append(Pair(resource, Action(name=mapping.action), "scope", index))
    if not pairs:
        raise OAuthFailure(INVALID_SCOPE, "nothing to authorize")
    return pairs


def request_context(requested: Requested, vocabulary: Vocabulary) -> JSONObject:
    """OP-38, §10: the members the elements' types copy into the evaluation context, merged
    into one context for the whole request. Call after `expand` (which validates each element).
    Two elements with different values for one member → invalid_authorization_details: one
    request is evaluated, approved and issued as one unit."""
    context: JSONObject = {}
    for element in requested.authorization_details:
        kind = vocabulary.authorization_details[element["type"]]
        for member in kind.context:
            if member not in element:
                continue
            if member in context and not json_equal(context[member], element[member]):
                raise _invalid("authorization_details disagree on a shared member")
            context[member] = element[member]
    return context


def _invalid(description: str) -> OAuthFailure:
    return OAuthFailure(INVALID_AUTHORIZATION_DETAILS, description)


def _element_pairs(element: Any, index: int, vocabulary: Vocabulary) -> list[Pair]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        raise _invalid("each authorization_details element is an object with a string type")
    kind = vocabulary.authorization_details.get(element["type"])
    if kind is None:
        raise _invalid("unknown authorization_details type")
    if set(element) - _MAPPED_MEMBERS - set(kind.properties) - set(kind.context):
        raise _invalid("authorization_details member not defined for its type")
    actions = _strings(element, "actions") or ([kind.default_action] if kind.default_action else None)
    if actions is None:
        raise _invalid("authorization_details needs actions")
    properties = {name: element[name] for name in kind.properties if name in element}
    for member in ("datatypes", "privileges"):
        if _strings(element, member) is not None:
            properties[member] = element[member]
    resource_type = kind.resource_type or element["type"]
    return [
        Pair(
            Resource(type=resource_type, id=resource_id, properties=_with_location(properties, location)),
            Action(name=action),
            "authorization_details",
            index,
        )
        for action in actions
        for resource_id, location in _targets(element, kind)
    ]


def _strings(element: JSONObject, member: str) -> list[str] | None:
    """TX-63: an optional member that, when present, is a non-empty array of non-empty strings
    (an empty one would silently expand to no pair at all)."""
    if member not in element:
        return None
    value = element[member]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise _invalid(f"{member} must be a non-empty array of strings")
    return value


def _targets(element: JSONObject, kind: DetailsType) -> list[tuple[str, str | None]]:
    """(resource id, location) per target: `identifier` with each location (or none), or each
    location as its own id."""
    locations = _strings(element, "locations")
    if kind.id == "locations":
        if locations is None:
            raise _invalid("authorization_details needs locations")
        return [(location, location) for location in locations]
    identifier = element.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        raise _invalid("authorization_details needs an identifier")
    located: list[str | None] = [*locations] if locations else [None]
    return [(identifier, location) for location in located]


def _with_location(properties: JSONObject, location: str | None) -> JSONObject | None:
    merged = {**properties, "location": location} if location is not None else properties
    return merged or None
