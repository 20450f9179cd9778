"""The AROP sidecar beside a real Authorization Server nobody on this team wrote: panva's
`oidc-provider` 9.13.3 with the adapter of integrations/oidc-provider (its demo AS,
demo/server.mjs), driven by a real OAuth client (httpx + joserfc DPoP proofs).

One stack per module: `arop serve` on PostgreSQL (the trading-agent bundle with CIBA's
self-approval, tests/oauth/conftest.py `ciba_bundle`), the demo AS on 127.0.0.1 with this run's
clients, a resource server that signs transaction challenges, a wallet that signs mandates, and
an HTTPS endpoint for the CIBA ping client. Reviewers approve through the reviewer API.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from profiles.arop import ciba
from services.auth import new_api_key
from services.config import REPO_ROOT
from tests.https_receiver import HttpsReceiver, TestCA, https_receiver
from tests.node import run_node
from tests.oauth.conftest import (
    RS,
    OAuthClient,
    ResourceServer,
    ReviewerSide,
    agents_bundle,
    ciba_bundle,
)
from tests.oauth.test_client_challenge_flow import Trust, _inline
from tests.server import Restartable, RunningServer, free_port
from tests.support import fresh_postgres_schema_sync

ADAPTER_DIR = REPO_ROOT / "integrations" / "oidc-provider"
INTERVAL = 1
CLIENT_GRANTS = ["client_credentials", "urn:ietf:params:oauth:grant-type:deferred"]
DETAILS_TYPES = ["trade", "portfolio_read"]


class Client(OAuthClient):
    """A client of the demo AS: oidc-provider's backchannel endpoint is `/backchannel`."""

    def backchannel(self, amount: int, login_hint: str = "alice", portfolio: str = "alice-main", **members: str) -> httpx.Response:
        details = json.dumps([{"type": "trade", "identifier": portfolio, "actions": ["buy"], "amount": amount}])
        form = self.form(scope="openid", login_hint=login_hint, authorization_details=details, resource=RS, **members)
        return self.http.post("/backchannel", data=form, headers={"DPoP": self.proof("/backchannel")})

    def poll_ciba(self, auth_req_id: str, key: ECKey | None = None) -> httpx.Response:
        form = self.form(grant_type=ciba.GRANT_TYPE, auth_req_id=auth_req_id)
        return self.http.post("/token", data=form, headers={"DPoP": self.proof("/token", key)})


class Stack(ReviewerSide):
    """The running sidecar (restartable in place), the demo AS, and the people around them."""

    def __init__(self, service: Restartable, server: RunningServer, runs: ExitStack, issuer: str, secrets_of: dict[str, str],
                 reviewer_key: str, rs: ResourceServer, trust: Trust, receiver: HttpsReceiver) -> None:
        self.service, self.server, self.runs = service, server, runs
        self.issuer = issuer
        self.secrets = secrets_of
        self.reviewer = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {reviewer_key}"}, timeout=10)
        self.rs, self.trust, self.receiver = rs, trust, receiver

    def client(self, client_id: str) -> Client:
        return Client(self.issuer, client_id, self.secrets[client_id])

    def kill_sidecar(self) -> None:
        self.server.kill()

    def restart_sidecar(self) -> None:
        self.server = self.runs.enter_context(self.service.start())

    def pings(self, auth_req_id: str) -> list[Any]:
        return [r for r in list(self.receiver.received) if r.path == "/ping" and json.loads(r.body).get("auth_req_id") == auth_req_id]


def _clients(ping_endpoint: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """This run's clients (random secrets): alice's agents trader-7 and trader-8, of which only
    trader-8 understands the Client Challenge (TX-59); bob's trader-9; the CIBA clients
    assistant-poll and assistant-ping."""
    made = {name: secrets.token_urlsafe(24) for name in ("trader-7", "trader-8", "trader-9", "assistant-poll", "assistant-ping")}
    common = {"token_endpoint_auth_method": "client_secret_post", "response_types": [], "redirect_uris": [],
              "dpop_bound_access_tokens": True, "authorization_details_types": DETAILS_TYPES}
    registered = [
        {**common, "client_id": "trader-7", "client_secret": made["trader-7"], "grant_types": CLIENT_GRANTS},
        {**common, "client_id": "trader-8", "client_secret": made["trader-8"], "grant_types": CLIENT_GRANTS,
         "insufficient_client_authorization_supported": True},
        {**common, "client_id": "trader-9", "client_secret": made["trader-9"], "grant_types": CLIENT_GRANTS},
        {**common, "client_id": "assistant-poll", "client_secret": made["assistant-poll"], "grant_types": [ciba.GRANT_TYPE],
         "backchannel_token_delivery_mode": "poll"},
        {**common, "client_id": "assistant-ping", "client_secret": made["assistant-ping"], "grant_types": [ciba.GRANT_TYPE],
         "backchannel_token_delivery_mode": "ping", "backchannel_client_notification_endpoint": ping_endpoint},
    ]
    return registered, made


def _add_agent(bundle: Path, agent: str, owner: str) -> None:
    entities = bundle / "entities.json"
    known = json.loads(entities.read_text())
    known.append({"type": "Agent", "id": agent, "properties": {"name": f"{owner}'s other agent", "acts_for": {"__entity": {"type": "User", "id": owner}}}})
    entities.write_text(json.dumps(known))


@contextmanager
def stack(workdir: Path, *, oauth: str = "") -> Iterator[Stack]:
    """`oauth`: more lines for the sidecar's [oauth] section (a short handle lifetime)."""
    as_key, as_hash = new_api_key()
    alice_key, alice_hash = new_api_key()
    as_port = free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    rs = ResourceServer(RS, ECKey.generate_key("P-256", parameters={"kid": "rs-1"}, private=True))
    rs_jwks = _inline({"keys": [{**rs.key.as_dict(private=False), "kid": "rs-1", "use": "sig"}]})
    trust = Trust()
    ca = TestCA(workdir)
    with ExitStack() as runs:
        receiver = runs.enter_context(https_receiver(*ca.issue_server(["127.0.0.1"])))
        receiver.default_status = 204
        registered, made = _clients(f"https://127.0.0.1:{receiver.port}/ping")
        clients_file = workdir / "clients.json"
        clients_file.write_text(json.dumps(registered))
        config = (
            f'[[callers]]\nname = "as"\nkey_sha256 = "{as_hash}"\nscopes = ["oauth"]\n\n'
            f'[[reviewers]]\nname = "alice"\nentity = {{ type = "User", id = "alice" }}\nkey_sha256 = "{alice_hash}"\n\n'
            '[access_requests]\nworker_interval = 0.2\ncallback_allow_networks = ["127.0.0.0/8"]\n\n'
            f'[oauth]\ninterval = {INTERVAL}\ntxn_placement = "resource"\n'
            f'resource_servers = [{{ issuer = "{RS}", jwks = {rs_jwks} }}]\n{oauth}'
            + trust.oauth(as_port)
        )
        url = runs.enter_context(fresh_postgres_schema_sync())
        bundle = agents_bundle(workdir / "bundle")
        ciba_bundle(bundle)
        _add_agent(bundle, "trader-8", "alice")
        # PYTHONPATH: the Client Challenge's extension verifier (Trust.oauth) is a module of the tests.
        env = {"AROP_STORE__URL": url, "PYTHONPATH": str(REPO_ROOT)}
        service = Restartable(workdir, config=config, env=env, args=("--bundle", str(bundle)))
        server = runs.enter_context(service.start())
        as_env = {
            "AROP_SIDECAR_URL": server.base_url, "AROP_SIDECAR_KEY": as_key, "AS_PORT": str(as_port), "AS_ISSUER": issuer,
            "AS_CLIENTS_FILE": str(clients_file), "AS_RESOURCE_SERVERS": RS, "AS_FETCH_LOOPBACK": "1",
            "NODE_EXTRA_CA_CERTS": str(ca.ca_file),
        }
        ready = runs.enter_context(run_node("demo/server.mjs", cwd=ADAPTER_DIR, env=as_env, drop_env_prefix="AS_"))
        assert ready == issuer
        yield Stack(service, server, runs, issuer, made, alice_key, rs, trust, receiver)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("e2e-oidc-provider")) as started:
        yield started

