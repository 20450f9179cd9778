"""Policy bundles are reloaded while serving; a bad bundle never replaces a good one
(DESIGN.md §3). A copy of examples/todo is edited under a running server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Keys
from tests.contract.helpers import (
    BETH,
    EVALUATION,
    MORTY,
    MORTYS_TODO,
    RICK,
    TODOS,
    bearer,
    request,
)
from tests.server import RunningServer, run_server
from tests.support import poll

TODO_BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "todo"
VIEWERS_CREATE = '\n@id("viewer-create-todo")\npermit (principal in Role::"viewer", action == Action::"can_create_todo", resource is todo);\n'


class Reloading:
    def __init__(self, server: RunningServer, bundle: Path, keys: Keys) -> None:
        self.server = server
        self.bundle = bundle
        self.keys = keys
        self.http = server.client()
        self.original = (bundle / "policies.cedar").read_text()

    def write_policies(self, text: str) -> None:
        (self.bundle / "policies.cedar").write_text(text)

    def allowed(self, body: dict[str, Any]) -> bool:
        response = self.http.post(EVALUATION, json=body, headers=bearer(self.keys.evaluate))
        assert response.status_code == 200, response.text
        return bool(response.json()["decision"])

    def status(self) -> dict[str, Any]:
        response = self.http.get("/admin/v1/bundle", headers=bearer(self.keys.admin))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def reloading(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Reloading]:
    root = tmp_path_factory.mktemp("reload")
    bundle = root / "bundle"
    shutil.copytree(TODO_BUNDLE, bundle)
    config = keys.config() + "\n[policy]\nreload_interval = 0.2\n"
    with run_server(root / "work", config=config, args=("--bundle", str(bundle))) as running:
        state = Reloading(running, bundle, keys)
        yield state
        state.http.close()


@pytest.fixture
def fresh(reloading: Reloading) -> Iterator[Reloading]:
    """Each test starts from the original policies and leaves them so."""
    reloading.write_policies(reloading.original)
    assert poll(lambda: reloading.status()["last_reload_error"] is None and not reloading.allowed(request(BETH, "can_create_todo", "t")))
    yield reloading
    reloading.write_policies(reloading.original)


def test_serves_the_copied_bundle(fresh: Reloading) -> None:
    status = fresh.status()
    assert Path(status["path"]) == fresh.bundle.resolve()
    assert status["last_reload_error"] is None


def test_changed_policy_is_served_without_restart(fresh: Reloading) -> None:
    beth_creates = request(BETH, "can_create_todo", "new")
    version = fresh.status()["version"]
    assert fresh.allowed(beth_creates) is False
    fresh.write_policies(fresh.original + VIEWERS_CREATE)
    assert poll(lambda: fresh.allowed(beth_creates)), "the new policy decides within a few seconds"
    status = fresh.status()
    assert status["version"] != version
    assert "viewer-create-todo" in {p["id"] for p in status["policies"]}
    fresh.write_policies(fresh.original)
    assert poll(lambda: not fresh.allowed(beth_creates)), "and its removal too"


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ('permit (principal, action, resource) when { principal.email == };', "syntax"),
        ('permit (principal, action == Action::"can_read_todos", resource is todo) when { resource.no_such_attribute == "x" };', "schema"),
        ('forbid (principal, action == Action::"no_such_action", resource);', "schema"),
    ],
)
def test_broken_policy_keeps_the_last_good_version_and_names_file_and_line(fresh: Reloading, broken: str, why: str) -> None:
    beth_creates = request(BETH, "can_create_todo", "new")
    good = fresh.original + VIEWERS_CREATE
    fresh.write_policies(good)
    assert poll(lambda: fresh.allowed(beth_creates))
    good_version = fresh.status()["version"]

    line = len(good.splitlines()) + 2  # after one blank line
    fresh.write_policies(good + "\n" + broken + "\n")
    assert poll(lambda: fresh.status()["last_reload_error"] is not None), f"the {why} error is reported"
    status = fresh.status()
    assert f"policies.cedar:{line}" in status["last_reload_error"], status["last_reload_error"]
    assert status["version"] == good_version, "the broken bundle is not installed"
    assert fresh.allowed(beth_creates) is True, "the last good version keeps deciding"
    assert fresh.allowed(request(MORTY, "can_update_todo", MORTYS_TODO)) is True
    assert fresh.allowed(request(RICK, "can_delete_todo", TODOS[4])) is True
    assert fresh.allowed(request(BETH, "can_delete_todo", TODOS[0])) is False

    fresh.write_policies(good)
    assert poll(lambda: fresh.status()["last_reload_error"] is None), "a repaired bundle clears the error"
    assert fresh.status()["version"] == good_version


def test_broken_schema_keeps_the_last_good_version(fresh: Reloading) -> None:
    schema = fresh.bundle / "schema.cedarschema"
    original = schema.read_text()
    try:
        schema.write_text(original + "\nentity Broken = {\n")
        assert poll(lambda: fresh.status()["last_reload_error"] is not None)
        assert "schema.cedarschema" in fresh.status()["last_reload_error"]
        assert fresh.allowed(request(MORTY, "can_update_todo", MORTYS_TODO)) is True
    finally:
        schema.write_text(original)
    assert poll(lambda: fresh.status()["last_reload_error"] is None)


def test_changed_bundle_entities_are_served(fresh: Reloading) -> None:
    entities_file = fresh.bundle / "entities.json"
    original = entities_file.read_text()
    data = json.loads(original)
    (beth,) = [e for e in data if e["type"] == "user" and e["id"] == BETH]
    beth["parents"] = [{"type": "Role", "id": "editor"}]
    try:
        entities_file.write_text(json.dumps(data, indent=2))
        assert poll(lambda: fresh.allowed(request(BETH, "can_create_todo", "new"))), "beth became an editor"
    finally:
        entities_file.write_text(original)
    assert poll(lambda: not fresh.allowed(request(BETH, "can_create_todo", "new")))
