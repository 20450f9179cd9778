"""Search over the PDP's known entities (authzen-api.md §6), exact by construction: every
candidate is decided by the same engine call an evaluation would make (AZ-15), so a result is
listed iff its evaluation allows. Candidates are the entities of the requested type the PDP
knows (bundle and store, sorted by id for a stable order) and, for action search, the actions
of the schema. Group and role membership counts because policies see it (AZ-16)."""

from __future__ import annotations

from profiles.authzen.model import (
    Action,
    ActionResult,
    ActionSearchRequest,
    ActionSearchResponse,
    EntityResult,
    EntitySearchResponse,
    EvaluationRequest,
    Resource,
    ResourceSearchRequest,
    Subject,
    SubjectSearchRequest,
)
from profiles.authzen.search import SearchKind, SearchRequest, paginate, query_fingerprint
from services.pdp.engine import Engine


def candidates(engine: Engine, kind: SearchKind, request: SearchRequest) -> list[EvaluationRequest]:
    if isinstance(request, SubjectSearchRequest):
        wanted = request.subject
        return [
            EvaluationRequest(Subject(wanted.type, id_, wanted.properties), request.action, request.resource, request.context)
            for id_ in engine.index.ids_by_type.get(wanted.type, ())
        ]
    if isinstance(request, ResourceSearchRequest):
        wanted = request.resource
        return [
            EvaluationRequest(request.subject, request.action, Resource(wanted.type, id_, wanted.properties), request.context)
            for id_ in engine.index.ids_by_type.get(wanted.type, ())
        ]
    assert isinstance(request, ActionSearchRequest)
    return [EvaluationRequest(request.subject, Action(name), request.resource, request.context) for name in sorted(engine.bundle.actions)]


def search(
    engine: Engine, kind: SearchKind, request: SearchRequest, *, token_key: bytes, max_limit: int
) -> EntitySearchResponse | ActionSearchResponse:
    asked = candidates(engine, kind, request)
    allowed = [candidate for candidate, outcome in zip(asked, engine.evaluate(asked)) if outcome.allowed]
    fingerprint = query_fingerprint(kind, request)
    if kind == "action":
        actions, info = paginate([ActionResult(c.action.name) for c in allowed], request.page, key=token_key, fingerprint=fingerprint, max_limit=max_limit)
        return ActionSearchResponse(page=info, results=actions)
    found = [c.subject if kind == "subject" else c.resource for c in allowed]
    entities, info = paginate([EntityResult(e.type, e.id) for e in found], request.page, key=token_key, fingerprint=fingerprint, max_limit=max_limit)
    return EntitySearchResponse(page=info, results=entities)
