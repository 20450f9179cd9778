"""The Cedar decision engine: AuthZEN requests in, outcomes out (DESIGN.md §3).

Mapping: subject `{type,id,properties}` → principal `type::"id"` with the properties over its
stored attributes; `action.name` → `Action::"name"`; resource like subject; `context` → the
Cedar context. Cedar actions carry no request attributes, so `action.properties` is exposed to
policies as `context.action_properties` (a reserved name: a PEP cannot set it directly, nor
`context.client_evidence`, which only verified client evidence may fill; policy tests give it with the case member `client_evidence`).
`context.approval` (ARAP §12) is reserved too: the service verifies it, and a policy must never
be fooled by a forged one, so Cedar never sees it.

Standing access decides. Only a denial that no `forbid` caused consults the tier permits
(`@requestable`, `@challenge`), to say which of them would have matched.
A `forbid` whose condition raised an error denies: Cedar skips an erroring policy, which for a
`forbid` would turn an error into an allow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from profiles.authzen.model import Action, EvaluationRequest, Resource, Subject
from services.pdp import cedar
from services.pdp.bundle import Bundle, PolicyInfo, is_cedar_type
# The reserved context names live with the analysis of which members bind; importable from here.
from services.pdp.context_members import ACTION_PROPERTIES, APPROVAL, CLIENT_EVIDENCE, RESERVED_CONTEXT  # noqa: F401
from services.pdp.entities import EntityIndex, Part, entity_refs
from services.pdp.values import UnsupportedValue, to_cedar_record
from services.store.records import EntityUid

_encode = msgspec.json.Encoder().encode
ENTITY_CACHE_BYTES = 16 * 1024 * 1024  # per engine (one per bundle version and worker)
ENTITY_CACHE_MAX_DOCUMENT = 64 * 1024
INVALID_DATA = "InvalidEntityData"  # our marker: the request's entity data was refused by Cedar
_BAD_REQUEST_ERROR = "failed to build request"  # Cedar's prefix when the context is refused
log = logging.getLogger("arop.pdp")

Reason = Literal[
    "permitted",
    "no_matching_permit",
    "forbidden",
    "forbid_policy_error",
    "unsupported_value",
    "unknown_entity_type",
    "evaluation_error",
]


class Outcome(msgspec.Struct, omit_defaults=True):
    """What the engine concluded, richer than the wire Decision the endpoints derive from it."""

    allowed: bool
    reason: Reason
    policies: list[str] = []  # the determining policies
    requestable: list[PolicyInfo] = []  # tier permits with @requestable that would match
    challenges: list[PolicyInfo] = []  # tier permits with @challenge that would match
    error: str | None = None


class _Prepared(msgspec.Struct):
    index: int
    cedar_request: dict[str, Any]
    entities: dict[EntityUid, bytes]
    shareable: bool

    def document(self) -> bytes:
        return b"[" + b",".join(self.entities.values()) + b"]"


class Engine:
    """One bundle version with one entity index. Immutable; replaced whole on reload."""

    def __init__(self, bundle: Bundle, index: EntityIndex, *, max_depth: int = 32) -> None:
        self.bundle = bundle
        self.index = index
        self.max_depth = max_depth
        self._entity_cache: dict[bytes, cedar.Entities] = {}
        self._entity_cache_bytes = 0
        self._literals = index.reachable(bundle.literal_uids)

    def evaluate(self, requests: Sequence[EvaluationRequest], extra_context: Sequence[dict[str, Any] | None] | None = None) -> list[Outcome]:
        """Decide every request. `extra_context` (per request) carries members the service has
        verified itself, such as client evidence; they are added after reserved names are
        stripped from the PEP's context."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        parts: dict[int, Any] = {}
        for i, request in enumerate(requests):
            try:
                prepared.append(self._prepare(i, request, extra_context[i] if extra_context else None, parts))
            except UnsupportedValue as exc:
                outcomes[i] = Outcome(False, "unsupported_value", error=str(exc))
            except _UnknownType as exc:
                outcomes[i] = Outcome(False, "unknown_entity_type", error=str(exc))
        standing = self._run(self.bundle.standing, prepared)
        probe: list[_Prepared] = []
        for item, response in zip(prepared, standing):
            outcome = self._standing_outcome(response)
            outcomes[item.index] = outcome
            if outcome.reason == "no_matching_permit" and self.bundle.tiered is not None:
                probe.append(item)
        if probe:
            for item, response in zip(probe, self._run(self.bundle.tiered, probe)):
                matched = [self.bundle.policies[pid] for pid in response.diagnostics.reason]
                outcome = outcomes[item.index]
                assert outcome is not None
                outcome.requestable = [p for p in matched if p.requestable is not None]
                outcome.challenges = [p for p in matched if p.challenge is not None]
        return outcomes  # type: ignore[return-value]

    def auto_approved(self, template: str, request: EvaluationRequest) -> bool:
        """Does the `auto_approve` condition of workflow `template` hold for `request`? Evaluated
        like a policy, on the same entity slice and context as a decision. No condition, a
        request Cedar cannot take, an error or anything but Allow is False: fail closed."""
        policies = self.bundle.auto_approve.get(template)
        if policies is None:
            return False
        try:
            prepared = self._prepare(0, request, None, {})
        except (UnsupportedValue, _UnknownType):
            return False
        (response,) = self._run(policies, [prepared])
        return response.decision == "Allow" and not response.diagnostics.errors

    def _prepare(self, i: int, request: EvaluationRequest, extra: dict[str, Any] | None, parts: dict[int, Any]) -> _Prepared:
        subject, action, resource = request.subject, request.action, request.resource
        for what, kind in (("subject", subject.type), ("resource", resource.type)):
            if not is_cedar_type(kind):
                raise _UnknownType(f"{what}.type {kind!r} is not a type this PDP knows")
        context: dict[str, Any] = {}
        if request.context:
            given = request.context
            if not RESERVED_CONTEXT.isdisjoint(given):  # stripped before conversion: never read, never refused
                given = {name: value for name, value in given.items() if name not in RESERVED_CONTEXT}
            context = to_cedar_record(given, "context", self.max_depth)
        if action.properties:
            context[ACTION_PROPERTIES] = to_cedar_record(action.properties, "action.properties", self.max_depth)
        if extra:
            context.update(to_cedar_record(extra, "context", self.max_depth))
        principal = EntityUid(subject.type, subject.id)
        target = EntityUid(resource.type, resource.id)
        if principal == target:  # a user acting on itself: the properties of both apply
            merged = {**(subject.properties or {}), **(resource.properties or {})} or None
            resource_part = subject_part = self._part(Subject(subject.type, subject.id, merged), principal, "subject", parts)
        else:
            resource_part = self._part(resource, target, "resource", parts)
            subject_part = self._part(subject, principal, "subject", parts)
        action_part = self._part(action, EntityUid("Action", action.name), "action", parts)
        # Entities the context refers to (and their closure) are readable by policies too.
        context_part = self.index.reachable(entity_refs(context)) if b'"__entity"' in (encoded := _encode(context)) else _NOTHING
        entities = {
            **self._literals.fragments,
            **context_part.fragments,
            **action_part.fragments,
            **resource_part.fragments,
            **subject_part.fragments,
        }
        # Each request entity as the request describes it wins over stored copies reached
        # through references from elsewhere.
        entities[target] = resource_part.fragments[target]
        entities[principal] = subject_part.fragments[principal]
        # Sharing one answer between resources that differ only by id (see _run) is sound only
        # when nothing else in the request leads to this resource's uid.
        shareable = target not in subject_part.reached and target not in action_part.reached and target not in context_part.reached and target not in self._literals.reached
        cedar_request = {
            "principal": {"type": principal.type, "id": principal.id},
            "action": {"type": "Action", "id": action.name},
            "resource": {"type": target.type, "id": target.id},
            "context": encoded.decode() if context else "{}",
        }
        return _Prepared(i, cedar_request, entities, shareable)

    def _part(self, entity: Subject | Resource | Action, uid: EntityUid, role: str, parts: dict[int, Any]) -> Part:
        """The index part of one request entity, computed once per evaluate() call: batch items
        merged from the same top-level default share the very same object. Action properties
        are context, not entity attributes."""
        memo = parts.get(id(entity))
        if memo is not None and memo[0] is entity:
            return memo[1]  # type: ignore[no-any-return]
        properties = None
        if entity.properties and role != "action":
            properties = to_cedar_record(entity.properties, f"{role}.properties", self.max_depth)
        part = self.index.part(uid, properties)
        parts[id(entity)] = (entity, part)
        return part

    def _run(self, policies: cedar.PolicySet, prepared: list[_Prepared]) -> list[cedar.CedarResponse]:
        """Evaluate each distinct question once. When no policy can tell resources apart except
        by type, attributes and parents (Bundle.resource_identity_free), two requests that differ
        only in the resource's id get the same answer from Cedar, so a batch about a list of
        similar resources costs one evaluation per kind of resource, not per resource."""
        if not self.bundle.resource_identity_free or len(prepared) < 2:
            return self._run_all(policies, prepared)
        slots: dict[tuple[Any, ...], int] = {}
        distinct: list[_Prepared] = []
        positions = []
        for item in prepared:
            key = _question(item) if item.shareable else (item.index,)
            position = slots.setdefault(key, len(distinct))
            if position == len(distinct):
                distinct.append(item)
            positions.append(position)
        if len(distinct) == len(prepared):
            return self._run_all(policies, prepared)
        answers = self._run_all(policies, distinct)
        return [answers[position] for position in positions]

    def _run_all(self, policies: cedar.PolicySet, prepared: list[_Prepared]) -> list[cedar.CedarResponse]:
        """Evaluate in as few Cedar calls as possible without ever letting one request see
        another's entities: requests share a call only when their entity documents are
        byte-identical (a union of slices could hand one item what another item sent)."""
        groups: dict[bytes, list[int]] = {}
        for position, item in enumerate(prepared):
            groups.setdefault(item.document(), []).append(position)
        responses: list[cedar.CedarResponse | None] = [None] * len(prepared)
        for document, positions in groups.items():
            answers = self._call(policies, [prepared[p] for p in positions], document)
            for position, answer in zip(positions, answers):
                responses[position] = answer
        return responses  # type: ignore[return-value]

    def _call(self, policies: cedar.PolicySet, group: list[_Prepared], document: bytes) -> list[cedar.CedarResponse]:
        try:
            entities = self._entities(document)
        except ValueError:
            # A property value with a malformed Cedar escape (`__entity`, `__extn`).
            return [cedar.CedarResponse(INVALID_DATA, cedar.CedarDiagnostics()) for _ in group]
        return cedar.is_authorized_batch([item.cedar_request for item in group], policies, entities)

    def _entities(self, document: bytes) -> cedar.Entities:
        """A parsed entities handle per distinct document, cached: handing cedarpy a parsed
        handle is several times cheaper than a JSON string, and most requests repeat a slice.
        The cache is bounded in bytes and skips large documents, so callers cannot grow it."""
        handle = self._entity_cache.get(document)
        if handle is None:
            handle = cedar.Entities.from_json_str(document.decode(), None)
            if len(document) <= ENTITY_CACHE_MAX_DOCUMENT:
                while self._entity_cache and self._entity_cache_bytes + len(document) > ENTITY_CACHE_BYTES:
                    evicted = next(iter(self._entity_cache))
                    self._entity_cache_bytes -= len(evicted)
                    del self._entity_cache[evicted]
                self._entity_cache[document] = handle
                self._entity_cache_bytes += len(document)
        return handle

    def _standing_outcome(self, response: cedar.CedarResponse) -> Outcome:
        policies = self.bundle.policies
        errored_forbids = []
        if response.diagnostics.errors:
            errored_forbids = [pid for pid in cedar.errored_policies(response.diagnostics) if pid in policies and policies[pid].effect == "forbid"]
        if errored_forbids:
            return Outcome(False, "forbid_policy_error", errored_forbids, error="a forbid policy could not be evaluated")
        determining = response.diagnostics.reason
        if response.decision == "Allow":
            return Outcome(True, "permitted", determining)
        if response.decision == INVALID_DATA or any(e.startswith(_BAD_REQUEST_ERROR) for e in response.diagnostics.errors):
            return Outcome(False, "unsupported_value", error="a property or context value is not valid Cedar data (check __entity/__extn escapes)")
        if response.decision != "Deny":
            log.error("Cedar could not decide", extra={"errors": response.diagnostics.errors[:5]})
            return Outcome(False, "evaluation_error", error="no decision")
        if determining:
            return Outcome(False, "forbidden", determining)
        return Outcome(False, "no_matching_permit")


class _UnknownType(ValueError):
    pass


_NOTHING = Part({}, frozenset())


def _question(item: _Prepared) -> tuple[Any, ...]:
    """Everything Cedar sees of a request except the resource's id: principal, action, context,
    the resource's type, attributes and parents, and every other entity of the slice."""
    request = item.cedar_request
    resource = request["resource"]
    target = EntityUid(resource["type"], resource["id"])
    own = item.entities[target]
    # The fragment is {"uid":…,"attrs":…,"parents":…}; a JSON-encoded id cannot contain an
    # unescaped `"attrs":`, so the first one starts what follows the uid.
    others = tuple((uid, fragment) for uid, fragment in item.entities.items() if uid != target)
    return (request["principal"]["type"], request["principal"]["id"], request["action"]["id"], request["context"], target.type, own[own.index(b'"attrs":') :], others)
