"""Servers for the ARAP suites: the real service on the change-approval bundle (`deploys/`),
once per store back end (AR-n contract tests run on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth import new_api_key
from tests.server import RunningServer, run_server
from tests.support import fresh_postgres_schema_sync

BUNDLE = Path(__file__).parent / "deploys"
REVIEWERS = ("alice", "bob", "carol", "dave")


class Credentials:
    """API keys of the callers and reviewers the ARAP servers are configured with."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.hashes: dict[str, str] = {}
        for name in ("pep", "other_pep", "observer", "bob_only", *REVIEWERS):
            self.keys[name], self.hashes[name] = new_api_key()

    def config(self, extra: str = "") -> str:
        callers = [
            ("pep", '["evaluate", "request", "cancel"]', ""),
            ("other_pep", '["evaluate", "request", "cancel"]', ""),
            ("observer", '["request"]', ""),
            ("bob_only", '["evaluate", "request", "cancel"]', 'subjects = [{ type = "User", id = "bob" }]\n'),
        ]
        text = "".join(
            f'[[callers]]\nname = "{name}"\nkey_sha256 = "{self.hashes[name]}"\nscopes = {scopes}\n{more}\n'
            for name, scopes, more in callers
        )
        text += "".join(
            f'[[reviewers]]\nname = "{name}"\nentity = {{ type = "User", id = "{name}" }}\nkey_sha256 = "{self.hashes[name]}"\n\n'
            for name in REVIEWERS
        )
        return text + "[access_requests]\nworker_interval = 0.2\n" + extra

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@pytest.fixture(scope="session")
def credentials() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def ars_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, credentials: Credentials) -> Iterator[RunningServer]:
    with ExitStack() as stack:
        env = {}
        if request.param == "postgres":
            env["AROP_STORE__URL"] = stack.enter_context(fresh_postgres_schema_sync())
        workdir = tmp_path_factory.mktemp(f"ars-{request.param}")
        yield stack.enter_context(run_server(workdir, config=credentials.config(), env=env, args=("--bundle", str(BUNDLE))))


class Flow:
    """The PEP's and the reviewers' side of the ARAP flow, over HTTP."""

    def __init__(self, server: RunningServer, credentials: Credentials) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=10)
        self.credentials = credentials

    def evaluate(self, subject: str = "dave", service: str = "billing", env: str = "prod", caller: str = "pep", **context: Any) -> dict[str, Any]:
        body = {
            "subject": {"type": "User", "id": subject},
            "action": {"name": "deploy"},
            "resource": {"type": "Service", "id": service},
            "context": {"env": env, **context},
        }
        response = self.http.post("/access/v1/evaluation", json=body, headers=self.credentials.headers(caller))
        assert response.status_code == 200, response.text
        return {"request": body, "decision": response.json()}

    def submission(self, evaluated: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """The §8 body for a requestable denial, echoing its binding material (§8.2)."""
        context = evaluated["decision"]["context"]
        hint = context["access_request"]
        denial = {"expires_at": hint["expires_at"], "evaluation_id": context.get("evaluation_id"), "binding_token": hint.get("binding_token"), "template": hint.get("template")}
        body = {**evaluated["request"], "denial": {k: v for k, v in denial.items() if v is not None}}
        body.update(extra)
        return body

    def submit(self, body: dict[str, Any], caller: str = "pep", key: str | None = None) -> httpx.Response:
        headers = self.credentials.headers(caller)
        if key:
            headers["Idempotency-Key"] = key
        return self.http.post("/access/v1/requests", json=body, headers=headers)

    def status(self, task_id: str, caller: str = "pep") -> httpx.Response:
        return self.http.get(f"/access/v1/requests/{task_id}", headers=self.credentials.headers(caller))

    def review(self, reviewer: str, task_id: str, verb: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/reviewer/v1/tasks/{task_id}/{verb}", json=body, headers=self.credentials.headers(reviewer))

    def reevaluate(self, evaluated: dict[str, Any], approval: dict[str, Any], caller: str = "pep") -> dict[str, Any]:
        body = {**evaluated["request"], "context": {**evaluated["request"]["context"], "approval": approval}}
        response = self.http.post("/access/v1/evaluation", json=body, headers=self.credentials.headers(caller))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def flow(ars_server: RunningServer, credentials: Credentials) -> Iterator[Flow]:
    f = Flow(ars_server, credentials)
    yield f
    f.http.close()
