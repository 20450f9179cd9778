"""Shared vocabulary of the contract suites: the Todo interop identities and small HTTP helpers."""

from __future__ import annotations

from typing import Any

import httpx

# Subjects of the AuthZEN Todo interop (../shared/conformance/todo/users.json).
RICK = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # admin, evil_genius
MORTY = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # editor
SUMMER = "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # editor
BETH = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # viewer
JERRY = "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # viewer
EMAILS = {
    RICK: "rick@the-citadel.com",
    MORTY: "morty@the-citadel.com",
    SUMMER: "summer@the-smiths.com",
    BETH: "beth@the-smiths.com",
    JERRY: "jerry@the-smiths.com",
}
ALL_USERS = sorted([*EMAILS, *EMAILS.values()])

# Stored todos, owned by morty, rick, summer, beth and jerry in that order.
TODOS = [f"7240d0db-8ff0-41ec-98b2-34a096273b9{n}" for n in range(1, 6)]
MORTYS_TODO, RICKS_TODO, SUMMERS_TODO, BETHS_TODO, JERRYS_TODO = TODOS
ACTIONS = ["can_create_todo", "can_delete_todo", "can_read_todos", "can_read_user", "can_update_todo"]

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
SEARCH_SUBJECT = "/access/v1/search/subject"
SEARCH_RESOURCE = "/access/v1/search/resource"
SEARCH_ACTION = "/access/v1/search/action"
WELL_KNOWN = "/.well-known/authzen-configuration"


def subject(id_: str, type_: str = "user", **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "id": id_}
    if properties:
        out["properties"] = properties
    return out


def resource(id_: str, type_: str = "todo", **properties: Any) -> dict[str, Any]:
    return subject(id_, type_, **properties)


def action(name: str, **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if properties:
        out["properties"] = properties
    return out


def request(
    subject_id: str,
    action_name: str,
    resource_id: str,
    *,
    resource_properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    resource_type: str = "todo",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": subject(subject_id),
        "action": action(action_name),
        "resource": resource(resource_id, resource_type, **(resource_properties or {})),
    }
    if context is not None:
        body["context"] = context
    return body


# One valid body per POST endpoint (Morty updating his own todo, and searches around it).
VALID_BODIES: dict[str, dict[str, Any]] = {
    EVALUATION: request(MORTY, "can_update_todo", MORTYS_TODO),
    EVALUATIONS: {**request(MORTY, "can_update_todo", MORTYS_TODO), "evaluations": [{}, {"resource": {"type": "todo", "id": RICKS_TODO}}]},
    SEARCH_SUBJECT: {"subject": {"type": "user"}, "action": {"name": "can_update_todo"}, "resource": {"type": "todo", "id": MORTYS_TODO}},
    SEARCH_RESOURCE: {"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"}, "resource": {"type": "todo"}},
    SEARCH_ACTION: {"subject": {"type": "user", "id": MORTY}, "resource": {"type": "todo", "id": MORTYS_TODO}},
}


def post_raw(client: httpx.Client, path: str, content: bytes, content_type: str | None = "application/json", **headers: str) -> httpx.Response:
    all_headers = dict(headers)
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return client.post(path, content=content, headers=all_headers)


def decide(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    """POST a single evaluation and return the Decision, checking its wire shape (AZ-4, AZ-7)."""
    response = client.post(EVALUATION, json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert media_type(response) == "application/json"
    document = response.json()
    assert type(document["decision"]) is bool, document
    assert set(document) <= {"decision", "context"}
    if "context" in document:
        assert isinstance(document["context"], dict)
    return document


def allowed(client: httpx.Client, body: dict[str, Any], **headers: str) -> bool:
    return bool(decide(client, body, **headers)["decision"])


def batch(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(EVALUATIONS, json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert list(document) == ["evaluations"], document  # AZ-12, AZ-13: the array only
    for item in document["evaluations"]:
        assert type(item["decision"]) is bool, item
    return document["evaluations"]


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def assert_authzen_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """§8.4 and its ambiguity note: the status, and a JSON object {error, message} (AZ-42)."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert media_type(response) == "application/json", response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert "decision" not in body, "an error never carries a decision (AZ-51)"
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """RFC 9457 problem+json (the admin API)."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert media_type(response) == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and isinstance(body["title"], str) and isinstance(body["detail"], str)
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
