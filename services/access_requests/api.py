"""HTTP endpoints of the Access Request Service (spec/arap.md §8-§11) and the reviewer API.

PEP-facing (problem+json errors, AR-83):
    POST   /access/v1/requests                      submit (201 / 202 + Location)
    GET    /access/v1/requests/{task_id}            task status (Retry-After while pending)
    POST   /access/v1/requests/{task_id}/cancel     cancel (AR-60); DELETE on the handle too
    GET    /access/v1/request-schemas/{template}    a workflow's request schema (§7)
    GET    /tickets/{task_id}/{mac}                 `links.ticket`: progress for end users

Reviewer-facing (the JSON API the reviewer UI uses; reviewers authenticate as themselves):
    GET    /reviewer/v1/tasks                       what awaits my decision
    GET    /reviewer/v1/tasks/{task_id}             what I need to decide
    POST   /reviewer/v1/tasks/{task_id}/approve     {"approved_until"?, "comment"?}
    POST   /reviewer/v1/tasks/{task_id}/deny        {"reason", "comment"?}
    POST   /reviewer/v1/tasks/{task_id}/comments    {"comment"}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, Router, delete, get, post
from litestar.params import FromPath

from profiles.arap.errors import ARAPError, problem_body
from profiles.arap.model import TaskResponse
from profiles.arap.tasks import PENDING
from services.access_requests.service import AccessRequestService, Forbidden, ReviewRefused, json_object
from services.auth import Reviewer
from services.http import PROBLEM_JSON, Problem, authenticate, encode, json_response, require_json

AnyRequest = Request[Any, Any, Any]
SCHEMA_JSON = "application/schema+json"


def _service(request: AnyRequest) -> AccessRequestService:
    service: AccessRequestService = request.app.state.access_requests
    return service


def _now() -> datetime:
    """Whole seconds: every instant the service hands out then reads as a plain RFC 3339 time."""
    return datetime.now(UTC).replace(microsecond=0)


async def _json_object(request: AnyRequest, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body; an absent body is `{}` where the body is optional (cancel)."""
    body = await request.body()
    if not body and optional:
        return {}
    require_json(request)
    return json_object(body)


def _task_response(service: AccessRequestService, answer: TaskResponse, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    headers = dict(headers or {})
    if answer.task.status == PENDING:
        headers["Retry-After"] = str(service.config.access_requests.retry_after)  # AR-56
    headers["Cache-Control"] = "no-store"
    return json_response(answer, status, headers)


@post("/access/v1/requests", name="access-request-submit", status_code=202)
async def submit(request: AnyRequest) -> Response[bytes]:
    """§8: submit an access request. 201 when already terminal (auto-approval), else 202."""
    caller = authenticate(request, "request")
    require_json(request)
    service = _service(request)
    # The arrival time to the microsecond: freshness (AR-14) is judged on it, not on _now().
    submitted = await service.submit(caller, await request.body(), request.headers.get("idempotency-key"), datetime.now(UTC))
    return _task_response(service, submitted.response, submitted.status, {"Location": submitted.location})


@get("/access/v1/requests/{task_id:str}", name="access-request-status")
async def status(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    """§10: the task's current state; any caller authorized for its subject (AR-55)."""
    caller = authenticate(request, "request")
    service = _service(request)
    return _task_response(service, await service.status(caller, task_id, _now()))


async def _cancel(request: AnyRequest, task_id: str) -> Response[bytes]:
    caller = authenticate(request, "request")
    service = _service(request)
    body = await _json_object(request, optional=True)
    return _task_response(service, await service.cancel(caller, task_id, body, _now()))


@post("/access/v1/requests/{task_id:str}/cancel", name="access-request-cancel", status_code=200)
async def cancel_post(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    """§11: `links.cancel`."""
    return await _cancel(request, task_id)


@delete("/access/v1/requests/{task_id:str}", name="access-request-delete", status_code=200)
async def cancel_delete(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    """AR-60: DELETE on the handle cancels too."""
    return await _cancel(request, task_id)


@get("/access/v1/request-schemas/{template:str}", name="access-request-schema")
async def request_schema(request: AnyRequest, template: FromPath[str]) -> Response[bytes]:
    """AR-33: the JSON Schema a submission through `template` must satisfy."""
    authenticate(request, "request")
    schema = request.app.state.runtime.current().bundle.workflows.request_schemas.get(template)
    if schema is None:
        raise Problem(404, "Not Found", "no request schema for this template")
    return Response(encode(schema), media_type=SCHEMA_JSON, headers={"Cache-Control": "max-age=300"})


@get("/tickets/{task_id:str}/{mac:str}", name="access-request-ticket")
async def ticket(request: AnyRequest, task_id: FromPath[str], mac: FromPath[str]) -> Response[bytes]:
    """`links.ticket`: the requester's view, for end users (AR-99). The URL is the credential."""
    view = await _service(request).ticket(task_id, mac, _now())
    return json_response(view, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _reviewer(request: AnyRequest) -> Reviewer:
    reviewer: Reviewer = request.app.state.authenticator.reviewer(request.headers.get("authorization"))
    return reviewer


@get("/reviewer/v1/tasks", name="reviewer-inbox")
async def inbox(request: AnyRequest) -> Response[bytes]:
    reviewer = _reviewer(request)
    return json_response({"tasks": await _service(request).inbox(reviewer, _now())}, headers={"Cache-Control": "no-store"})


@get("/reviewer/v1/tasks/{task_id:str}", name="reviewer-task")
async def detail(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    reviewer = _reviewer(request)
    return json_response(await _service(request).detail(reviewer, task_id, _now()), headers={"Cache-Control": "no-store"})


@post("/reviewer/v1/tasks/{task_id:str}/approve", name="reviewer-approve", status_code=200)
async def approve(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    reviewer = _reviewer(request)
    return json_response(await _service(request).approve(reviewer, task_id, await _json_object(request, optional=True), _now()))


@post("/reviewer/v1/tasks/{task_id:str}/deny", name="reviewer-deny", status_code=200)
async def deny(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    reviewer = _reviewer(request)
    return json_response(await _service(request).deny(reviewer, task_id, await _json_object(request), _now()))


@post("/reviewer/v1/tasks/{task_id:str}/comments", name="reviewer-comment", status_code=200)
async def comment(request: AnyRequest, task_id: FromPath[str]) -> Response[bytes]:
    reviewer = _reviewer(request)
    return json_response(await _service(request).comment(reviewer, task_id, await _json_object(request), _now()))


def on_arap_error(_: AnyRequest, exc: ARAPError) -> Response[bytes]:
    """AR-83: problem+json with the ARAP type URN."""
    return Response(encode(problem_body(exc)), status_code=exc.status, media_type=PROBLEM_JSON)


def on_forbidden(_: AnyRequest, exc: Forbidden) -> Response[bytes]:
    return Problem(403, "Forbidden", str(exc)).response()


def on_review_refused(_: AnyRequest, exc: ReviewRefused) -> Response[bytes]:
    """Why a reviewer may not decide, as a typed problem the UI can explain (AR-96)."""
    return Problem(403, "Not eligible", exc.detail, f"urn:arop:reviewer:error:{exc.refusal}").response()


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    ARAPError: on_arap_error,
    Forbidden: on_forbidden,
    ReviewRefused: on_review_refused,
}

router = Router(
    "/",
    route_handlers=[submit, status, cancel_post, cancel_delete, request_schema, ticket, inbox, detail, approve, deny, comment],
)
