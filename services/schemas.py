"""`arop schemas export`: JSON Schema of every wire type and the OpenAPI document, generated
from the msgspec types themselves so that documentation and code cannot disagree. A test
regenerates them and fails when the committed files in schemas/ drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from profiles.arap import model as arap
from profiles.arap.discovery import ArapMetadata
from profiles.arop import model as arop
from profiles.arop.metadata import SidecarMetadata
from profiles.authzen import model as authzen
from services.admin import EntitiesBody, UidsBody

VERSION = "0.1.0"

# (file stem, type) for every message on the wire.
WIRE_TYPES: list[tuple[str, Any]] = [
    ("authzen/evaluation-request", authzen.EvaluationRequest),
    ("authzen/evaluations-request", authzen.EvaluationsRequest),
    ("authzen/decision", authzen.Decision),
    ("authzen/evaluations-response", authzen.EvaluationsResponse),
    ("authzen/subject-search-request", authzen.SubjectSearchRequest),
    ("authzen/resource-search-request", authzen.ResourceSearchRequest),
    ("authzen/action-search-request", authzen.ActionSearchRequest),
    ("authzen/entity-search-response", authzen.EntitySearchResponse),
    ("authzen/action-search-response", authzen.ActionSearchResponse),
    ("authzen/metadata", authzen.Metadata),
    ("authzen/error", authzen.ErrorBody),
    ("arap/metadata", ArapMetadata),
    ("arap/access-request-hint", arap.AccessRequestHint),
    ("arap/submission", arap.Submission),
    ("arap/task-response", arap.TaskResponse),
    ("arap/cancel-request", arap.CancelRequest),
    ("arap/callback-body", arap.CallbackBody),
    ("arap/problem", arap.Problem),
    ("oauth/decide-request", arop.DecideRequest),
    ("oauth/decide-response", arop.DecideResponse),
    ("oauth/redeem-request", arop.RedeemRequest),
    ("oauth/redeem-response", arop.RedeemResponse),
    ("oauth/cancel-request", arop.CancelRequest),
    ("oauth/cancel-response", arop.Relay),
    ("oauth/refresh-check-request", arop.RefreshCheckRequest),
    ("oauth/exchange-check-request", arop.ExchangeCheckRequest),
    ("oauth/grant-check-response", arop.GrantCheckResponse),
    ("oauth/metadata", SidecarMetadata),
    ("admin/entities", EntitiesBody),
    ("admin/entity-uids", UidsBody),
]

ReviewerObject = dict[str, Any]  # reviewer API and ticket answers: see docs/access-requests.md

# (method, path, operation id, summary, request type, response type(s), security);
# a tuple of response types is a oneOf (the batch endpoint answers a single Decision when
# `evaluations` is absent or empty, AZ-8). Paths under /access/v1/requests, /oauth/, /reviewer/
# and /admin/ answer errors as RFC 9457 problems, the AuthZEN endpoints as AuthZEN error bodies.
OPERATIONS: list[tuple[str, str, str, str, Any, Any, bool]] = [
    ("post", "/access/v1/evaluation", "evaluation", "Access Evaluation (AuthZEN §4)", authzen.EvaluationRequest, authzen.Decision, True),
    ("post", "/access/v1/evaluations", "evaluations", "Access Evaluations, batch (AuthZEN §5)", authzen.EvaluationsRequest, (authzen.EvaluationsResponse, authzen.Decision), True),
    ("post", "/access/v1/search/subject", "searchSubject", "Subject Search (AuthZEN §6.3)", authzen.SubjectSearchRequest, authzen.EntitySearchResponse, True),
    ("post", "/access/v1/search/resource", "searchResource", "Resource Search (AuthZEN §6.4)", authzen.ResourceSearchRequest, authzen.EntitySearchResponse, True),
    ("post", "/access/v1/search/action", "searchAction", "Action Search (AuthZEN §6.5)", authzen.ActionSearchRequest, authzen.ActionSearchResponse, True),
    ("get", "/.well-known/authzen-configuration", "metadata", "PDP metadata (AuthZEN §7, ARAP §1)", None, ArapMetadata, False),
    ("post", "/access/v1/requests", "submitAccessRequest", "Access Request submission (ARAP §8); 201 when approved at once, else 202", arap.Submission, arap.TaskResponse, True),
    ("get", "/access/v1/requests/{task_id}", "accessRequestStatus", "Task status (ARAP §10)", None, arap.TaskResponse, True),
    ("post", "/access/v1/requests/{task_id}/cancel", "cancelAccessRequest", "Cancel a task (ARAP §11)", arap.CancelRequest, arap.TaskResponse, True),
    ("delete", "/access/v1/requests/{task_id}", "deleteAccessRequest", "Cancel a task (ARAP §11, DELETE form)", None, arap.TaskResponse, True),
    ("get", "/tickets/{task_id}/{mac}", "accessRequestTicket", "The requester's view (links.ticket); the URL is the credential", None, ReviewerObject, False),
    ("get", "/reviewer/v1/tasks", "reviewerInbox", "Pending tasks the reviewer may decide", None, ReviewerObject, True),
    ("get", "/reviewer/v1/tasks/{task_id}", "reviewerTask", "What a reviewer needs to decide", None, ReviewerObject, True),
    ("post", "/reviewer/v1/tasks/{task_id}/approve", "reviewerApprove", "Approve the current step", ReviewerObject, ReviewerObject, True),
    ("post", "/reviewer/v1/tasks/{task_id}/deny", "reviewerDeny", "Deny the request", ReviewerObject, ReviewerObject, True),
    ("post", "/reviewer/v1/tasks/{task_id}/comments", "reviewerComment", "Comment on the request", ReviewerObject, ReviewerObject, True),
    ("post", "/oauth/v1/decide", "oauthDecide", "AROP sidecar: a token request as the AS saw it (allow, error, remediation, pending or a client challenge)", arop.DecideRequest, arop.DecideResponse, True),
    ("post", "/oauth/v1/redeem", "oauthRedeem", "AROP sidecar: a poll or redemption of a continuation handle", arop.RedeemRequest, arop.RedeemResponse, True),
    ("post", "/oauth/v1/cancel", "oauthCancel", "AROP sidecar: a deferral-code revocation (RFC 7009: always 200)", arop.CancelRequest, arop.Relay, True),
    ("post", "/oauth/v1/refresh-check", "oauthRefreshCheck", "AROP sidecar: may a token from an approval be refreshed", arop.RefreshCheckRequest, arop.GrantCheckResponse, True),
    ("post", "/oauth/v1/exchange-check", "oauthExchangeCheck", "AROP sidecar: may a token from an approval be exchanged", arop.ExchangeCheckRequest, arop.GrantCheckResponse, True),
    ("get", "/oauth/v1/metadata", "oauthMetadata", "AROP sidecar: the transports served and the RFC 8414 members the AS advertises for them (OP-12)", None, SidecarMetadata, True),
    ("post", "/admin/v1/approvals/{approval_id}/revoke", "revokeApproval", "Withdraw an approval (ARAP AR-71)", None, ReviewerObject, True),
    ("post", "/admin/v1/entities", "upsertEntities", "Insert or replace entities", EntitiesBody, None, True),
    ("post", "/admin/v1/entities/delete", "deleteEntities", "Delete entities", UidsBody, None, True),
]


def json_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for stem, type_ in WIRE_TYPES:
        out[f"{stem}.json"] = msgspec.json.schema(type_)
    return out


def openapi() -> dict[str, Any]:
    types = [t for op in OPERATIONS for t in (op[4], *(op[5] if isinstance(op[5], tuple) else (op[5],))) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas))

    def schema_of(type_: Any) -> dict[str, Any]:
        return {"oneOf": [by_type[t] for t in type_]} if isinstance(type_, tuple) else by_type[type_]

    error = {"description": "Invalid request, unauthenticated or not allowed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    problem = {"description": "An RFC 9457 problem (ARAP §14 types)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    components.update(msgspec.json.schema_components([authzen.ErrorBody, arap.Problem], ref_template="#/components/schemas/{name}")[1])
    paths: dict[str, Any] = {}
    for method, path, op_id, summary, request, response, secured in OPERATIONS:
        operation: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": {}}
        if request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema_of(request)}}}
        ok: dict[str, Any] = {"description": "OK"}
        if response is not None:
            ok["content"] = {"application/json": {"schema": schema_of(response)}}
        operation["responses"]["200"] = ok
        if secured:
            operation["security"] = [{"apiKey": []}]
            failure = error if path.startswith("/access/v1/") and not path.startswith("/access/v1/requests") else problem
            operation["responses"].update({"400": failure, "401": failure, "403": failure})
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "AROP", "version": VERSION, "description": "AuthZEN Authorization API 1.0 PDP, ARAP Access Request Service, AROP AS-facing sidecar, reviewer and admin APIs"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "A caller credential configured in [[callers]]: an API key, or a JWT from the caller's configured issuer. Callers configured with `mtls` present a TLS client certificate to a trusted proxy instead (RFC 9440 Client-Cert)"}}},
    }


def rendered() -> dict[str, bytes]:
    """Every file of schemas/, by relative path, exactly as `export` writes it."""
    files = {**json_schemas(), "openapi.json": openapi()}
    return {name: msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n" for name, doc in files.items()}


def export(directory: Path) -> list[Path]:
    written = []
    for name, content in rendered().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
