"""The entities admin API (the policy information point) on `secured_server`, and entity changes
reaching every instance that shares a store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Keys
from tests.contract.helpers import (
    ACTIONS,
    BETH,
    EVALUATION,
    MORTY,
    RICK,
    SEARCH_RESOURCE,
    TODOS,
    assert_problem,
    bearer,
    media_type,
    request,
)
from tests.server import RunningServer, run_server
from tests.support import poll

ENTITIES = "/admin/v1/entities"
DELETE = "/admin/v1/entities/delete"
BUNDLE = "/admin/v1/bundle"
TODO_POLICIES = {
    "viewer-read-todos",
    "viewer-read-users",
    "editor-create-todo",
    "editor-change-own-todo",
    "admin-delete-any-todo",
    "evil-genius-update-any-todo",
}


class Admin:
    """An admin API client holding the operator key, and a PEP client holding the pep key."""

    def __init__(self, client: httpx.Client, keys: Keys) -> None:
        self.http = client
        self.keys = keys

    def upsert(self, *entities: dict[str, Any]) -> httpx.Response:
        return self.http.post(ENTITIES, json={"entities": list(entities)}, headers=bearer(self.keys.admin))

    def delete(self, *uids: tuple[str, str]) -> httpx.Response:
        return self.http.post(DELETE, json={"entities": [{"type": t, "id": i} for t, i in uids]}, headers=bearer(self.keys.admin))

    def get(self, type_: str, id_: str) -> httpx.Response:
        return self.http.get(ENTITIES, params={"type": type_, "id": id_}, headers=bearer(self.keys.admin))

    def bundle(self) -> dict[str, Any]:
        response = self.http.get(BUNDLE, headers=bearer(self.keys.admin))
        assert response.status_code == 200, response.text
        return response.json()

    def allowed(self, body: dict[str, Any]) -> bool:
        response = self.http.post(EVALUATION, json=body, headers=bearer(self.keys.evaluate))
        assert response.status_code == 200, response.text
        return bool(response.json()["decision"])


@pytest.fixture(scope="module")
def admin(secured_server: RunningServer, keys: Keys) -> Iterator[Admin]:
    with secured_server.client() as c:
        yield Admin(c, keys)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert media_type(response) == "application/json"
    return response.json()


# -- writes change decisions at once (read-your-writes) ----------------------------------------


def test_upsert_entity_changes_the_decision_immediately(admin: Admin) -> None:
    user = unique("contract-user")
    body = request(user, "can_read_todos", TODOS[0])
    assert admin.allowed(body) is False
    result = ok(admin.upsert({"type": "user", "id": user, "properties": {"email": f"{user}@example.com"}, "parents": [{"type": "Role", "id": "viewer"}]}))
    assert result["upserted"] == 1 and isinstance(result["revision"], int)
    try:
        assert admin.allowed(body) is True
        assert admin.allowed(request(user, "can_create_todo", TODOS[0])) is False
    finally:
        ok(admin.delete(("user", user)))
    assert admin.allowed(body) is False


def test_upsert_changes_attributes_immediately(admin: Admin) -> None:
    todo = unique("contract-todo")
    body = request(MORTY, "can_update_todo", todo)
    assert admin.allowed(body) is False
    ok(admin.upsert({"type": "todo", "id": todo, "properties": {"ownerID": "morty@the-citadel.com"}}))
    try:
        assert admin.allowed(body) is True
        ok(admin.upsert({"type": "todo", "id": todo, "properties": {"ownerID": "rick@the-citadel.com"}}))
        assert admin.allowed(body) is False
    finally:
        ok(admin.delete(("todo", todo)))


def test_stored_entity_replaces_the_bundle_entity_and_delete_reverts(admin: Admin) -> None:
    body = request(BETH, "can_create_todo", TODOS[0])
    assert admin.allowed(body) is False, "beth is a viewer in the bundle"
    promoted = {"type": "user", "id": BETH, "properties": {"email": "beth@the-smiths.com"}, "parents": [{"type": "Role", "id": "editor"}]}
    ok(admin.upsert(promoted))
    try:
        assert admin.allowed(body) is True
        entity = ok(admin.get("user", BETH))
        assert entity["entity"]["parents"] == [{"type": "Role", "id": "editor"}]
    finally:
        result = ok(admin.delete(("user", BETH)))
    assert result["deleted"] == 1
    assert admin.allowed(body) is False, "the bundle's beth (viewer) is back"
    assert ok(admin.get("user", BETH))["entity"]["parents"] == [{"type": "Role", "id": "viewer"}]


def test_new_entities_are_searchable(admin: Admin) -> None:
    todo = unique("contract-todo")
    search = {"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"}, "resource": {"type": "todo"}}
    ok(admin.upsert({"type": "todo", "id": todo, "properties": {"ownerID": "morty@the-citadel.com"}}))
    try:
        response = admin.http.post(SEARCH_RESOURCE, json=search, headers=bearer(admin.keys.evaluate))
        assert {"type": "todo", "id": todo} in ok(response)["results"]
    finally:
        ok(admin.delete(("todo", todo)))
    response = admin.http.post(SEARCH_RESOURCE, json=search, headers=bearer(admin.keys.evaluate))
    assert {"type": "todo", "id": todo} not in ok(response)["results"]


def test_delete_of_unknown_entity_is_harmless(admin: Admin) -> None:
    ok(admin.delete(("user", unique("never-existed"))))


# -- invalid writes: 400 problem+json, nothing stored ------------------------------------------


@pytest.mark.parametrize(
    "entity",
    [
        {"type": "not a type", "id": "x"},
        {"type": "user", "id": "x", "parents": [{"type": "bad-type", "id": "r"}]},
        {"type": "user", "id": "x", "properties": {"score": 0.123456}},
        {"type": "user", "id": "x", "properties": {"big": 2**64}},
        {"type": "user", "id": "x", "properties": {"list": [1, None]}},
        {"type": "user", "id": "x", "properties": {"nul": "a\u0000b"}},
        {"type": "user", "id": "x", "properties": {"ip": {"__extn": {"fn": "ip", "arg": "not an address"}}}},
        {"type": "user", "id": "x", "properties": {"f": {"__extn": {"fn": "no_such_function", "arg": "1"}}}},
        {"type": "user", "id": "x", "properties": {"e": {"__entity": {"type": "bad type", "id": "r"}}}},
    ],
)
def test_invalid_entity_is_400_problem_and_nothing_is_stored(admin: Admin, entity: dict[str, Any]) -> None:
    """An entity Cedar cannot load must be refused at the door: once stored it would make every
    decision that touches it fail."""
    entity = {**entity, "id": unique("invalid")}
    good = {"type": "user", "id": unique("good"), "parents": [{"type": "Role", "id": "viewer"}]}
    response = admin.upsert(good, entity)
    if response.status_code == 200:  # clean up before failing, so other tests see a sane store
        admin.delete((entity["type"], entity["id"]), ("user", good["id"]))
    problem = assert_problem(response, 400)
    assert problem["detail"]
    assert admin.get("user", good["id"]).status_code == 404, "a refused batch stores nothing"


def test_duplicate_entities_in_one_call_are_400(admin: Admin) -> None:
    user = unique("dup")
    assert_problem(admin.upsert({"type": "user", "id": user}, {"type": "user", "id": user}), 400)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"{}", "application/json", 400),
        (b'{"entities": {}}', "application/json", 400),
        (b'{"entities": [{"type": "user"}]}', "application/json", 400),
        (b'{"entities": []}', "text/plain", 415),
    ],
)
def test_malformed_admin_body_is_a_problem(admin: Admin, content: bytes, content_type: str, status: int) -> None:
    response = admin.http.post(ENTITIES, content=content, headers={**bearer(admin.keys.admin), "Content-Type": content_type})
    assert_problem(response, status)


# -- reading: entities and bundle status --------------------------------------------------------


def test_get_entity_shows_it_with_its_ancestors(admin: Admin) -> None:
    document = ok(admin.get("user", RICK))
    assert document["entity"] == {
        "type": "user",
        "id": RICK,
        "properties": {"email": "rick@the-citadel.com", "name": "Rick Sanchez"},
        "parents": [{"type": "Role", "id": "admin"}, {"type": "Role", "id": "evil_genius"}],
    }
    assert sorted(a["id"] for a in document["ancestors"]) == ["admin", "editor", "evil_genius", "viewer"]
    assert {a["type"] for a in document["ancestors"]} == {"Role"}


def test_get_unknown_entity_is_404_problem(admin: Admin) -> None:
    assert_problem(admin.get("user", unique("nobody")), 404)


def test_get_entity_without_id_is_400_problem(admin: Admin) -> None:
    assert_problem(admin.http.get(ENTITIES, params={"type": "user"}, headers=bearer(admin.keys.admin)), 400)


def test_bundle_status(admin: Admin, secured_server: RunningServer) -> None:
    status = admin.bundle()
    assert status["path"].endswith("examples/todo")
    assert len(status["version"]) == 16 and int(status["version"], 16) >= 0
    assert {p["id"] for p in status["policies"]} == TODO_POLICIES
    assert all(p["file"] == "policies.cedar" and isinstance(p["line"], int) and p["line"] > 0 for p in status["policies"])
    assert status["actions"] == ACTIONS
    assert status["entities"] >= 19
    assert status["last_reload_error"] is None


# -- several instances, one store ----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[tuple[Admin, Admin]]:
    """Two `arop serve` processes sharing one SQLite file, as two replicas would."""
    root: Path = tmp_path_factory.mktemp("shared-store")
    env = {"AROP_STORE__URL": f"sqlite:///{root / 'shared.db'}"}
    config = keys.config() + "\n[policy]\nreload_interval = 0.2\n"
    with (
        run_server(root / "a", config=config, env=env) as a,
        run_server(root / "b", config=config, env=env) as b,
        a.client() as client_a,
        b.client() as client_b,
    ):
        yield Admin(client_a, keys), Admin(client_b, keys)


def test_entity_written_through_one_instance_reaches_the_other(two_instances: tuple[Admin, Admin]) -> None:
    first, second = two_instances
    user = unique("replica-user")
    body = request(user, "can_read_todos", TODOS[0])
    assert first.allowed(body) is False and second.allowed(body) is False
    ok(first.upsert({"type": "user", "id": user, "parents": [{"type": "Role", "id": "viewer"}]}))
    assert first.allowed(body) is True, "the writing instance answers with its own write at once"
    assert poll(lambda: second.allowed(body)), "the other instance picks the write up without a restart"
    assert ok(second.get("user", user))["entity"]["parents"] == [{"type": "Role", "id": "viewer"}]
    ok(second.delete(("user", user)))
    assert second.allowed(body) is False
    assert poll(lambda: not first.allowed(body)), "and a delete travels back"


def test_search_token_is_valid_on_every_instance(two_instances: tuple[Admin, Admin]) -> None:
    first, second = two_instances
    search = {"subject": {"type": "user", "id": RICK}, "action": {"name": "can_delete_todo"}, "resource": {"type": "todo"}}
    page_one = ok(first.http.post(SEARCH_RESOURCE, json={**search, "page": {"limit": 2}}, headers=bearer(first.keys.evaluate)))
    token = page_one["page"]["next_token"]
    assert token
    page_two = ok(second.http.post(SEARCH_RESOURCE, json={**search, "page": {"token": token, "limit": 2}}, headers=bearer(second.keys.evaluate)))
    assert [r["id"] for r in page_one["results"] + page_two["results"]] == TODOS[:4]
