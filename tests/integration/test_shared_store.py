"""Several `arop serve` processes on one PostgreSQL and one Redis, as replicas run in production.

Entity changes written through one replica are picked up by the others without a restart: at
once when Redis carries the notification, and by polling the store when it does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import Keys
from tests.server import RunningServer, run_server
from tests.support import fresh_postgres_schema_sync, require_service

pytestmark = pytest.mark.integration

BETH = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"  # a viewer
CREATE_TODO = {"subject": {"type": "user", "id": BETH}, "action": {"name": "can_create_todo"}, "resource": {"type": "todo", "id": "t"}}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_schema_sync() as url:
        yield url


def _decision(server: RunningServer) -> bool:
    with server.client() as client:
        response = client.post("/access/v1/evaluation", json=CREATE_TODO, headers={"Authorization": f"Bearer {KEYS.evaluate}"})
    assert response.status_code == 200, response.text
    return bool(response.json()["decision"])


def _upsert(server: RunningServer, roles: list[str]) -> None:
    entity = {"type": "user", "id": BETH, "properties": {"email": "beth@the-smiths.com"}, "parents": [{"type": "Role", "id": r} for r in roles]}
    with server.client() as client:
        response = client.post("/admin/v1/entities", json={"entities": [entity]}, headers={"Authorization": f"Bearer {KEYS.admin}"})
    assert response.status_code == 200, response.text


def _wait_for(server: RunningServer, expected: bool, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if _decision(server) is expected:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{server.base_url} did not decide {expected} within {within}s")


KEYS = Keys()


@contextmanager
def replicas(tmp_path: Path, postgres_url: str, *, redis: str, reload_interval: float) -> Iterator[tuple[RunningServer, RunningServer]]:
    config = KEYS.config() + f"\n[policy]\nreload_interval = {reload_interval}\n"
    env = {"AROP_STORE__URL": postgres_url, "AROP_REDIS__URL": redis}
    with run_server(tmp_path / "a", config=config, env=env) as a, run_server(tmp_path / "b", config=config, env=env) as b:
        yield a, b


def test_entity_change_reaches_the_other_replica_at_once_over_redis(tmp_path: Path, postgres_url: str) -> None:
    redis_url = require_service("TEST_REDIS_URL", "Redis")
    with replicas(tmp_path, postgres_url, redis=redis_url, reload_interval=60) as (a, b):
        assert _decision(a) is False and _decision(b) is False
        _upsert(a, ["editor"])
        assert _decision(a) is True  # read-your-writes on the writing replica
        # A 60 s poll interval: only the Redis notification can make this quick.
        assert _wait_for(b, True, within=5) < 5
        _upsert(b, ["viewer"])
        _wait_for(a, False, within=5)


def test_without_redis_replicas_converge_by_polling(tmp_path: Path, postgres_url: str) -> None:
    with replicas(tmp_path, postgres_url, redis="", reload_interval=0.5) as (a, b):
        _upsert(a, ["editor"])
        _wait_for(b, True, within=10)
        _upsert(a, ["viewer"])
        _wait_for(b, False, within=10)


def test_todo_vectors_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    vectors = json.loads((Path(__file__).resolve().parents[1] / "conformance" / "todo" / "decisions-authorization-api-1_0-02.json").read_text())
    with run_server(tmp_path / "pg", env={"AROP_STORE__URL": postgres_url}) as server, httpx.Client(base_url=server.base_url) as client:
        for case in vectors["evaluation"]:
            assert client.post("/access/v1/evaluation", json=case["request"]).json()["decision"] is case["expected"]
