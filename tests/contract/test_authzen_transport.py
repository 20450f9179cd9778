"""The HTTPS/JSON binding over real HTTP (authzen-api.md §3, §8, §9): media types, body shape,
validation, unknown members, I-JSON, request ids and self-protection limits."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.contract.conftest import MAX_BATCH_ITEMS, MAX_BODY_BYTES
from tests.contract.helpers import (
    EVALUATION,
    EVALUATIONS,
    MORTY,
    MORTYS_TODO,
    RICK,
    RICKS_TODO,
    SEARCH_ACTION,
    SEARCH_RESOURCE,
    SEARCH_SUBJECT,
    TODOS,
    VALID_BODIES,
    WELL_KNOWN,
    assert_authzen_error,
    decide,
    media_type,
    post_raw,
    request,
)
from tests.server import RunningServer

EVALUATION_BODY = request(MORTY, "can_update_todo", MORTYS_TODO)

# What each of VALID_BODIES answers.
EXPECTED: dict[str, Any] = {
    EVALUATION: {"decision": True},
    EVALUATIONS: {"evaluations": [{"decision": True}, {"decision": False, "context": {"reason": "no_matching_permit"}}]},
    SEARCH_SUBJECT: {
        "page": {"next_token": "", "count": 4, "total": 4},
        "results": [
            {"type": "user", "id": RICK},
            {"type": "user", "id": MORTY},
            {"type": "user", "id": "morty@the-citadel.com"},
            {"type": "user", "id": "rick@the-citadel.com"},
        ],
    },
    SEARCH_RESOURCE: {"page": {"next_token": "", "count": 1, "total": 1}, "results": [{"type": "todo", "id": MORTYS_TODO}]},
    SEARCH_ACTION: {
        "page": {"next_token": "", "count": 4, "total": 4},
        "results": [{"name": "can_create_todo"}, {"name": "can_delete_todo"}, {"name": "can_read_todos"}, {"name": "can_update_todo"}],
    },
}
ENDPOINTS = list(VALID_BODIES)


def body_of(path: str) -> bytes:
    return json.dumps(VALID_BODIES[path]).encode()


# -- AZ-39..AZ-41: the binding and its media type ------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_41_success_is_200_application_json_object(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=VALID_BODIES[path])
    assert response.status_code == 200, response.text
    assert media_type(response) == "application/json"
    assert response.json() == EXPECTED[path]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_41_json_with_parameters_is_accepted(client: httpx.Client, path: str, content_type: str) -> None:
    response = post_raw(client, path, body_of(path), content_type)
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED[path]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data; boundary=x", None])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_41_other_or_missing_content_type_is_400(client: httpx.Client, path: str, content_type: str | None) -> None:
    error = assert_authzen_error(post_raw(client, path, body_of(path), content_type), 400)
    assert error["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_40_api_calls_are_post_only(client: httpx.Client, path: str, method: str) -> None:
    response = client.request(method, path)
    assert_authzen_error(response, 405)
    assert response.headers["allow"] == "POST"


# -- AZ-42: the top level is an object ------------------------------------------------------


@pytest.mark.parametrize("content", [b"[]", b'[{"subject":{}}]', b'"text"', b"42", b"null", b"true"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_42_non_object_body_is_400(client: httpx.Client, path: str, content: bytes) -> None:
    assert_authzen_error(post_raw(client, path, content), 400)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_42_array_of_valid_requests_is_400(client: httpx.Client, path: str) -> None:
    error = assert_authzen_error(post_raw(client, path, json.dumps([VALID_BODIES[path]]).encode()), 400)
    assert error["message"] == "the request body must be a JSON object"


@pytest.mark.parametrize("content", [b"", b"{", b"{}}", b"{'subject': 1}", b"not json"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_44_empty_or_invalid_json_is_400(client: httpx.Client, path: str, content: bytes) -> None:
    assert_authzen_error(post_raw(client, path, content), 400)


# -- AZ-44 and AZ-19: required members, per endpoint ----------------------------------------

REQUIRED: dict[str, list[str]] = {
    EVALUATION: ["subject", "action", "resource", "subject.type", "subject.id", "action.name", "resource.type", "resource.id"],
    SEARCH_SUBJECT: ["subject", "action", "resource", "subject.type", "action.name", "resource.type", "resource.id"],
    SEARCH_RESOURCE: ["subject", "action", "resource", "subject.type", "subject.id", "action.name", "resource.type"],
    SEARCH_ACTION: ["subject", "resource", "subject.type", "subject.id", "resource.type", "resource.id"],
}


def without(body: dict[str, Any], member: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    entity, _, name = member.partition(".")
    if name:
        del copy[entity][name]
    else:
        del copy[entity]
    return copy


@pytest.mark.parametrize(("path", "member"), [(path, member) for path, members in REQUIRED.items() for member in members])
def test_az_44_missing_required_member_is_400_naming_it(client: httpx.Client, path: str, member: str) -> None:
    error = assert_authzen_error(client.post(path, json=without(VALID_BODIES[path], member)), 400)
    assert error["error"] == "invalid_request"
    assert member in error["message"], error


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("subject", "alice"),
        ("subject", ["alice"]),
        ("action", "read"),
        ("resource", 7),
        ("subject.id", 7),
        ("subject.type", None),
        ("action.name", True),
        ("resource.id", {"id": "x"}),
        ("subject.properties", ["a"]),
        ("action.properties", "x"),
        ("resource.properties", 1),
        ("context", "x"),
        ("context", [1]),
    ],
)
@pytest.mark.parametrize("path", [EVALUATION, EVALUATIONS])
def test_az_44_wrong_json_type_is_400(client: httpx.Client, path: str, member: str, value: Any) -> None:
    body = json.loads(json.dumps(EVALUATION_BODY))
    entity, _, name = member.partition(".")
    if name:
        body[entity][name] = value
    else:
        body[entity] = value
    error = assert_authzen_error(client.post(path, json=body), 400)
    assert member in error["message"], error


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_44_null_for_a_required_member_is_400(client: httpx.Client, path: str) -> None:
    body = json.loads(json.dumps(VALID_BODIES[path]))
    body["subject"] = None
    body.pop("evaluations", None)  # with items, a top-level default may be absent (AZ-10)
    assert_authzen_error(client.post(path, json=body), 400)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_48_null_for_an_optional_member_is_absent(client: httpx.Client, path: str) -> None:
    body = json.loads(json.dumps(VALID_BODIES[path]))
    body["context"] = None
    for entity in ("subject", "resource"):
        body[entity]["properties"] = None
    if "action" in body:
        body["action"]["properties"] = None
    if path.startswith("/access/v1/search"):
        body["page"] = None
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED[path]


# -- AZ-45: unknown members are ignored everywhere ------------------------------------------


def with_unknown_members(body: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    copy["x-top"] = {"anything": [1, None, {"deep": True}]}
    for entity in ("subject", "action", "resource"):
        if entity in copy:
            copy[entity]["x-vendor"] = "ignored"
    copy["context"] = {"x-ctx": 1}
    copy["options"] = {"x-option": True}
    if "evaluations" in copy:
        copy["evaluations"] = [{**item, "x-item": 1} for item in copy["evaluations"]]
    return copy


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_45_unknown_members_at_every_level_are_ignored(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=with_unknown_members(VALID_BODIES[path]))
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED[path]


@pytest.mark.parametrize("path", [SEARCH_SUBJECT, SEARCH_RESOURCE, SEARCH_ACTION])
def test_az_45_unknown_page_members_are_ignored(client: httpx.Client, path: str) -> None:
    response = client.post(path, json={**VALID_BODIES[path], "page": {"x-sort": "asc", "properties": {"x": 1}}})
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED[path]


def test_az_45_action_member_in_action_search_is_ignored(client: httpx.Client) -> None:
    response = client.post(SEARCH_ACTION, json={**VALID_BODIES[SEARCH_ACTION], "action": {"name": "can_read_todos"}})
    assert response.status_code == 200
    assert response.json() == EXPECTED[SEARCH_ACTION]


def test_az_46_member_order_does_not_matter(client: httpx.Client) -> None:
    reordered = {
        "resource": {"id": MORTYS_TODO, "type": "todo"},
        "action": {"name": "can_update_todo"},
        "subject": {"id": MORTY, "type": "user"},
    }
    assert decide(client, reordered) == {"decision": True}


# -- AZ-47: I-JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_az_47_non_finite_numbers_are_400(client: httpx.Client, literal: bytes) -> None:
    body = b'{"subject":{"type":"user","id":"x","properties":{"n":' + literal + b'}},"action":{"name":"a"},"resource":{"type":"todo","id":"x"}}'
    assert_authzen_error(post_raw(client, EVALUATION, body), 400)


def test_az_47_unpaired_surrogate_is_400(client: httpx.Client) -> None:
    body = b'{"subject":{"type":"user","id":"\\udc00"},"action":{"name":"a"},"resource":{"type":"todo","id":"x"}}'
    assert_authzen_error(post_raw(client, EVALUATION, body), 400)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_47_invalid_utf8_is_400(client: httpx.Client, path: str) -> None:
    """Not UTF-8 is not I-JSON and not valid JSON text: a 400, never a 500."""
    body = body_of(path).replace(b'"type": "user"', b'"type": "us\xffer"', 1)
    assert body != body_of(path)
    assert_authzen_error(post_raw(client, path, body), 400)


def test_az_47_escaped_unicode_is_decoded(client: httpx.Client) -> None:
    body = b'{"subject":{"type":"user","id":"morty@the-citadel.com"},"action":{"name":"can_update_todo"},"resource":{"type":"todo","id":"x","properties":{"ownerID":"morty@the-citadel\\u002ecom"}}}'
    response = post_raw(client, EVALUATION, body)
    assert response.status_code == 200 and response.json() == {"decision": True}


# -- AZ-50: request identification -----------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_50_request_id_echoed_on_200(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=VALID_BODIES[path], headers={"X-Request-ID": "5f0c8a8e-2c7f-4f57-9a55-0c2f3c1e9d11"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "5f0c8a8e-2c7f-4f57-9a55-0c2f3c1e9d11"


def test_az_50_request_id_echoed_on_deny(client: httpx.Client) -> None:
    response = client.post(EVALUATION, json=request(MORTY, "can_update_todo", RICKS_TODO), headers={"X-Request-ID": "deny-1"})
    assert response.json()["decision"] is False and response.headers["x-request-id"] == "deny-1"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_50_request_id_echoed_on_400(client: httpx.Client, path: str) -> None:
    response = post_raw(client, path, b"[]", **{"X-Request-ID": "bad-body-1"})
    assert_authzen_error(response, 400)
    assert response.headers["x-request-id"] == "bad-body-1"


def test_az_50_request_id_echoed_on_400_for_content_type(client: httpx.Client) -> None:
    response = post_raw(client, EVALUATION, body_of(EVALUATION), "text/plain", **{"X-Request-ID": "ct-1"})
    assert_authzen_error(response, 400)
    assert response.headers["x-request-id"] == "ct-1"


@pytest.mark.parametrize("path", ["/access/v1/nope", "/access/v2/evaluation", "/nope"])
def test_az_50_request_id_echoed_on_404(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=EVALUATION_BODY, headers={"X-Request-ID": "missing-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "missing-1"


def test_unknown_authzen_path_is_404_with_authzen_error(client: httpx.Client) -> None:
    assert_authzen_error(client.post("/access/v1/nope", json=EVALUATION_BODY), 404)


def test_az_50_request_id_echoed_on_405(client: httpx.Client) -> None:
    response = client.get(EVALUATION, headers={"X-Request-ID": "method-1"})
    assert_authzen_error(response, 405)
    assert response.headers["x-request-id"] == "method-1"


def test_az_50_request_id_echoed_on_metadata(client: httpx.Client) -> None:
    response = client.get(WELL_KNOWN, headers={"X-Request-ID": "meta-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "meta-1"


def test_az_50_request_id_echoed_on_413(configured: httpx.Client) -> None:
    response = post_raw(configured, EVALUATION, b" " * (MAX_BODY_BYTES + 1), **{"X-Request-ID": "big-1"})
    assert response.status_code in (400, 413)
    assert response.headers["x-request-id"] == "big-1"


@pytest.mark.parametrize(
    "request_id",
    ["1", "a b c", "urn:uuid:5f0c8a8e-2c7f-4f57-9a55-0c2f3c1e9d11", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x" * 200],
)
def test_az_50_arbitrary_request_id_values_echoed_unchanged(client: httpx.Client, request_id: str) -> None:
    response = client.post(EVALUATION, json=EVALUATION_BODY, headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


def test_az_50_long_request_id_echoed_unchanged(client: httpx.Client) -> None:
    """AZ-49: an arbitrary string; AZ-50: the response carries the same value."""
    request_id = "r" * 1024
    response = client.post(EVALUATION, json=EVALUATION_BODY, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id


def test_az_50_request_id_generated_when_absent(client: httpx.Client) -> None:
    first = client.post(EVALUATION, json=EVALUATION_BODY)
    second = client.post(EVALUATION, json=EVALUATION_BODY)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-request-id"] and second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    error = post_raw(client, EVALUATION, b"[]")
    assert error.status_code == 400 and error.headers["x-request-id"]


def test_az_50_exactly_one_request_id_header(client: httpx.Client) -> None:
    response = client.post(EVALUATION, json=EVALUATION_BODY, headers={"X-Request-ID": "once"})
    assert response.headers.get_list("x-request-id") == ["once"]


# -- AZ-55: self-protection -------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_55_body_over_the_limit_is_rejected_with_json_error(configured: httpx.Client, path: str) -> None:
    body = json.loads(json.dumps(VALID_BODIES[path]))
    body["context"] = {"padding": "x" * MAX_BODY_BYTES}
    response = configured.post(path, json=body)
    error = assert_authzen_error(response, response.status_code)
    assert response.status_code in (400, 413)
    assert str(MAX_BODY_BYTES) in error["message"]


def test_az_55_body_under_the_limit_is_served(configured: httpx.Client) -> None:
    body = {**EVALUATION_BODY, "context": {"padding": "x" * (MAX_BODY_BYTES - 400)}}
    assert len(json.dumps(body)) < MAX_BODY_BYTES
    assert decide(configured, body) == {"decision": True}


def test_az_55_batch_over_max_items_is_400(configured: httpx.Client) -> None:
    body = {**EVALUATION_BODY, "evaluations": [{}] * (MAX_BATCH_ITEMS + 1)}
    error = assert_authzen_error(configured.post(EVALUATIONS, json=body), 400)
    assert str(MAX_BATCH_ITEMS) in error["message"]


def test_az_55_batch_at_max_items_is_served(configured: httpx.Client) -> None:
    response = configured.post(EVALUATIONS, json={**EVALUATION_BODY, "evaluations": [{}] * MAX_BATCH_ITEMS})
    assert response.status_code == 200
    assert response.json() == {"evaluations": [{"decision": True}] * MAX_BATCH_ITEMS}


def test_az_55_deeply_nested_body_is_400(client: httpx.Client) -> None:
    body = b'{"subject":{"type":"user","id":"x"},"action":{"name":"a"},"resource":{"type":"todo","id":"x"},"context":{"d":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    error = assert_authzen_error(post_raw(client, EVALUATION, body), 400)
    assert "nested" in error["message"]


def test_az_55_deep_context_is_not_evaluated(client: httpx.Client) -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(40):
        deep = {"k": deep}
    document = decide(client, request(RICK, "can_delete_todo", TODOS[0], context=deep))
    assert document["decision"] is False
    assert document["context"]["reason"] == "unsupported_value"


def test_az_55_server_survives_garbage(client: httpx.Client) -> None:
    for content in (b"\x00" * 100, b"{" * 10000, b'{"subject":' * 3000, bytes(range(256))):
        response = post_raw(client, EVALUATION, content)
        assert response.status_code == 400, (content[:20], response.status_code, response.text)
    assert decide(client, EVALUATION_BODY) == {"decision": True}


def test_readiness_and_health_answer(server: RunningServer) -> None:
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def test_az_48_responses_have_no_null_members(client: httpx.Client) -> None:
    responses = [
        client.post(EVALUATION, json=EVALUATION_BODY),
        client.post(EVALUATION, json=request(MORTY, "can_update_todo", RICKS_TODO)),
        client.post(EVALUATION, json=request(MORTY, "can_update_todo", RICKS_TODO, resource_properties={"x": 0.123456})),
        client.post(EVALUATIONS, json={**EVALUATION_BODY, "evaluations": [{}, {"resource": {"type": "todo"}}, 1]}),
        *(client.post(path, json=VALID_BODIES[path]) for path in (SEARCH_SUBJECT, SEARCH_RESOURCE, SEARCH_ACTION)),
        client.post(SEARCH_RESOURCE, json={**VALID_BODIES[SEARCH_RESOURCE], "page": {"limit": 0}}),
        client.get(WELL_KNOWN),
        post_raw(client, EVALUATION, b"[]"),
    ]
    for response in responses:
        assert not _has_null(response.json()), response.text
