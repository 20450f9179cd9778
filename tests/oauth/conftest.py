"""Servers for the AROP end-to-end suites: the real service (`arop serve`) on the trading-agent
bundle, once per store back end, with the test Authorization Server in front of it and a real
OAuth client (httpx + joserfc DPoP proofs).

The bundle is examples/agents without its workflow's `request_schema`: AROP defines no in-band
channel for workflow inputs (OP-44), so a workflow that requires submission additions is not
obtainable through OAuth.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop import ciba, dtr
from profiles.arap.signed import unverified_parts
from profiles.arop.txn_challenge import TYP
from services.auth import new_api_key
from services.config import REPO_ROOT
from tests.https_receiver import TestCA, https_receiver
from tests.oauth.authorization_server import AuthorizationServer, running
from tests.server import Restartable, RunningServer, free_port
from tests.support import fresh_postgres_schema_sync

RS = "https://broker.example"  # the resource server of the trades, and their token audience
CLIENTS = {"trader-7": "secret-of-trader-7", "trader-9": "secret-of-trader-9"}
INTERVAL = 1
APPROVABLE = 5000  # a buy on alice-main that alice's approval makes possible
# `short`: handles live 3 s (OP-26 expiry); the default server: an hour.
VARIANTS = {"default": "", "short": "handle_ttl = 3\n"}


def agents_bundle(target: Path) -> Path:
    shutil.copytree(REPO_ROOT / "examples" / "agents", target)
    workflows = target / "workflows.toml"
    text = workflows.read_text()
    assert 'request_schema = "schemas/owner_approval.json"\n' in text
    workflows.write_text(text.replace('request_schema = "schemas/owner_approval.json"\n', ""))
    return target


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT the test AS minted: what the sidecar told it to mint (the signature
    is the AS's business)."""
    return unverified_parts(token)[1]


def new_task(deployed: ReviewerSide, before: set[str]) -> str:
    """The one access request opened since `before`, as alice's inbox shows it (the sidecar
    submits before it answers pending)."""
    [task_id] = deployed.inbox() - before
    return task_id


def wait_interval(seconds: float = INTERVAL) -> None:
    """Long enough for the next poll not to be early."""
    time.sleep(seconds + 0.2)


class ReviewerSide:
    """alice's side of a deployment: her inbox and decisions through the reviewer API."""

    reviewer: httpx.Client

    def inbox(self) -> set[str]:
        response = self.reviewer.get("/reviewer/v1/tasks")
        assert response.status_code == 200, response.text
        return {task["id"] for task in response.json()["tasks"]}

    def review(self, task_id: str, verb: str, **body: Any) -> dict[str, Any]:
        response = self.reviewer.post(f"/reviewer/v1/tasks/{task_id}/{verb}", json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.reviewer.get(f"/reviewer/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


class Deployment(ReviewerSide):
    """The service, its AS, and the reviewers' side (alice owns alice-main). `kill` and `restart`
    crash the service and start it again on the same store and port (tests/server.py
    `Restartable`); the AS, its clients and the reviewers' side carry on."""

    def __init__(
        self, base_url: str, as_server: AuthorizationServer, reviewer_key: str, *, store_url: str = "",
        service: Restartable | None = None, server: RunningServer | None = None, runs: ExitStack | None = None,
    ) -> None:
        self.base_url = base_url
        self.store_url = store_url
        self.authorization_server = as_server
        self.reviewer = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {reviewer_key}"}, timeout=10)
        self.service, self.server, self._runs = service, server, runs

    def kill(self) -> None:
        """SIGKILL the service, as a crash would: no shutdown code runs (`RunningServer.kill`)."""
        assert self.server is not None
        self.server.kill()

    def restart(self) -> None:
        """Start the killed service again, on the same store and port; stopped with the rest."""
        assert self.service is not None and self._runs is not None
        self.server = self._runs.enter_context(self.service.start())

    def client(self, client_id: str = "trader-7") -> OAuthClient:
        return OAuthClient(self.authorization_server.issuer, client_id, CLIENTS[client_id])


class OAuthClient:
    """An OAuth client with its own DPoP key (RFC 9449), speaking form-encoded OAuth (TX-1)."""

    def __init__(self, issuer: str, client_id: str, secret: str) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.secret = secret
        self.key = ECKey.generate_key("P-256")
        self.http = httpx.Client(base_url=issuer, timeout=30)

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, path: str, key: ECKey | None = None) -> str:
        key = key or self.key
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
        claims = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": self.issuer + path, "iat": int(time.time())}
        return jwt.encode(header, claims, key)

    def form(self, **members: str) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.secret, **members}

    def trade(
        self, amount: int, portfolio: str = "alice-main", action: str = "buy", *, headers: dict[str, str] | None = None, **members: str
    ) -> httpx.Response:
        """A client_credentials token request for one trade (RAR); `headers` besides DPoP (a
        client attestation), `members` more form parameters (a challenge follow-up's)."""
        details = f'[{{"type": "trade", "identifier": "{portfolio}", "actions": ["{action}"], "amount": {amount}}}]'
        form = self.form(grant_type="client_credentials", authorization_details=details, resource="https://broker.example", **members)
        return self.http.post("/token", data=form, headers={"DPoP": self.proof("/token"), **(headers or {})})

    def poll(self, deferral_code: str, key: ECKey | None = None) -> httpx.Response:
        form = self.form(grant_type=dtr.GRANT_TYPE, deferral_code=deferral_code)
        return self.http.post("/token", data=form, headers={"DPoP": self.proof("/token", key)})

    def refresh(self, refresh_token: str) -> httpx.Response:
        form = self.form(grant_type="refresh_token", refresh_token=refresh_token)
        return self.http.post("/token", data=form, headers={"DPoP": self.proof("/token")})

    def backchannel(self, amount: int, login_hint: str = "alice", portfolio: str = "alice-main", **members: str) -> httpx.Response:
        """A CIBA backchannel authentication request for one buy (OP-50: `openid` + RAR)."""
        details = f'[{{"type": "trade", "identifier": "{portfolio}", "actions": ["buy"], "amount": {amount}}}]'
        form = self.form(scope="openid", login_hint=login_hint, authorization_details=details, **members)
        return self.http.post("/bc-authorize", data=form, headers={"DPoP": self.proof("/bc-authorize")})

    def poll_ciba(self, auth_req_id: str) -> httpx.Response:
        form = self.form(grant_type=ciba.GRANT_TYPE, auth_req_id=auth_req_id)
        return self.http.post("/token", data=form, headers={"DPoP": self.proof("/token")})

    def revoke(self, deferral_code: str, key: ECKey | None = None) -> httpx.Response:
        form = self.form(token=deferral_code, token_type_hint=dtr.DEFERRAL_CODE_HINT)
        return self.http.post("/revoke", data=form, headers={"DPoP": self.proof("/revoke", key)})

    def present(self, challenge: str) -> httpx.Response:
        """TX-37: a transaction challenge at the transaction authorization endpoint."""
        return self.http.post("/txn", data=self.form(transaction_challenge=challenge), headers={"DPoP": self.proof("/txn")})

    def poll_txn(self, transaction_authorization_id: str) -> httpx.Response:
        """TX-40: a poll of the same endpoint."""
        form = self.form(transaction_authorization_id=transaction_authorization_id)
        return self.http.post("/txn", data=form, headers={"DPoP": self.proof("/txn")})


@contextmanager
def deployment(
    backend: str, workdir: Path, oauth: str, *, caller: str = "", access_requests: str = "",
    edit_bundle: Callable[[Path], None] | None = None, as_options: dict[str, Any] | None = None, env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """`caller`, `access_requests`: more TOML for the AS caller and those sections;
    `edit_bundle` changes the bundle copy; `as_options` go to the test AS; `env` to the service."""
    as_key, as_hash = new_api_key()
    alice_key, alice_hash = new_api_key()
    config = (
        f'[[callers]]\nname = "as"\nkey_sha256 = "{as_hash}"\nscopes = ["oauth"]\n{caller}\n'
        f'[[reviewers]]\nname = "alice"\nentity = {{ type = "User", id = "alice" }}\nkey_sha256 = "{alice_hash}"\n\n'
        f"[access_requests]\nworker_interval = 0.2\n{access_requests}\n"
        f"[oauth]\ninterval = {INTERVAL}\nrefresh_token_ttl = 600\n{oauth}"
    )
    with ExitStack() as stack:
        url = stack.enter_context(fresh_postgres_schema_sync()) if backend == "postgres" else f"sqlite:///{workdir / 'arop.db'}"
        bundle = agents_bundle(workdir / "bundle")
        if edit_bundle is not None:
            edit_bundle(bundle)
        service = Restartable(workdir, config=config, env={"AROP_STORE__URL": url, **(env or {})}, args=("--bundle", str(bundle)))
        server = stack.enter_context(service.start())
        as_server = stack.enter_context(running(AuthorizationServer(server.base_url, as_key, CLIENTS, **(as_options or {}))))
        yield Deployment(server.base_url, as_server, alice_key, store_url=url, service=service, server=server, runs=stack)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def deployed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(backend, tmp_path_factory.mktemp(f"oauth-{backend}"), VARIANTS["default"]) as started:
        yield started


@pytest.fixture(scope="module")
def short_deployed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(backend, tmp_path_factory.mktemp(f"oauth-short-{backend}"), VARIANTS["short"]) as started:
        yield started


# -- the resource server of the txn binding, and the CIBA bundle ------------------------------


class ResourceServer:
    """The RS side of TX-31..TX-33: its signing key, published at its txn_challenge_jwks_uri."""

    def __init__(self, issuer: str, key: ECKey) -> None:
        self.issuer, self.key = issuer, key

    def challenge(self, audience: str, *, key: ECKey | None = None, **claims: Any) -> str:
        key = key or self.key
        now = int(time.time())
        body = {
            "iss": self.issuer, "aud": audience, "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(12),
            "txn": str(uuid.uuid4()), "reason": "A buy above your standing limit needs the owner's approval",
            "authorization_details": [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": APPROVABLE}],
            **claims,
        }
        return jwt.encode({"alg": "ES256", "typ": TYP, "kid": key.kid}, body, key)


@pytest.fixture(scope="module")
def rs_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ResourceServer, str, str]]:
    """The RS's key served as a JWK Set over HTTPS with its own CA: (rs, jwks_uri, ca file)."""
    ca = TestCA(tmp_path_factory.mktemp("rs-ca"))
    certificate, key = ca.issue_server(["127.0.0.1"])
    rs = ResourceServer(RS, ECKey.generate_key("P-256", parameters={"kid": "rs-1"}, private=True))
    with https_receiver(certificate, key) as receiver:
        receiver.document = json.dumps({"keys": [{**rs.key.as_dict(private=False), "kid": "rs-1", "use": "sig"}]}).encode()
        receiver.document_headers = {"Content-Type": "application/jwk-set+json", "Cache-Control": "max-age=300"}
        yield rs, f"https://127.0.0.1:{receiver.port}/jwks", str(ca.ca_file)


def txn_oauth(rs_keys: tuple[ResourceServer, str, str], as_port: int, placement: str = "resource") -> str:
    """The [oauth] lines of an AS on `as_port` that accepts the challenges of `rs_keys`' RS."""
    _, jwks_uri, ca_file = rs_keys
    return (
        f'issuer = "http://127.0.0.1:{as_port}"\ntxn_placement = "{placement}"\njwks_ca_file = "{ca_file}"\n'
        f'resource_servers = [{{ issuer = "{RS}", jwks_uri = "{jwks_uri}" }}]\n'
    )


def ciba_bundle(bundle: Path) -> None:
    """The owner's standing access only when she acts herself; through a client, requestable."""
    policies = bundle / "policies.cedar"
    text = policies.read_text()
    owner = "when { resource.owner == principal };"
    assert text.count(owner) == 1
    policies.write_text(
        text.replace(owner, "when { resource.owner == principal && !(context has client_id) };")
        + '\n@id("client-buys-for-owner") @requestable("owner_approval")\n'
        "permit (principal is User, action == Action::\"buy\", resource is Portfolio)\n"
        "when { resource.owner == principal && context has client_id && context.amount <= 50000 };\n"
    )
    schema = bundle / "schema.cedarschema"
    schema.write_text(schema.read_text().replace("    amount: Long,\n", "    amount: Long,\n    client_id?: String,\n"))
    workflows = bundle / "workflows.toml"
    workflows.write_text(workflows.read_text().replace("allow_self_approval = false", "allow_self_approval = true", 1))


@contextmanager
def all_bindings(
    backend: str, workdir: Path, rs_keys: tuple[ResourceServer, str, str], *, variant: str = "default", caller: str = ""
) -> Iterator[Deployment]:
    """One service for every binding: DTR, CIBA (with `ciba_bundle`) and the transaction
    challenge from `rs_keys`' RS (the RS as PEP). `variant`: VARIANTS; `caller` as for `deployment`."""
    port = free_port()
    oauth = txn_oauth(rs_keys, port) + VARIANTS[variant]
    with deployment(backend, workdir, oauth, caller=caller, edit_bundle=ciba_bundle, as_options={"port": port}) as deployed:
        yield deployed
