"""The AuthZEN Authorization API 1.0 endpoints (authzen-api.md §4-§8)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, get

from profiles.authzen.evaluation import BatchPlan, execute_batch, plan_evaluations
from profiles.authzen.metadata import build_metadata, metadata_path, sign_metadata
from profiles.authzen.model import (
    ActionSearchRequest,
    Decision,
    EvaluationRequest,
    EvaluationsRequest,
    EvaluationsResponse,
    ResourceSearchRequest,
    SubjectSearchRequest,
)
from profiles.authzen.search import SearchKind
from profiles.authzen.transport import check_media_type, decode_body
from services.config import Config
from services.http import JsonPost, encode, json_post, json_response
from services.observability import decision_counter
from services.pdp.decisions import DecisionRun, carries_approval, issues_access_requests, with_arap_metadata
from services.pdp.runtime import PolicyRuntime
from services.pdp.search import search

AnyRequest = Request[Any, Any, Any]
log = logging.getLogger("arop.pdp")


def _body(post: JsonPost) -> tuple[bytes, bool]:
    """AZ-41 media type (the caller is already authenticated, AZ-54, so an unauthenticated
    client learns nothing about the API). Returns the body and whether this caller may see
    policy ids."""
    check_media_type(post.content_type)
    config: Config = post.app.state.config
    return post.body, config.pdp.expose_policy_ids or "explain" in post.caller.scopes


def _decide(run: DecisionRun, evaluations: Sequence[EvaluationRequest], api: str) -> list[Decision]:
    decisions = run.decide(evaluations)
    permits = sum(d.decision for d in decisions)
    if permits:
        decision_counter(api, True).inc(permits)
    if permits < len(decisions):
        decision_counter(api, False).inc(len(decisions) - permits)
    return decisions


@json_post("/access/v1/evaluation", name="evaluation", requires="evaluate")
async def evaluation(post: JsonPost) -> bytes:
    """§4: one decision; a deny is a 200 (AZ-7). ARAP: a requestable denial carries its
    `access_request`, a re-evaluation's `context.approval` is verified (services.pdp.decisions)."""
    body, explain = _body(post)
    request = decode_body(body, EvaluationRequest)
    run = DecisionRun(post.app, post.caller, explain)
    if carries_approval(request):
        await run.prefetch((request,))
    decision = _decide(run, (request,), "evaluation")[0]
    if run.unfinished:
        await run.finish()
    return encode(decision)


@json_post("/access/v1/evaluations", name="evaluations", requires="evaluate")
async def evaluations(post: JsonPost) -> bytes:
    """§5: a single Decision when `evaluations` is absent or empty (AZ-8), else the array.
    Each item is requestable, or a re-evaluation, on its own (spec/arap.md §6 ambiguity note)."""
    config: Config = post.app.state.config
    body, explain = _body(post)
    plan = plan_evaluations(decode_body(body, EvaluationsRequest), config.pdp.max_batch_items)
    run = DecisionRun(post.app, post.caller, explain)
    items = [plan] if isinstance(plan, EvaluationRequest) else plan.items
    if any(isinstance(item, EvaluationRequest) and carries_approval(item) for item in items):
        await run.prefetch(items)
    if isinstance(plan, BatchPlan):
        answer: Any = EvaluationsResponse(execute_batch(plan, lambda batch: _decide(run, batch, "evaluations")))
    else:
        answer = _decide(run, (plan,), "evaluations")[0]
    if run.unfinished:
        await run.finish()
    return encode(answer)


def _search(post: JsonPost, kind: SearchKind, type_: type) -> bytes:
    search_request = decode_body(_body(post)[0], type_)
    runtime: PolicyRuntime = post.app.state.runtime
    config: Config = post.app.state.config
    return encode(search(runtime.current(), kind, search_request, token_key=post.app.state.page_token_key, max_limit=config.pdp.max_search_limit))


@json_post("/access/v1/search/subject", name="search-subject", requires="evaluate")
async def search_subject(post: JsonPost) -> bytes:
    return _search(post, "subject", SubjectSearchRequest)


@json_post("/access/v1/search/resource", name="search-resource", requires="evaluate")
async def search_resource(post: JsonPost) -> bytes:
    return _search(post, "resource", ResourceSearchRequest)


@json_post("/access/v1/search/action", name="search-action", requires="evaluate")
async def search_action(post: JsonPost) -> bytes:
    return _search(post, "action", ActionSearchRequest)


async def metadata(request: AnyRequest) -> Response[bytes]:
    """§7: built from the configured identifier, never from the Host header (AZ-34), with the
    ARAP discovery members (spec/arap.md §1) when access requests are issued."""
    config: Config = request.app.state.config
    base = config.server.base_url()
    document = build_metadata(base, jwks_uri=f"{base}/.well-known/jwks.json" if config.pdp.signed_metadata else None)
    document = with_arap_metadata(config, document)
    if config.pdp.signed_metadata:  # over the final document (D-ARAP-13)
        document = sign_metadata(document, await request.app.state.key_ring.current(), ttl_seconds=config.pdp.metadata_max_age)
    return json_response(document, headers={"Cache-Control": f"max-age={config.pdp.metadata_max_age}"})


def router(config: Config) -> Router:
    """The AuthZEN routes. The metadata is served only where a PEP holding the configured PDP
    identifier looks for it (AZ-31): answering at the bare well-known path for a tenant
    identifier would hand out a `policy_decision_point` the PEP did not derive (AZ-34)."""
    metadata_paths = [metadata_path(config.server.base_url())]
    if not issues_access_requests(config):
        log.warning(
            "denials are never requestable: the Access Request Endpoint %s is not https (AR-6); set server.public_url",
            config.access_request_endpoint(),
        )
    return Router(
        "/",
        route_handlers=[
            evaluation,
            evaluations,
            search_subject,
            search_resource,
            search_action,
            get(metadata_paths, name="authzen-metadata")(metadata),
        ],
    )
