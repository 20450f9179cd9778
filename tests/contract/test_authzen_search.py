"""Subject, resource and action search with pagination over real HTTP (authzen-api.md §6)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.contract.conftest import MAX_SEARCH_LIMIT
from tests.contract.helpers import (
    ACTIONS,
    ALL_USERS,
    BETH,
    EMAILS,
    EVALUATION,
    JERRY,
    MORTY,
    MORTYS_TODO,
    RICK,
    RICKS_TODO,
    SEARCH_ACTION,
    SEARCH_RESOURCE,
    SEARCH_SUBJECT,
    SUMMER,
    SUMMERS_TODO,
    TODOS,
    allowed,
    assert_authzen_error,
    request,
)


def search(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert isinstance(document["results"], list)
    assert next(iter(document)) == "page", "page first, so a streaming PEP reads count early"
    page = document["page"]
    assert isinstance(page["next_token"], str)
    assert page["count"] == len(document["results"])
    return document


def resource_search(subject_id: str, action_name: str, resource_type: str = "todo", **extra: Any) -> dict[str, Any]:
    return {"subject": {"type": "user", "id": subject_id}, "action": {"name": action_name}, "resource": {"type": resource_type}, **extra}


def subject_search(action_name: str, resource_id: str, resource_type: str = "todo", **extra: Any) -> dict[str, Any]:
    return {"subject": {"type": "user"}, "action": {"name": action_name}, "resource": {"type": resource_type, "id": resource_id}, **extra}


def action_search(subject_id: str, resource_id: str, resource_type: str = "todo", **extra: Any) -> dict[str, Any]:
    return {"subject": {"type": "user", "id": subject_id}, "resource": {"type": resource_type, "id": resource_id}, **extra}


def ids(document: dict[str, Any]) -> list[str]:
    return [result["id"] for result in document["results"]]


# -- AZ-15, AZ-17: results are exactly what evaluation permits, of the searched type --------


@pytest.mark.parametrize(
    ("who", "what", "expected"),
    [
        (RICK, "can_delete_todo", TODOS),
        (RICK, "can_update_todo", TODOS),
        (MORTY, "can_update_todo", [MORTYS_TODO]),
        (SUMMER, "can_delete_todo", [SUMMERS_TODO]),
        (BETH, "can_read_todos", TODOS),
        (BETH, "can_update_todo", []),
        (JERRY, "can_create_todo", []),
    ],
)
def test_az_17_resource_search_returns_exactly_the_permitted_todos(client: httpx.Client, who: str, what: str, expected: list[str]) -> None:
    document = search(client, SEARCH_RESOURCE, resource_search(who, what))
    assert ids(document) == expected
    assert all(result["type"] == "todo" for result in document["results"])
    assert document["page"] == {"next_token": "", "count": len(expected), "total": len(expected)}


@pytest.mark.parametrize("who", [RICK, MORTY, SUMMER, BETH, JERRY, "nobody"])
@pytest.mark.parametrize("what", ["can_update_todo", "can_delete_todo", "can_read_todos"])
def test_az_15_every_resource_result_evaluates_true_and_every_other_false(client: httpx.Client, who: str, what: str) -> None:
    found = set(ids(search(client, SEARCH_RESOURCE, resource_search(who, what))))
    for todo in TODOS:
        assert allowed(client, request(who, what, todo)) is (todo in found), (who, what, todo)


@pytest.mark.parametrize("what", ["can_update_todo", "can_delete_todo", "can_read_todos", "can_create_todo"])
@pytest.mark.parametrize("todo", [MORTYS_TODO, RICKS_TODO])
def test_az_15_every_subject_result_evaluates_true_and_every_other_false(client: httpx.Client, what: str, todo: str) -> None:
    document = search(client, SEARCH_SUBJECT, subject_search(what, todo))
    found = set(ids(document))
    assert all(result["type"] == "user" for result in document["results"])
    for user in ALL_USERS:
        assert allowed(client, request(user, what, todo)) is (user in found), (user, what, todo)


def test_az_17_subject_search_for_morty_todo_update(client: httpx.Client) -> None:
    document = search(client, SEARCH_SUBJECT, subject_search("can_update_todo", MORTYS_TODO))
    assert ids(document) == sorted([RICK, EMAILS[RICK], MORTY, EMAILS[MORTY]])


def test_az_16_subject_search_is_transitive_over_roles(client: httpx.Client) -> None:
    """can_read_todos needs Role::viewer; rick is admin → editor → viewer."""
    document = search(client, SEARCH_SUBJECT, subject_search("can_read_todos", MORTYS_TODO))
    assert ids(document) == ALL_USERS
    assert RICK in ids(document)


def test_az_17_searching_users_returns_only_users(client: httpx.Client) -> None:
    document = search(client, SEARCH_RESOURCE, resource_search(BETH, "can_read_user", "user"))
    assert ids(document) == ALL_USERS
    assert {result["type"] for result in document["results"]} == {"user"}
    assert all(set(result) <= {"type", "id", "properties"} for result in document["results"])


@pytest.mark.parametrize("who", [RICK, MORTY, BETH, "nobody"])
@pytest.mark.parametrize(("todo_type", "todo"), [("todo", MORTYS_TODO), ("todo", RICKS_TODO), ("user", RICK)])
def test_az_17_action_search_returns_the_schema_actions_allowed(client: httpx.Client, who: str, todo_type: str, todo: str) -> None:
    document = search(client, SEARCH_ACTION, action_search(who, todo, todo_type))
    names = [result["name"] for result in document["results"]]
    assert all(set(result) == {"name"} for result in document["results"])
    expected = [name for name in ACTIONS if allowed(client, request(who, name, todo, resource_type=todo_type))]
    assert names == expected


def test_az_17_action_search_examples(client: httpx.Client) -> None:
    def names(document: dict[str, Any]) -> list[str]:
        return [r["name"] for r in document["results"]]

    assert names(search(client, SEARCH_ACTION, action_search(RICK, RICKS_TODO))) == ["can_create_todo", "can_delete_todo", "can_read_todos", "can_update_todo"]
    assert names(search(client, SEARCH_ACTION, action_search(BETH, RICKS_TODO))) == ["can_read_todos"]
    assert names(search(client, SEARCH_ACTION, action_search(BETH, RICK, "user"))) == ["can_read_user"]


def test_az_17_results_have_no_duplicates(client: httpx.Client) -> None:
    for path, body in (
        (SEARCH_SUBJECT, subject_search("can_read_todos", MORTYS_TODO)),
        (SEARCH_RESOURCE, resource_search(RICK, "can_delete_todo")),
        (SEARCH_ACTION, action_search(RICK, RICKS_TODO)),
    ):
        results = [tuple(sorted(r.items())) for r in search(client, path, body)["results"]]
        assert len(results) == len(set(results)), path


# -- "nothing matches" is not an error (conformance reading §6.1) ---------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SEARCH_RESOURCE, resource_search(MORTY, "can_update_todo", "invoice")),
        (SEARCH_RESOURCE, resource_search(MORTY, "can_update_todo", "no such type!")),
        (SEARCH_RESOURCE, resource_search("nobody", "can_read_todos")),
        (SEARCH_RESOURCE, resource_search(MORTY, "no_such_action")),
        (SEARCH_SUBJECT, {**subject_search("can_read_todos", MORTYS_TODO), "subject": {"type": "robot"}}),
        (SEARCH_SUBJECT, subject_search("can_read_todos", "x", "invoice")),
        (SEARCH_ACTION, action_search("nobody", MORTYS_TODO)),
        (SEARCH_ACTION, action_search(RICK, "x", "invoice")),
        (SEARCH_ACTION, {"subject": {"type": "robot", "id": "r2"}, "resource": {"type": "todo", "id": MORTYS_TODO}}),
    ],
)
def test_az_17_nothing_matches_is_200_with_empty_results(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    document = search(client, path, body)
    assert document["results"] == []
    assert document["page"]["next_token"] == ""


@pytest.mark.parametrize(
    "value",
    [{"__extn": {"fn": "ip", "arg": "not an ip"}}, {"__entity": {"type": "not a type", "id": "x"}}, 0.123456],
)
def test_az_51_search_with_unusable_property_value_is_not_a_server_error(client: httpx.Client, value: Any) -> None:
    """Nothing a request value can do makes a search fail with 500; no candidate can be
    permitted on a value the engine cannot use."""
    body = resource_search(RICK, "can_delete_todo")
    body["subject"]["properties"] = {"x": value}
    response = client.post(SEARCH_RESOURCE, json=body)
    assert response.status_code in (200, 400), f"{response.status_code} {response.text}"
    if response.status_code == 200:
        assert response.json()["results"] == []


# -- AZ-18: the searched-for id is ignored ----------------------------------------------------


@pytest.mark.parametrize("given_id", [MORTYS_TODO, RICKS_TODO, "unknown-id", ""])
def test_az_18_resource_search_ignores_resource_id(client: httpx.Client, given_id: str) -> None:
    body = resource_search(MORTY, "can_update_todo")
    baseline = search(client, SEARCH_RESOURCE, body)
    body["resource"]["id"] = given_id
    assert search(client, SEARCH_RESOURCE, body) == baseline
    assert ids(baseline) == [MORTYS_TODO]


@pytest.mark.parametrize("given_id", [BETH, RICK, "unknown-id", ""])
def test_az_18_subject_search_ignores_subject_id(client: httpx.Client, given_id: str) -> None:
    body = subject_search("can_update_todo", MORTYS_TODO)
    baseline = search(client, SEARCH_SUBJECT, body)
    body["subject"]["id"] = given_id
    assert search(client, SEARCH_SUBJECT, body) == baseline
    assert len(ids(baseline)) == 4


def test_az_18_searched_entity_properties_apply_to_every_candidate(client: httpx.Client) -> None:
    body = resource_search(MORTY, "can_update_todo")
    body["resource"]["properties"] = {"ownerID": "morty@the-citadel.com"}
    assert ids(search(client, SEARCH_RESOURCE, body)) == TODOS


# -- AZ-19: input entities are complete; the searched type is required ----------------------


@pytest.mark.parametrize(
    ("path", "body", "member"),
    [
        (SEARCH_RESOURCE, {"action": {"name": "can_read_todos"}, "resource": {"type": "todo"}}, "subject"),
        (SEARCH_RESOURCE, resource_search(MORTY, "can_read_todos") | {"subject": {"type": "user"}}, "subject.id"),
        (SEARCH_RESOURCE, {"subject": {"type": "user", "id": MORTY}, "resource": {"type": "todo"}}, "action"),
        (SEARCH_RESOURCE, resource_search(MORTY, "can_read_todos") | {"resource": {"id": MORTYS_TODO}}, "resource.type"),
        (SEARCH_RESOURCE, resource_search(MORTY, "can_read_todos") | {"resource": None}, "resource"),
        (SEARCH_SUBJECT, subject_search("can_read_todos", MORTYS_TODO) | {"resource": {"type": "todo"}}, "resource.id"),
        (SEARCH_SUBJECT, subject_search("can_read_todos", MORTYS_TODO) | {"subject": {"id": MORTY}}, "subject.type"),
        (SEARCH_SUBJECT, {"subject": {"type": "user"}, "resource": {"type": "todo", "id": MORTYS_TODO}}, "action"),
        (SEARCH_ACTION, {"subject": {"type": "user", "id": MORTY}}, "resource"),
        (SEARCH_ACTION, action_search(MORTY, MORTYS_TODO) | {"resource": {"type": "todo"}}, "resource.id"),
        (SEARCH_ACTION, action_search(MORTY, MORTYS_TODO) | {"subject": {"type": "user"}}, "subject.id"),
    ],
)
def test_az_19_missing_input_entity_or_searched_type_is_400(client: httpx.Client, path: str, body: dict[str, Any], member: str) -> None:
    error = assert_authzen_error(client.post(path, json=body), 400)
    assert member in error["message"]


def test_az_19_same_body_valid_at_one_endpoint_invalid_at_another(client: httpx.Client) -> None:
    body = subject_search("can_read_todos", MORTYS_TODO)
    search(client, SEARCH_SUBJECT, body)
    assert_authzen_error(client.post(SEARCH_RESOURCE, json=body), 400)
    assert_authzen_error(client.post(EVALUATION, json=body), 400)


# -- AZ-20..AZ-25: pagination -----------------------------------------------------------------


def walk(client: httpx.Client, path: str, body: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    """Follow next_token to the end (AZ-21), repeating the request unchanged but the token (AZ-22)."""
    pages = []
    token = None
    for _ in range(100):
        page: dict[str, Any] = {} if limit is None else {"limit": limit}
        if token:
            page["token"] = token
        document = search(client, path, {**body, "page": page})
        pages.append(document)
        token = document["page"]["next_token"]
        if token == "":
            return pages
    raise AssertionError("pagination never ended")


def test_az_21_walk_all_pages_with_limit_1(client: httpx.Client) -> None:
    body = subject_search("can_read_todos", MORTYS_TODO)
    pages = walk(client, SEARCH_SUBJECT, body, 1)
    assert len(pages) == len(ALL_USERS)
    assert [document["page"]["count"] for document in pages] == [1] * len(ALL_USERS)
    assert {document["page"]["total"] for document in pages} == {len(ALL_USERS)}
    assert all(document["page"]["next_token"] for document in pages[:-1])
    assert pages[-1]["page"]["next_token"] == ""
    assert [i for document in pages for i in ids(document)] == ALL_USERS


@pytest.mark.parametrize("limit", [2, 3, 4, 5, 6])
def test_az_21_pages_partition_the_result_set(client: httpx.Client, limit: int) -> None:
    body = resource_search(RICK, "can_delete_todo")
    pages = walk(client, SEARCH_RESOURCE, body, limit)
    assert [i for document in pages for i in ids(document)] == TODOS
    assert len(pages) == -(-len(TODOS) // limit)
    assert all(document["page"]["total"] == 5 for document in pages)


def test_az_21_action_search_paginates(client: httpx.Client) -> None:
    pages = walk(client, SEARCH_ACTION, action_search(RICK, RICKS_TODO), 3)
    assert [[r["name"] for r in document["results"]] for document in pages] == [["can_create_todo", "can_delete_todo", "can_read_todos"], ["can_update_todo"]]


def test_az_22_continuation_without_limit_keeps_the_first_limit(client: httpx.Client) -> None:
    body = resource_search(RICK, "can_delete_todo")
    first = search(client, SEARCH_RESOURCE, {**body, "page": {"limit": 2}})
    second = search(client, SEARCH_RESOURCE, {**body, "page": {"token": first["page"]["next_token"]}})
    assert ids(second) == TODOS[2:4]
    assert second["page"]["next_token"]


def test_az_24_limit_beyond_total_is_complete(client: httpx.Client) -> None:
    document = search(client, SEARCH_RESOURCE, {**resource_search(RICK, "can_delete_todo"), "page": {"limit": 50}})
    assert ids(document) == TODOS and document["page"] == {"next_token": "", "count": 5, "total": 5}


def test_az_24_empty_page_object_is_accepted(client: httpx.Client) -> None:
    document = search(client, SEARCH_RESOURCE, {**resource_search(RICK, "can_delete_todo"), "page": {}})
    assert ids(document) == TODOS and document["page"]["next_token"] == ""


def test_az_20_limit_zero(client: httpx.Client) -> None:
    document = search(client, SEARCH_RESOURCE, {**resource_search(RICK, "can_delete_todo"), "page": {"limit": 0}})
    assert document["results"] == []
    assert document["page"]["count"] == 0 and document["page"]["total"] == 5
    assert document["page"]["next_token"] != ""
    empty = search(client, SEARCH_RESOURCE, {**resource_search(BETH, "can_delete_todo"), "page": {"limit": 0}})
    assert empty["results"] == [] and empty["page"] == {"next_token": "", "count": 0, "total": 0}


@pytest.mark.parametrize("limit", [-1, True, False, "2", 1.5, None, [1]])
def test_az_44_limit_must_be_a_non_negative_integer(client: httpx.Client, limit: Any) -> None:
    body = {**resource_search(RICK, "can_delete_todo"), "page": {"limit": limit}}
    if limit is None:  # null is absent (AZ-48 ambiguity note)
        assert ids(search(client, SEARCH_RESOURCE, body)) == TODOS
        return
    assert "limit" in assert_authzen_error(client.post(SEARCH_RESOURCE, json=body), 400)["message"]


@pytest.mark.parametrize("token", [1, True, {"t": 1}])
def test_az_44_token_must_be_a_string(client: httpx.Client, token: Any) -> None:
    body = {**resource_search(RICK, "can_delete_todo"), "page": {"token": token}}
    assert_authzen_error(client.post(SEARCH_RESOURCE, json=body), 400)


def first_token(client: httpx.Client, path: str, body: dict[str, Any], limit: int = 1) -> str:
    token = search(client, path, {**body, "page": {"limit": limit}})["page"]["next_token"]
    assert token
    return token


def test_az_23_changed_limit_on_continuation_is_400(client: httpx.Client) -> None:
    body = resource_search(RICK, "can_delete_todo")
    token = first_token(client, SEARCH_RESOURCE, body, 2)
    assert_authzen_error(client.post(SEARCH_RESOURCE, json={**body, "page": {"token": token, "limit": 3}}), 400)
    assert ids(search(client, SEARCH_RESOURCE, {**body, "page": {"token": token, "limit": 2}})) == TODOS[2:4]


@pytest.mark.parametrize(
    "change",
    [
        {"resource": {"type": "todo", "id": RICKS_TODO}},
        {"resource": {"type": "todo", "id": MORTYS_TODO, "properties": {"ownerID": "x"}}},
        {"action": {"name": "can_update_todo"}},
        {"context": {"time": "later"}},
    ],
)
def test_az_23_changed_entity_on_continuation_is_400(client: httpx.Client, change: dict[str, Any]) -> None:
    body = subject_search("can_read_todos", MORTYS_TODO)
    token = first_token(client, SEARCH_SUBJECT, body)
    error = assert_authzen_error(client.post(SEARCH_SUBJECT, json={**body, **change, "page": {"token": token, "limit": 1}}), 400)
    assert "token" in error["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"subject": {"type": "user", "id": BETH}},
        {"subject": {"type": "user", "id": RICK, "properties": {"email": "x"}}},
        {"resource": {"type": "user"}},
        {"action": {"name": "can_update_todo"}},
    ],
)
def test_az_23_changed_resource_search_on_continuation_is_400(client: httpx.Client, change: dict[str, Any]) -> None:
    body = resource_search(RICK, "can_delete_todo")
    token = first_token(client, SEARCH_RESOURCE, body)
    assert_authzen_error(client.post(SEARCH_RESOURCE, json={**body, **change, "page": {"token": token, "limit": 1}}), 400)


def test_az_23_token_of_another_endpoint_is_400(client: httpx.Client) -> None:
    token = first_token(client, SEARCH_RESOURCE, resource_search(RICK, "can_delete_todo"))
    body = action_search(RICK, RICKS_TODO)
    assert_authzen_error(client.post(SEARCH_ACTION, json={**body, "page": {"token": token, "limit": 1}}), 400)


@pytest.mark.parametrize("token", ["forged", "AQAAAAEAAAABAAAAAAAAAAAAAAAAAAAAAA", "!!!", "A" * 500, " "])
def test_az_23_forged_token_is_400(client: httpx.Client, token: str) -> None:
    body = resource_search(RICK, "can_delete_todo")
    assert_authzen_error(client.post(SEARCH_RESOURCE, json={**body, "page": {"token": token, "limit": 1}}), 400)


def test_az_23_tampered_token_is_400(client: httpx.Client) -> None:
    body = resource_search(RICK, "can_delete_todo")
    token = first_token(client, SEARCH_RESOURCE, body)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[4] ^= 0x02  # jump to another offset
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert_authzen_error(client.post(SEARCH_RESOURCE, json={**body, "page": {"token": tampered, "limit": 1}}), 400)


def test_az_23_token_of_another_pdp_is_400(client: httpx.Client, configured: httpx.Client) -> None:
    body = resource_search(RICK, "can_delete_todo")
    token = first_token(configured, SEARCH_RESOURCE, body)
    assert_authzen_error(client.post(SEARCH_RESOURCE, json={**body, "page": {"token": token, "limit": 1}}), 400)


# -- AZ-55: bounded pages ---------------------------------------------------------------------


@pytest.mark.parametrize("page", [None, {}, {"limit": 1000}])
def test_az_55_search_limit_is_capped(configured: httpx.Client, page: dict[str, Any] | None) -> None:
    body = resource_search(RICK, "can_delete_todo")
    if page is not None:
        body["page"] = page
    document = search(configured, SEARCH_RESOURCE, body)
    assert ids(document) == TODOS[:MAX_SEARCH_LIMIT]
    assert document["page"]["total"] == 5 and document["page"]["next_token"], "a truncated answer carries a token (AZ-24)"


def test_az_24_capped_answer_can_be_walked_to_the_end(configured: httpx.Client) -> None:
    pages = walk(configured, SEARCH_RESOURCE, resource_search(RICK, "can_delete_todo"), None)
    assert [i for document in pages for i in ids(document)] == TODOS
    assert [document["page"]["count"] for document in pages] == [2, 2, 1]
