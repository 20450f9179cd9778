"""Servers for the ARAP suites: the real service on the change-approval bundle (`deploys/`),
once per store back end (AR-n contract tests run on SQLite and PostgreSQL).

- `flow`: the default server of a module (ordinary lifetimes), with completion callbacks
  configured for the caller `pep` towards a real HTTPS receiver (`callbacks`).
- `short_flow` / `strict_flow`: servers with other lifetimes (see VARIANTS), started once per
  session and back end, on the back end of the module's `flow`.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from services.auth import new_api_key
from services.store import create_store
from services.store.records import AuditEvent
from tests.https_receiver import HttpsReceiver, Received, TestCA, https_receiver
from tests.server import RunningServer, run_server
from tests.support import fresh_postgres_schema_sync, poll

BUNDLE = Path(__file__).parent / "deploys"
REVIEWERS = ("alice", "bob", "carol", "dave")
ALL_RIGHTS = '["evaluate", "request", "cancel"]'
# (credential, caller name, scopes, more TOML). `bob_pep` is a PEP whose caller name is also a
# reviewer's entity id: the requester of its submissions may not approve them (AR-96).
CALLERS = (
    ("pep", "pep", ALL_RIGHTS, ""),
    ("other_pep", "other_pep", ALL_RIGHTS, ""),
    ("observer", "observer", '["request"]', ""),
    ("bob_only", "bob_only", ALL_RIGHTS, 'subjects = [{ type = "User", id = "bob" }]\n'),
    ("agent_gateway", "agent_gateway", ALL_RIGHTS, "vouches_for_actors = true\n"),
    ("bob_pep", "bob", ALL_RIGHTS, ""),
    ("operator", "operator", '["admin"]', ""),
)
PROBLEM = "urn:openid:authzen:access-request:error:"
CALLBACK_SECRET = "callback-secret-of-pep"
# Registered for `pep`, but a private-use address that is not allowlisted (AR-77).
INTERNAL_CALLBACK = "https://10.20.30.40/arap-callback"
# Other lifetimes, each a server of its own (started once per session and back end):
# `short`: a pending task expires after 2 s (the bundle's request_ttl), a terminal one is kept
# 4 s, a denial may be submitted for 1 s plus 2 s of clock skew; `strict`: 1 s, no skew.
# (The service's instants are whole seconds, so each lasts up to a second less.)
VARIANTS = {
    "short": ("hint_ttl = 1\nclock_skew = 2\nretention = 4\n", "2s"),
    "strict": ("hint_ttl = 1\nclock_skew = 0\n", None),
    # tasks expire after 2 s but no background sweep comes by: expiry must hold without it
    "unswept": ("worker_interval = 600\n", "2s"),
}


class Credentials:
    """API keys of the callers and reviewers the ARAP servers are configured with."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.hashes: dict[str, str] = {}
        for name in (*(c[0] for c in CALLERS), *REVIEWERS):
            self.keys[name], self.hashes[name] = new_api_key()

    def config(self, extra: str = "", callers: dict[str, str] | None = None) -> str:
        """The configuration: every caller (with `callers[credential]` added to its table),
        every reviewer, and `extra` in [access_requests]."""
        text = "".join(
            f'[[callers]]\nname = "{name}"\nkey_sha256 = "{self.hashes[credential]}"\nscopes = {scopes}\n{more}'
            f"{(callers or {}).get(credential, '')}\n"
            for credential, name, scopes, more in CALLERS
        )
        text += "".join(
            f'[[reviewers]]\nname = "{name}"\nentity = {{ type = "User", id = "{name}" }}\nkey_sha256 = "{self.hashes[name]}"\n\n'
            for name in REVIEWERS
        )
        sweep = "" if "worker_interval" in extra else "worker_interval = 0.2\n"
        return text + "[access_requests]\n" + sweep + extra

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@pytest.fixture(scope="session")
def credentials() -> Credentials:
    return Credentials()


class Callbacks:
    """A real HTTPS endpoint on 127.0.0.1 under a CA made for the session, registered for the
    caller `pep` (with INTERNAL_CALLBACK) on every server of these suites."""

    def __init__(self, receiver: HttpsReceiver, ca: TestCA) -> None:
        self.receiver = receiver
        self.ca = ca
        self.base = f"https://127.0.0.1:{receiver.port}/"

    def url(self, path: str = "arap-callback") -> str:
        return self.base + path

    def caller_config(self) -> str:
        return f'callback_urls = ["{self.base}", "{INTERNAL_CALLBACK}"]\ncallback_secret = "{CALLBACK_SECRET}"\n'

    def service_config(self) -> str:
        return f'callback_allow_networks = ["127.0.0.0/8"]\ncallback_ca_file = "{self.ca.ca_file}"\n'

    def for_task(self, task_id: str) -> list[Received]:
        """What the receiver got for `task_id`, in order of arrival."""
        return [r for r in list(self.receiver.received) if msgspec.json.decode(r.body).get("task", {}).get("id") == task_id]

    def wait_for(self, task_id: str, timeout: float = 10.0) -> list[Received]:
        """The callbacks for `task_id` once there is one (the worker runs every 0.2 s)."""
        assert poll(lambda: bool(self.for_task(task_id)), timeout), f"no callback for {task_id}"
        return self.for_task(task_id)


@pytest.fixture(scope="session")
def callbacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callbacks]:
    ca = TestCA(tmp_path_factory.mktemp("callback-ca"))
    with https_receiver(*ca.issue_server(["127.0.0.1"])) as receiver:
        yield Callbacks(receiver, ca)


class Flow:
    """The PEP's and the reviewers' side of the ARAP flow, over HTTP; with the server's store
    (`store_url`) for what only the deployment sees: its signing key and audit log."""

    def __init__(self, server: RunningServer, credentials: Credentials, store_url: str | None = None) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=10)
        self.credentials = credentials
        self.base_url = server.base_url
        self.store_url = store_url
        self._signing_key: Any = None

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

    def request(self, subject: str = "dave", service: str = "billing", caller: str = "pep", **extra: Any) -> dict[str, Any]:
        """Evaluate, then submit the requestable denial: the submission's answer (201/202)."""
        submitted = self.submit(self.submission(self.evaluate(subject, service, caller=caller), **extra), caller=caller)
        assert submitted.status_code in (201, 202), submitted.text
        return submitted.json()  # type: ignore[no-any-return]

    def bundle(self, *services: str, subject: str = "dave", caller: str = "pep", denials: bool = True) -> dict[str, Any]:
        """A bundle submission (§8.1 `items`) of prod deploys, each item with the denial of its
        own evaluation (§6 ambiguity note), or with none."""
        items = []
        for service in services:
            item: dict[str, Any] = {"resource": {"type": "Service", "id": service}, "action": {"name": "deploy"}}
            if denials:
                item["denial"] = self.submission(self.evaluate(subject, service, caller=caller))["denial"]
            items.append(item)
        return {"subject": {"type": "User", "id": subject}, "context": {"env": "prod"}, "items": items}

    def status(self, task_id: str, caller: str = "pep") -> httpx.Response:
        return self.http.get(f"/access/v1/requests/{task_id}", headers=self.credentials.headers(caller))

    def cancel(self, task: dict[str, Any], caller: str = "pep", *, method: str = "POST", **body: Any) -> httpx.Response:
        """AR-60: POST to `links.cancel`, or DELETE on the status endpoint."""
        url = task["links"]["cancel"] if method == "POST" else task["status_endpoint"]
        return self.http.request(method, url, json=body or None, headers=self.credentials.headers(caller))

    def review(self, reviewer: str, task_id: str, verb: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/reviewer/v1/tasks/{task_id}/{verb}", json=body, headers=self.credentials.headers(reviewer))

    def approve(self, task_id: str, *reviewers: str) -> None:
        for reviewer in reviewers:
            response = self.review(reviewer, task_id, "approve")
            assert response.status_code == 200, response.text

    def detail(self, reviewer: str, task_id: str) -> httpx.Response:
        return self.http.get(f"/reviewer/v1/tasks/{task_id}", headers=self.credentials.headers(reviewer))

    def reevaluate(self, evaluated: dict[str, Any], approval: dict[str, Any], caller: str = "pep") -> dict[str, Any]:
        body = {**evaluated["request"], "context": {**evaluated["request"]["context"], "approval": approval}}
        response = self.http.post("/access/v1/evaluation", json=body, headers=self.credentials.headers(caller))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def signing_key(self) -> Any:
        """The server's current signing key, read from its store: lets a test sign binding
        tokens as the PDP would, with claims the PDP never issues."""
        from joserfc.jwk import ECKey

        if self._signing_key is not None:
            return self._signing_key
        self.evaluate()  # a requestable denial is signed: the server has its key from then on

        async def newest() -> str:
            store = await self._open_store()
            try:
                return (await store.signing_keys(datetime.now(UTC)))[0].private_jwk
            finally:
                await store.close()

        self._signing_key = ECKey.import_key(msgspec.json.decode(asyncio.run(newest())))
        return self._signing_key

    def audit_events(self, task_id: str | None = None) -> list[AuditEvent]:
        """The audit log of the server's store (of one task, when given), in order."""

        async def read() -> list[AuditEvent]:
            store = await self._open_store()
            try:
                events, after = [], 0
                while page := await store.audit_events(after_seq=after):
                    events += page
                    after = page[-1].seq
                return events
            finally:
                await store.close()

        return [e for e in asyncio.run(read()) if task_id is None or e.task_id == task_id]

    async def _open_store(self) -> Any:
        assert self.store_url, "this Flow was made without its server's store"
        store = create_store(self.store_url, pool_min=1, pool_max=1)
        await store.open(migrate=False)
        return store


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """AR-83: an RFC 9457 problem with this status, and the ARAP type URN `kind` (or a full
    type such as `about:blank`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    problem = response.json()
    assert problem["type"] == (kind if ":" in kind else PROBLEM + kind), problem
    assert problem["status"] == status and problem["title"] and problem.get("detail"), problem
    return problem  # type: ignore[no-any-return]


@contextmanager
def arap_server(
    backend: str, workdir: Path, credentials: Credentials, callbacks: Callbacks, *, extra: str = "", bundle: Path = BUNDLE
) -> Iterator[Flow]:
    """A server on `backend` (a fresh SQLite file or PostgreSQL schema), callbacks configured."""
    with ExitStack() as stack:
        url = stack.enter_context(fresh_postgres_schema_sync()) if backend == "postgres" else f"sqlite:///{workdir / 'arop.db'}"
        config = credentials.config(callbacks.service_config() + extra, {"pep": callbacks.caller_config()})
        server = stack.enter_context(run_server(workdir, config=config, env={"AROP_STORE__URL": url}, args=("--bundle", str(bundle))))
        flow = Flow(server, credentials, url)
        stack.callback(flow.http.close)
        yield flow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def flow(backend: str, tmp_path_factory: pytest.TempPathFactory, credentials: Credentials, callbacks: Callbacks) -> Iterator[Flow]:
    with arap_server(backend, tmp_path_factory.mktemp(f"ars-{backend}"), credentials, callbacks) as started:
        yield started


class Variants:
    """The VARIANTS servers, each started on first use and kept for the session."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, credentials: Credentials, callbacks: Callbacks, stack: ExitStack) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.credentials = credentials
        self.callbacks = callbacks
        self.stack = stack
        self.started: dict[tuple[str, str], Flow] = {}

    def flow(self, backend: str, variant: str) -> Flow:
        if (backend, variant) not in self.started:
            extra, request_ttl = VARIANTS[variant]
            workdir = self.tmp_path_factory.mktemp(f"ars-{variant}-{backend}")
            bundle = _bundle_with_request_ttl(workdir / "bundle", request_ttl) if request_ttl else BUNDLE
            server = arap_server(backend, workdir, self.credentials, self.callbacks, extra=extra, bundle=bundle)
            self.started[backend, variant] = self.stack.enter_context(server)
        return self.started[backend, variant]


def _bundle_with_request_ttl(target: Path, request_ttl: str) -> Path:
    """The change-approval bundle with another `request_ttl` (AR-59 needs tasks that expire)."""
    shutil.copytree(BUNDLE, target)
    workflows = target / "workflows.toml"
    text = workflows.read_text()
    assert 'request_ttl = "1h"' in text
    workflows.write_text(text.replace('request_ttl = "1h"', f'request_ttl = "{request_ttl}"'))
    return target


@pytest.fixture(scope="session")
def variants(tmp_path_factory: pytest.TempPathFactory, credentials: Credentials, callbacks: Callbacks) -> Iterator[Variants]:
    with ExitStack() as stack:
        yield Variants(tmp_path_factory, credentials, callbacks, stack)


@pytest.fixture(scope="module")
def short_flow(backend: str, variants: Variants) -> Flow:
    return variants.flow(backend, "short")


@pytest.fixture(scope="module")
def strict_flow(backend: str, variants: Variants) -> Flow:
    return variants.flow(backend, "strict")


@pytest.fixture(scope="module")
def unswept_flow(backend: str, variants: Variants) -> Flow:
    return variants.flow(backend, "unswept")
