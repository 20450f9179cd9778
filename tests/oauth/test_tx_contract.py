"""Contract tests of the TX-n rules (oauth-transports.md) of the three transports (DTR, CIBA,
the Transaction Authorization Challenge) and the RFC essentials around them, end to end: a real
OAuth client (httpx, joserfc DPoP proofs) → the test AS → the sidecar API → the PDP and ARS →
the reviewer API. Each test is named after the requirement it proves; rules the matrix of
tests/oauth/test_bindings.py already proves for all three bindings are not repeated here.

Rules that are the AS's job (client authentication, DPoP proof checks, RFC 8693 parameters,
response headers) are proven by the test AS's behaviour on the sidecar contract it relies on;
where the sidecar has a part (the key it is told, the grant it bounds) that part is checked.

One deployment serves all three bindings, as in test_bindings: trader-7 trades on alice-main
(up to 1,000 standing, up to 2,000 auto-approved, up to 50,000 through alice's approval;
alice-frozen never), and asks through CIBA for alice, who approves herself.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop import ciba
from tests.oauth.conftest import APPROVABLE, INTERVAL, RS, Deployment, OAuthClient, ResourceServer, all_bindings, claims_of, wait_interval

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
HANDLE = re.compile(r"[A-Za-z0-9_-]{43}")  # 256 bits, base64url without padding
NQSCHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
AUTO_APPROVED = 1500  # above the 1,000 of standing access, within the workflow's auto_approve


class Contract:
    def __init__(self, deployed: Deployment, rs: ResourceServer) -> None:
        self.deployed, self.rs = deployed, rs
        self.issuer = deployed.authorization_server.issuer
        deployed.authorization_server.ciba_clients["trader-7"] = {"mode": "poll"}

    def challenge(self, **claims: Any) -> str:
        return self.rs.challenge(self.issuer, txn=str(uuid.uuid4()), **claims)

    def task_of(self, before: set[str]) -> str:
        [task_id] = self.deployed.inbox() - before  # the sidecar submits before answering pending
        return task_id

    def sidecar(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """The sidecar API as the AS calls it."""
        headers = {"Authorization": self.deployed.authorization_server.sidecar.headers["authorization"]}
        return httpx.post(f"{self.deployed.base_url}{path}", json=body, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def contract(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    with all_bindings(backend, tmp_path_factory.mktemp(f"tx-contract-{backend}"), rs_keys) as deployed:
        yield Contract(deployed, rs_keys[0])


# -- helpers --------------------------------------------------------------------------------


def details(amount: int, portfolio: str = "alice-main") -> str:
    return json.dumps([{"type": "trade", "identifier": portfolio, "actions": ["buy"], "amount": amount}])


def token_request(client: OAuthClient, key: ECKey | None = None, path: str = "/token", headers: Any = None, **form: Any) -> httpx.Response:
    """Any form-encoded request with client authentication and a DPoP proof (TX-1, TX-2)."""
    return client.http.post(path, data=client.form(**form), headers=headers or {"DPoP": client.proof(path, key)})


def deferred(client: OAuthClient, amount: int) -> dict[str, Any]:
    response = client.trade(amount, completion_mode="deferred")
    assert response.status_code == 400 and response.json()["error"] == "authorization_pending", response.text
    return response.json()  # type: ignore[no-any-return]


def approved_token(contract: Contract, client: OAuthClient, amount: int, approved_until: datetime | None = None) -> dict[str, Any]:
    """A DTR grant approved by alice and redeemed: the token response."""
    before = contract.deployed.inbox()
    pending = deferred(client, amount)
    body: dict[str, Any] = {}
    if approved_until is not None:
        body["approved_until"] = approved_until.isoformat().replace("+00:00", "Z")
    contract.deployed.review(contract.task_of(before), "approve", **body)
    issued = client.poll(pending["deferral_code"])
    assert issued.status_code == 200, issued.text
    return issued.json()  # type: ignore[no-any-return]


def error_of(response: httpx.Response, status: int = 400) -> str:
    """TX-4: a JSON error object with a string `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert NQSCHAR.fullmatch(body.get("error_description", "")), body
    return str(body["error"])


# -- §1 common plumbing (TX-3, TX-4) ---------------------------------------------------------


def test_tx_3_token_responses_are_json_and_never_cached(contract: Contract) -> None:
    client = contract.deployed.client()
    issued = client.trade(500)
    assert issued.status_code == 200 and issued.headers["content-type"].startswith("application/json"), issued.text
    body = issued.json()
    assert isinstance(body["access_token"], str) and body["token_type"] == "DPoP" and isinstance(body["expires_in"], int)
    assert set(body) == {"access_token", "token_type", "expires_in", "authorization_details"}  # TX-5: nothing else
    pending = client.trade(APPROVABLE + 301, completion_mode="deferred")  # TX-9's body carries a handle
    refusal = client.trade(500, portfolio="alice-frozen")
    for response in (issued, pending, refusal):
        assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"


def test_tx_4_invalid_client_is_401_and_errors_are_json(contract: Contract) -> None:
    client = contract.deployed.client()
    wrong = OAuthClient(contract.issuer, client.client_id, "not-the-secret")
    assert error_of(wrong.trade(500), 401) == "invalid_client"
    assert error_of(token_request(client, grant_type="password")) == "unsupported_grant_type"


# -- §2 DTR (TX-7, TX-8, TX-10, TX-15, TX-18, TX-19) ------------------------------------------


def test_tx_7_with_the_opt_in_an_allowed_request_is_still_a_token_at_once(contract: Contract) -> None:
    client = contract.deployed.client()
    before = contract.deployed.inbox()
    issued = client.trade(600, completion_mode="deferred")
    assert issued.status_code == 200 and claims_of(issued.json()["access_token"])["authorization_details"][0]["amount"] == 600
    refused = client.trade(600, portfolio="alice-frozen", completion_mode="deferred")
    assert error_of(refused) == "invalid_authorization_details"  # an error, synchronously
    assert contract.deployed.inbox() == before


@pytest.mark.parametrize(
    ("grant_type", "amount"),
    [
        ("authorization_code", APPROVABLE + 311),
        ("refresh_token", APPROVABLE + 312),
        (TOKEN_EXCHANGE, APPROVABLE + 313),
        ("urn:ietf:params:oauth:grant-type:jwt-bearer", APPROVABLE + 314),
    ],
)
def test_tx_8_the_sidecar_defers_whatever_the_originating_grant(contract: Contract, grant_type: str, amount: int) -> None:
    """At the sidecar API: the AS posts the request of any grant it serves with the opt-in."""
    body = {
        "binding": "dtr", "grant_type": grant_type, "completion_mode": "deferred", "sender": {"dpop_jkt": contract.deployed.client().jkt},
        "client": {"id": "trader-7", "auth_method": "client_secret_post", "public": False},
        "subject": {"type": "Agent", "id": "trader-7"}, "resource": [RS], "authorization_details": json.loads(details(amount)),
    }
    answer = contract.sidecar("/oauth/v1/decide", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "pending" and answer.json()["response"]["body"]["error"] == "authorization_pending"


def test_tx_8_tx_76_a_token_exchange_is_deferred_then_redeemed(contract: Contract) -> None:
    """Through the test AS: RFC 8693 of a standing-access token, opting in to DTR."""
    client = contract.deployed.client()
    subject = client.trade(500).json()["access_token"]
    before = contract.deployed.inbox()
    pending = token_request(
        client, grant_type=TOKEN_EXCHANGE, subject_token=subject, subject_token_type=ACCESS_TOKEN_TYPE,
        authorization_details=details(APPROVABLE + 320), resource=RS, completion_mode="deferred",
    )
    assert error_of(pending) == "authorization_pending" and HANDLE.fullmatch(pending.json()["deferral_code"])
    contract.deployed.review(contract.task_of(before), "approve")
    issued = client.poll(pending.json()["deferral_code"])
    assert issued.status_code == 200, issued.text
    token = claims_of(issued.json()["access_token"])
    assert token["sub"] == "trader-7" and token["authorization_details"][0]["amount"] == APPROVABLE + 320
    assert token["cnf"] == {"jkt": client.jkt}  # TX-18: the originating key


def test_tx_10_tx_21_handles_on_the_wire_carry_256_bits_in_base64url(contract: Contract) -> None:
    """The deferral code, the auth_req_id and the transaction_authorization_id: opaque, ≥128 bits."""
    client = contract.deployed.client()
    deferral_code = deferred(client, APPROVABLE + 330)["deferral_code"]
    backchannel = client.backchannel(APPROVABLE + 331)
    assert backchannel.status_code == 200, backchannel.text
    assert backchannel.json()["expires_in"] > 0 and backchannel.json()["interval"] == INTERVAL  # TX-21: REQUIRED / OPTIONAL
    present = client.present(contract.challenge())
    assert present.status_code == 200, present.text
    handles = [deferral_code, backchannel.json()["auth_req_id"], present.json()["transaction_authorization_id"]]
    assert all(HANDLE.fullmatch(handle) for handle in handles) and len(set(handles)) == 3


def test_tx_15_a_later_pending_poll_repeats_the_raised_interval_only(contract: Contract) -> None:
    client = contract.deployed.client()
    code = deferred(client, APPROVABLE + 340)["deferral_code"]
    assert client.poll(code).json() == {"error": "slow_down"}  # the interval is now INTERVAL + 5
    wait_interval(INTERVAL + 5)
    assert client.poll(code).json() == {"error": "authorization_pending", "interval": INTERVAL + 5}


# -- §3 CIBA (TX-25) ---------------------------------------------------------------------------


def test_tx_25_the_ciba_token_response_carries_an_id_token_and_the_granted_details(contract: Contract) -> None:
    client = contract.deployed.client()
    before = contract.deployed.inbox()
    accepted = client.backchannel(APPROVABLE + 370)
    assert accepted.status_code == 200, accepted.text
    contract.deployed.review(contract.task_of(before), "approve")
    issued = client.poll_ciba(accepted.json()["auth_req_id"])
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert {"access_token", "token_type", "expires_in", "id_token", "authorization_details"} <= set(body)
    assert body["authorization_details"] == json.loads(details(APPROVABLE + 370))
    id_token = claims_of(body["id_token"])
    assert (id_token["sub"], id_token["aud"]) == ("alice", "trader-7") and id_token["at_hash"]
    assert claims_of(body["access_token"])["sub"] == "alice"


# -- §4 the transaction challenge (TX-37, TX-38, TX-46, TX-47) ----------------------------------


def test_tx_37_the_txn_endpoint_needs_a_challenge_or_an_id(contract: Contract) -> None:
    client = contract.deployed.client()
    assert error_of(client.http.post("/txn", data=client.form(), headers={"DPoP": client.proof("/txn")})) == "invalid_request"


def test_tx_38_tx_46_an_auto_approved_challenge_is_answered_with_the_token_at_once(contract: Contract) -> None:
    """(a) of TX-38, D-AROP-10: the workflow approves at once, the service redeems at once."""
    client = contract.deployed.client()
    operation = json.loads(details(AUTO_APPROVED))
    challenge = contract.challenge(authorization_details=operation)
    response = client.present(challenge)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "transaction_authorization_id" not in body and body["token_type"] == "DPoP"
    assert response.headers["cache-control"] == "no-store"
    token = claims_of(body["access_token"])
    assert token["txn"] == claims_of(challenge)["txn"] and token["aud"] == [RS]  # TX-45
    assert body["authorization_details"] == token["authorization_details"] == operation  # TX-44
    assert 0 < body["expires_in"] <= 900 and token["cnf"] == {"jkt": client.jkt}  # TX-46: limited, sender-constrained
    assert "refresh_token" not in body


def test_tx_47_a_txn_token_is_never_exchanged(contract: Contract) -> None:
    client = contract.deployed.client()
    before = contract.deployed.inbox()
    challenge = contract.challenge()
    present = client.present(challenge)
    assert present.status_code == 200, present.text
    contract.deployed.review(contract.task_of(before), "approve")
    form = client.form(transaction_authorization_id=present.json()["transaction_authorization_id"])
    issued = client.http.post("/txn", data=form, headers={"DPoP": client.proof("/txn")})
    assert issued.status_code == 200, issued.text
    exchanged = token_request(client, grant_type=TOKEN_EXCHANGE, subject_token=issued.json()["access_token"], subject_token_type=ACCESS_TOKEN_TYPE)
    assert error_of(exchanged) == "invalid_grant"


# -- §6 RAR (TX-63, TX-65, TX-68) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "NaN",
        '{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": 5}',
        '["trade"]',
        '[{"identifier": "alice-main", "actions": ["buy"], "amount": 5}]',
        '[{"type": 7, "identifier": "alice-main", "actions": ["buy"], "amount": 5}]',
        '[{"type": "no_such_type", "identifier": "alice-main", "actions": ["buy"]}]',
        '[{"type": "trade", "identifier": "alice-main", "actions": "buy", "amount": 5}]',
        '[{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": 5, "undeclared": 1}]',
    ],
)
def test_tx_63_tx_65_malformed_authorization_details_are_invalid_authorization_details(contract: Contract, raw: str) -> None:
    client = contract.deployed.client()
    for extra in ({}, {"completion_mode": "deferred"}):
        response = token_request(client, grant_type="client_credentials", authorization_details=raw, resource=RS, **extra)
        assert error_of(response) == "invalid_authorization_details" and set(response.json()) <= {"error", "error_description"}


def test_tx_68_resource_is_repeatable_and_a_bad_one_is_invalid_target(contract: Contract) -> None:
    client = contract.deployed.client()
    both = token_request(client, grant_type="client_credentials", authorization_details=details(500), resource=[RS, "https://reports.example"])
    assert both.status_code == 200, both.text
    assert claims_of(both.json()["access_token"])["aud"] == [RS, "https://reports.example"]
    for bad in (f"{RS}#orders", "broker.example", "/orders"):
        response = token_request(client, grant_type="client_credentials", authorization_details=details(500), resource=bad)
        assert error_of(response) == "invalid_target"


# -- §7 DPoP (TX-69..TX-72): the AS's checks, and the binding the sidecar keeps ------------------


def _proof(client: OAuthClient, path: str = "/token", *, header: dict[str, Any] | None = None, **overrides: Any) -> str:
    key = client.key
    base = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    body = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": client.issuer + path, "iat": int(time.time()), **overrides}
    return jwt.encode({**base, **(header or {})}, body, key)


def test_tx_69_tx_70_tx_72_the_as_refuses_bad_dpop_proofs(contract: Contract) -> None:
    client = contract.deployed.client()
    replayed = _proof(client)
    assert token_request(client, headers={"DPoP": replayed}, grant_type="client_credentials", authorization_details=details(500)).status_code == 200
    bad = [
        replayed,  # jti seen before
        _proof(client, htu=client.issuer + "/revoke"),
        _proof(client, htm="GET"),
        _proof(client, iat=int(time.time()) - 3600),
        _proof(client, header={"typ": "JWT"}),
        _proof(client, header={"jwk": client.key.as_dict(private=True)}),
        f"{_proof(client)[:-4]}AAAA",  # the signature
    ]
    for proof in bad:
        response = token_request(client, headers={"DPoP": proof}, grant_type="client_credentials", authorization_details=details(500))
        assert error_of(response) == "invalid_dpop_proof", proof
    two = [("DPoP", _proof(client)), ("DPoP", _proof(client))]
    assert error_of(token_request(client, headers=two, grant_type="client_credentials", authorization_details=details(500))) == "invalid_dpop_proof"


def test_tx_71_a_refresh_token_is_bound_to_the_dpop_key(contract: Contract) -> None:
    client = contract.deployed.client()
    body = approved_token(contract, client, APPROVABLE + 380)
    assert body["token_type"] == "DPoP" and claims_of(body["access_token"])["cnf"] == {"jkt": client.jkt}
    other = token_request(client, ECKey.generate_key("P-256"), grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert error_of(other) == "invalid_grant"
    refreshed = client.refresh(body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert claims_of(refreshed.json()["access_token"])["cnf"] == {"jkt": client.jkt}


# -- §8 token exchange (TX-73..TX-76) -----------------------------------------------------------


def test_tx_73_tx_75_the_exchange_needs_its_parameters_and_a_good_subject_token(contract: Contract) -> None:
    client = contract.deployed.client()
    subject = client.trade(500).json()["access_token"]
    cases: list[dict[str, str]] = [
        {"subject_token": subject},  # no subject_token_type
        {"subject_token_type": ACCESS_TOKEN_TYPE},  # no subject_token
        {"subject_token": subject, "subject_token_type": ACCESS_TOKEN_TYPE, "actor_token": subject},  # actor_token without its type
        {"subject_token": "eyJ.not.ours", "subject_token_type": ACCESS_TOKEN_TYPE},
        {"subject_token": subject[:-4] + "AAAA", "subject_token_type": ACCESS_TOKEN_TYPE},
    ]
    for members in cases:
        assert error_of(token_request(client, grant_type=TOKEN_EXCHANGE, **members)) == "invalid_request", members


def test_tx_74_tx_75_tx_76_an_exchanged_token_stays_inside_the_approval(contract: Contract) -> None:
    """Through the AS's RFC 8693 wire (the sidecar API side: test_op_6_op_35_op_37_*): the
    response names its `issued_token_type`, is bounded by `approved_until`, keeps the key, has
    no refresh of its own; a resource outside the grant's audience is invalid_target."""
    client = contract.deployed.client()
    approved_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    granted = approved_token(contract, client, APPROVABLE + 390, approved_until)
    subject = {"subject_token": granted["access_token"], "subject_token_type": ACCESS_TOKEN_TYPE}
    exchanged = token_request(client, grant_type=TOKEN_EXCHANGE, **subject)
    assert exchanged.status_code == 200, exchanged.text
    body = exchanged.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "DPoP" and "refresh_token" not in body
    token = claims_of(body["access_token"])
    assert token["exp"] <= approved_until.timestamp() and token["cnf"] == {"jkt": client.jkt} and token["aud"] == [RS]
    assert token["authorization_details"] == granted["authorization_details"]
    outside = token_request(client, grant_type=TOKEN_EXCHANGE, resource="https://elsewhere.example", **subject)
    assert error_of(outside) == "invalid_target"  # TX-75 (the sidecar's other refusals: test_op_6_op_35_op_37_*)
    other_client = contract.deployed.client("trader-9")  # D-AROP-14: another party needs its own approval
    assert error_of(token_request(other_client, grant_type=TOKEN_EXCHANGE, **subject)) == "invalid_grant"


# -- §9 revocation (TX-77, TX-78) ----------------------------------------------------------------------


def test_tx_77_tx_78_revocation_needs_a_token_and_finds_a_deferral_code_without_its_hint(contract: Contract) -> None:
    """An unknown token's 200: test_op_65_*; a revocation proving another key: test_op_61_op_64_*."""
    client = contract.deployed.client()
    assert error_of(token_request(client, path="/revoke")) == "invalid_request"
    for hint in ({}, {"token_type_hint": "access_token"}):
        before = contract.deployed.inbox()
        code = deferred(client, APPROVABLE + 400 + len(hint))["deferral_code"]
        task_id = contract.task_of(before)
        revoked = token_request(client, path="/revoke", token=code, **hint)
        assert (revoked.status_code, revoked.content) == (200, b"")
        assert contract.deployed.task(task_id)["status"] == "cancelled", hint
        assert client.poll(code).json() == {"error": "access_denied"}


# -- §10 remediation (TX-83) -------------------------------------------------------------------------


def test_tx_83_an_unsigned_remediation_asserts_nothing(contract: Contract) -> None:
    """The client may send what an RS's `authorization_remediation` suggested; the sidecar
    evaluates it like any request (AS as PEP): a forbidden operation stays refused, and no
    access request is opened for it."""
    client = contract.deployed.client()
    remediation = base64.urlsafe_b64encode(json.dumps({"authorization_details": json.loads(details(APPROVABLE, "alice-frozen"))}).encode()).decode()
    before = contract.deployed.inbox()
    response = client.trade(APPROVABLE, portfolio="alice-frozen", completion_mode="deferred", authorization_remediation=remediation)
    assert error_of(response) == "invalid_authorization_details"
    time.sleep(0.3)
    assert contract.deployed.inbox() == before
    body = {
        "binding": "dtr", "grant_type": "client_credentials", "completion_mode": "deferred", "sender": {},
        "client": {"id": "trader-7", "auth_method": "client_secret_post", "public": False},
        "subject": {"type": "Agent", "id": "trader-7"}, "authorization_details": json.loads(details(APPROVABLE, "alice-frozen")),
        "authorization_remediation": remediation,
    }
    refused = contract.sidecar("/oauth/v1/decide", body)
    assert refused.status_code == 400 and "authorization_remediation" in refused.json()["detail"]


def test_tx_24_ciba_redemptions_of_unknown_ids_are_invalid_grant(contract: Contract) -> None:
    client = contract.deployed.client()
    form = client.form(grant_type=ciba.GRANT_TYPE, auth_req_id="no-such-request")
    assert error_of(client.http.post("/token", data=form, headers={"DPoP": client.proof("/token")})) == "invalid_grant"
