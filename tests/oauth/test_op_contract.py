"""Contract tests of spec/arop.md OP-n MUSTs end to end, for the requirements the binding flows
(test_dtr_flow.py, test_ciba_flow.py, test_txn_flow.py, test_bindings.py) do not prove by name:
a real OAuth client with DPoP proofs → the test AS → the sidecar → the PDP and ARS → the reviewer
API, on one deployment that serves all three bindings (DTR, CIBA poll, txn with the RS as PEP)
and has an admin caller to change entity data between approval and issuance.

Where a rule is about what the AS posts (public clients, authentication methods), the test posts
to the sidecar API as the AS would. Named after the requirement each test proves.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop.txn_challenge import TYP
from services.auth import new_api_key
from tests.oauth.conftest import APPROVABLE, RS, VARIANTS, Deployment, OAuthClient, ResourceServer, all_bindings, claims_of, deployment, new_task, wait_interval

CLIENT_AUTH = "client_secret_post"
# OP-1: what a client may see. Errors: RFC 6749 §5.2 plus DTR's pending members (TX-9, TX-15)
# and the documented remediation extension (DESIGN §5, D-AROP-4). Tokens: RFC 6749 §5.1, RAR,
# RFC 8693, CIBA.
ERROR_MEMBERS = frozenset({"error", "error_description", "interval", "deferral_code", "expires_in", "approval_obtainable"})
TOKEN_MEMBERS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope", "authorization_details", "issued_token_type", "id_token"}
)
# What the test AS writes into an access token: the grant's members, nothing of its own making.
CLAIMS = frozenset({"iss", "sub", "client_id", "iat", "exp", "jti", "aud", "authorization_details", "scope", "cnf", "txn", "act"})
# OP-2, OP-70: AuthZEN and ARAP material, approvers, internal state and progress.
INTERNAL_MEMBERS = frozenset(
    {
        "evaluation_id", "binding_token", "access_request", "denial", "approval", "approved_until", "approved_at", "task",
        "task_id", "status", "status_endpoint", "links", "result", "mode", "progress", "awaiting", "approver", "approvers",
        "decisions", "step", "steps", "template", "reason", "policies", "requester", "state",
    }
)


class Contract:
    def __init__(self, deployed: Deployment, rs: ResourceServer, admin_key: str) -> None:
        self.deployed, self.rs = deployed, rs
        self.issuer = deployed.authorization_server.issuer
        self.admin = httpx.Client(base_url=deployed.base_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)

    def challenge(self, **claims: Any) -> str:
        return self.rs.challenge(self.issuer, **claims)

    def sidecar(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call to the sidecar API as the AS makes it."""
        headers = {"Authorization": self.deployed.authorization_server.sidecar.headers["authorization"]}
        response = httpx.post(f"{self.deployed.base_url}{path}", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def portfolio(self, portfolio_id: str, *, frozen: bool = False) -> None:
        """Alice's portfolio `portfolio_id` in the information point (admin API)."""
        properties: dict[str, Any] = {"owner": {"__entity": {"type": "User", "id": "alice"}}}
        if frozen:
            properties["frozen"] = True
        response = self.admin.post("/admin/v1/entities", json={"entities": [{"type": "Portfolio", "id": portfolio_id, "properties": properties}]})
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def contract(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    admin_key, admin_hash = new_api_key()
    admin = f'\n[[callers]]\nname = "admin"\nkey_sha256 = "{admin_hash}"\nscopes = ["admin"]\n'
    with all_bindings(backend, tmp_path_factory.mktemp(f"op-contract-{backend}"), rs_keys, caller=admin) as deployed:
        yield Contract(deployed, rs_keys[0], admin_key)


def with_request_schema(bundle: Path) -> None:
    """The trading workflow as shipped: a submission must carry a business justification."""
    workflows = bundle / "workflows.toml"
    text = workflows.read_text()
    assert "request_schema" not in text and text.count('auto_approve = "context.amount <= 2000"\n') == 1
    workflows.write_text(text.replace('auto_approve = "context.amount <= 2000"\n', 'auto_approve = "context.amount <= 2000"\nrequest_schema = "schemas/owner_approval.json"\n'))


@pytest.fixture(scope="module")
def schema_deployed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(backend, tmp_path_factory.mktemp(f"op-44-{backend}"), VARIANTS["default"], edit_bundle=with_request_schema) as deployed:
        yield deployed


# -- the client's side ---------------------------------------------------------------------


def request_token(client: OAuthClient, details: list[dict[str, Any]], **members: str) -> httpx.Response:
    """A client_credentials token request for `details` (RAR)."""
    form = client.form(grant_type="client_credentials", authorization_details=json.dumps(details), resource=RS, **members)
    return client.http.post("/token", data=form, headers={"DPoP": client.proof("/token")})


def trade(amount: int, portfolio: str = "alice-main", actions: tuple[str, ...] = ("buy",)) -> dict[str, Any]:
    return {"type": "trade", "identifier": portfolio, "actions": list(actions), "amount": amount}


def deferred(client: OAuthClient, amount: int, portfolio: str = "alice-main") -> dict[str, Any]:
    response = client.trade(amount, portfolio=portfolio, completion_mode="deferred")
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "deferral_code", "expires_in", "interval"} and body["error"] == "authorization_pending", body
    return body  # type: ignore[no-any-return]


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def instant(seconds: int) -> tuple[datetime, str]:
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    return at, at.isoformat().replace("+00:00", "Z")


# -- OP-1, OP-2, OP-70, OP-71, OP-72: what every answer holds ------------------------------


def _walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (member name, value) in a JSON document, at any depth."""
    if isinstance(value, dict):
        for name, member in value.items():
            yield name, member
            yield from _walk(member)
    elif isinstance(value, list):
        for item in value:
            yield None, item
            yield from _walk(item)


def nothing_internal(answers: list[httpx.Response], *, hidden: list[str], approver: str | None) -> None:
    """OP-1: only transport members; OP-2/OP-70: no AuthZEN or ARAP material, task, approval,
    progress or approver anywhere (bodies and the token's claims); OP-72: no description."""
    documents: list[Any] = []
    for response in answers:
        if response.status_code == 200 and not response.content:
            continue  # RFC 7009 revocation answer
        body = response.json()
        if response.status_code == 200 and "access_token" in body:
            assert set(body) <= TOKEN_MEMBERS, body
            claims = claims_of(body["access_token"])
            assert set(claims) <= CLAIMS, claims
            documents.append(claims)
        elif response.status_code == 400:
            assert set(body) <= ERROR_MEMBERS and "error_description" not in body, body
        documents.append(body)
    for document in documents:
        for name, value in _walk(document):
            assert name not in INTERNAL_MEMBERS, (name, document)
            if isinstance(value, str):
                assert not any(secret in value for secret in hidden), (value, document)
                assert approver is None or value not in (approver, f'User::"{approver}"'), (value, document)


def test_op_1_op_2_op_70_op_72_dtr_answers_hold_transport_members_only(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    answers: list[httpx.Response] = []
    before = deployed.inbox()
    first = client.trade(6001, completion_mode="deferred")
    answers.append(first)
    approved_task = new_task(deployed, before)
    code = first.json()["deferral_code"]
    wait_interval()
    answers.append(client.poll(code))  # authorization_pending
    answers.append(client.poll(code))  # slow_down
    deployed.review(approved_task, "approve", comment="approved by alice, step owner")
    answers += [client.poll(code), client.poll(code)]  # the token, then invalid_grant

    before = deployed.inbox()
    denied = deferred(client, 6002)
    denied_task = new_task(deployed, before)
    deployed.review(denied_task, "deny", reason="SECRET-denial-reason-6002")
    answers += [client.poll(denied["deferral_code"]), client.revoke(denied["deferral_code"])]
    answers += [client.trade(6003), client.trade(6004, portfolio="alice-frozen", completion_mode="deferred")]

    assert [r.status_code for r in answers] == [400, 400, 400, 200, 400, 400, 200, 400, 400]
    assert [r.json()["error"] for r in answers if r.status_code == 400] == [
        "authorization_pending", "authorization_pending", "slow_down", "invalid_grant", "access_denied",
        "invalid_authorization_details", "invalid_authorization_details",
    ]
    hidden = [approved_task, denied_task, "SECRET-denial-reason", "approved by alice"]
    nothing_internal(answers, hidden=hidden, approver="alice")


def test_op_1_op_2_op_70_op_71_op_72_ciba_answers_echo_nothing_but_the_clients_own_request(contract: Contract) -> None:
    """OP-71: the hinted user is the principal (OP-49) and appears as `sub`; nothing of the
    approval, nor of the ARS's view of the request, comes back."""
    deployed, client = contract.deployed, contract.deployed.client()
    answers: list[httpx.Response] = []
    before = deployed.inbox()
    accepted = client.backchannel(6101, binding_message="Buy 6101 for alice-main")
    assert set(ok(accepted)) == {"auth_req_id", "expires_in", "interval"}
    answers.append(accepted)
    approved_task = new_task(deployed, before)
    auth_req_id = accepted.json()["auth_req_id"]
    wait_interval()
    answers.append(client.poll_ciba(auth_req_id))
    deployed.review(approved_task, "approve", comment="SECRET-approver-comment")
    issued = client.poll_ciba(auth_req_id)
    assert claims_of(ok(issued)["access_token"])["sub"] == "alice" and claims_of(issued.json()["access_token"])["act"] == {"sub": "trader-7"}
    answers += [issued, client.poll_ciba(auth_req_id)]

    before = deployed.inbox()
    denied = client.backchannel(6102, binding_message="Buy 6102 for alice-main")
    denied_task = new_task(deployed, before)
    deployed.review(denied_task, "deny", reason="SECRET-denial-reason-6102")
    answers += [denied, client.poll_ciba(denied.json()["auth_req_id"])]

    assert [r.json().get("error") for r in answers if r.status_code == 400] == ["authorization_pending", "invalid_grant", "access_denied"]
    hidden = [approved_task, denied_task, "SECRET-"]
    nothing_internal(answers, hidden=hidden, approver=None)


def test_op_49_op_50_the_hinted_user_is_the_principal_and_openid_is_required(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    ok(client.backchannel(6103))
    task = deployed.task(new_task(deployed, before))
    assert task["subject"]["type"] == "User" and task["subject"]["id"] == "alice"  # the login_hint user, who approves
    assert task["subject"]["properties"]["act"] == {"sub": "trader-7"}  # the client acts for her
    details = json.dumps([trade(6104)])
    without_openid = client.form(scope="portfolio:read", login_hint="alice", authorization_details=details)
    refused = client.http.post("/bc-authorize", data=without_openid, headers={"DPoP": client.proof("/bc-authorize")})
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
    time.sleep(0.3)
    assert len(deployed.inbox() - before) == 1


def test_op_1_op_2_op_70_op_72_txn_answers_hold_transport_members_only(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    answers: list[httpx.Response] = []
    before = deployed.inbox()
    accepted = client.present(contract.challenge())
    assert set(ok(accepted)) == {"transaction_authorization_id", "expires_in", "interval"}
    approved_task = new_task(deployed, before)
    handle = accepted.json()["transaction_authorization_id"]
    wait_interval()
    answers += [accepted, client.poll_txn(handle)]
    deployed.review(approved_task, "approve")
    answers += [client.poll_txn(handle), client.poll_txn(handle)]

    before = deployed.inbox()
    denied = client.present(contract.challenge())
    denied_task = new_task(deployed, before)
    deployed.review(denied_task, "deny", reason="SECRET-denial-reason-txn")
    answers += [denied, client.poll_txn(denied.json()["transaction_authorization_id"])]

    assert [r.json()["error"] for r in answers if r.status_code == 400] == ["authorization_pending", "invalid_grant", "access_denied"]
    nothing_internal(answers, hidden=[approved_task, denied_task, "SECRET-"], approver="alice")


# -- OP-6, OP-35, OP-36, OP-37, OP-45: the approval bounds everything after it -------------


def test_op_6_op_35_op_37_an_exchange_is_bounded_by_the_recorded_approval(contract: Contract) -> None:
    """The AS asks `exchange-check` for a token from an approval: the output never outlives
    `approved_until` (recorded with the grant, OP-37), never broadens, never refreshes, and
    after `approved_until` it is invalid_grant."""
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    pending = deferred(client, 6201)
    until, until_text = instant(6)
    deployed.review(new_task(deployed, before), "approve", approved_until=until_text)
    issued = ok(client.poll(pending["deferral_code"]))
    grant_id = deployed.authorization_server.refresh_tokens[issued["refresh_token"]]["grant_id"]
    check = {"grant_id": grant_id, "client_id": client.client_id, "auth_method": CLIENT_AUTH, "sender": {"dpop_jkt": client.jkt}}

    answer = contract.sidecar("/oauth/v1/exchange-check", check)
    assert answer["outcome"] == "allow", answer
    grant = answer["grant"]
    assert datetime.fromisoformat(grant["expires_at"]) <= until and grant["expires_in"] <= 6
    assert grant["refresh_allowed"] is False and "refresh_expires_at" not in grant
    assert grant["authorization_details"] == [trade(6201)] and grant["cnf"] == {"jkt": client.jkt}

    broader = {**check, "authorization_details": [trade(6201, actions=("buy", "sell"))]}
    assert contract.sidecar("/oauth/v1/exchange-check", broader)["error"] == "invalid_authorization_details"
    assert contract.sidecar("/oauth/v1/exchange-check", {**check, "resource": ["https://elsewhere.example"]})["error"] == "invalid_target"
    other_key = {**check, "sender": {"dpop_jkt": ECKey.generate_key("P-256").thumbprint()}}
    assert contract.sidecar("/oauth/v1/exchange-check", other_key)["error"] == "invalid_grant"

    time.sleep(max(0.0, until.timestamp() - time.time()) + 0.5)
    late = contract.sidecar("/oauth/v1/exchange-check", check)
    assert (late["outcome"], late["error"]) == ("error", "invalid_grant")


def test_op_36_every_refresh_is_reevaluated_and_a_denial_then_is_invalid_grant(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    contract.portfolio("alice-side-36")
    before = deployed.inbox()
    pending = deferred(client, APPROVABLE, portfolio="alice-side-36")
    deployed.review(new_task(deployed, before), "approve")
    issued = ok(client.poll(pending["deferral_code"]))
    assert ok(client.refresh(issued["refresh_token"]))["authorization_details"] == [trade(APPROVABLE, "alice-side-36")]
    contract.portfolio("alice-side-36", frozen=True)  # a forbid now matches, the approval notwithstanding
    assert error(client.refresh(issued["refresh_token"])) == "invalid_grant"


def test_op_45_an_approval_whose_reevaluation_denies_is_access_denied(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    contract.portfolio("alice-side-45")
    before = deployed.inbox()
    pending = deferred(client, APPROVABLE, portfolio="alice-side-45")
    deployed.review(new_task(deployed, before), "approve")
    contract.portfolio("alice-side-45", frozen=True)
    for _ in range(2):
        assert error(client.poll(pending["deferral_code"])) == "access_denied"


# -- OP-9, OP-24: one binding, one endpoint ------------------------------------------------


def test_op_9_op_24_a_handle_is_usable_only_at_its_own_bindings_endpoint(contract: Contract) -> None:
    client = contract.deployed.client()
    deferral_code = deferred(client, 6301)["deferral_code"]
    auth_req_id = ok(client.backchannel(6302))["auth_req_id"]
    transaction_id = ok(client.present(contract.challenge()))["transaction_authorization_id"]
    wait_interval()
    assert error(client.poll_ciba(deferral_code)) == "invalid_grant"
    assert error(client.poll_txn(deferral_code)) == "invalid_grant"
    assert error(client.poll(auth_req_id)) == "invalid_grant"
    assert error(client.poll_txn(auth_req_id)) == "invalid_grant"
    assert error(client.poll(transaction_id)) == "invalid_grant"
    assert error(client.poll_ciba(transaction_id)) == "invalid_grant"
    # each is still pending where it belongs: the misuse changed nothing
    assert error(client.poll(deferral_code)) == "authorization_pending"
    assert error(client.poll_ciba(auth_req_id)) == "authorization_pending"
    assert error(client.poll_txn(transaction_id)) == "authorization_pending"


# -- OP-10, OP-11: the sidecar's own access request, no other AS ---------------------------


def test_op_10_the_access_request_is_submitted_in_process_by_the_sidecar_as_the_as(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    deferred(client, 6401)
    task = deployed.task(new_task(deployed, before))
    assert task["requester"] == "as" and task["subject"] == {"type": "Agent", "id": "trader-7"}
    assert task["context"]["client_id"] == "trader-7" and task["context"]["amount"] == 6401


def test_op_11_a_challenge_for_another_as_is_refused_not_acted_on(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    elsewhere = contract.rs.challenge("https://another-as.example")
    assert error(client.present(elsewhere)) == "invalid_request"
    time.sleep(0.3)
    assert deployed.inbox() == before


# -- OP-44: the workflow's inputs come from the original request ---------------------------


def test_op_44_a_workflow_input_travels_in_the_request_itself_or_the_access_is_not_obtainable(schema_deployed: Deployment) -> None:
    """AROP has no in-band input channel: a submission the workflow's request schema refuses
    leaves the access unobtainable (the OP-14 error, no access request, D-AROP-21); the same
    input sent in `authorization_details` reaches the access request."""
    client = schema_deployed.client()
    before = schema_deployed.inbox()
    bare = request_token(client, [trade(6901)], completion_mode="deferred")
    assert (bare.status_code, bare.json()) == (400, {"error": "invalid_authorization_details"})
    time.sleep(0.3)
    assert schema_deployed.inbox() == before
    justified = {**trade(6902), "business_justification": "Rebalance after the Q4 dividend"}
    pending = request_token(client, [justified], completion_mode="deferred")
    assert error(pending) == "authorization_pending"
    task = schema_deployed.task(new_task(schema_deployed, before))
    assert task["context"]["business_justification"] == "Rebalance after the Q4 dividend"


# -- OP-38, OP-41: the whole request is one unit -------------------------------------------


def test_op_38_op_41_several_details_and_a_scope_are_deferred_and_issued_as_one_unit(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    read = {"type": "portfolio_read", "identifier": "alice-main"}
    alone = ok(request_token(client, [read], scope="portfolio:read"))  # standing access on its own
    assert alone["authorization_details"] == [read]

    before = deployed.inbox()
    details = [read, trade(6501)]
    pending = request_token(client, details, scope="portfolio:read", completion_mode="deferred")
    assert error(pending) == "authorization_pending" and "access_token" not in pending.json()  # not the allowed subset now
    task_id = new_task(deployed, before)
    assert [(i["resource"]["id"], i["action"]["name"]) for i in deployed.task(task_id)["items"]] == [("alice-main", "buy")]
    deployed.review(task_id, "approve")
    issued = ok(client.poll(pending.json()["deferral_code"]))
    assert issued["authorization_details"] == details and issued["scope"] == "portfolio:read"  # the full set


def test_op_38_one_unobtainable_pair_refuses_the_whole_request(contract: Contract) -> None:
    """A buy is requestable, a sell of that size is not: nothing is deferred, nothing issued."""
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    refused = request_token(client, [trade(6502, actions=("buy", "sell"))], completion_mode="deferred")
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_authorization_details"})
    time.sleep(0.3)
    assert deployed.inbox() == before


# -- OP-47, OP-53, OP-61, OP-62: clients, methods and keys ---------------------------------


def _decide(binding: str, *, public: bool, sender: dict[str, str], **members: Any) -> dict[str, Any]:
    return {
        "binding": binding, "grant_type": "client_credentials", "sender": sender,
        "client": {"id": "trader-7", "auth_method": "none" if public else CLIENT_AUTH, "public": public},
        "subject": {"type": "Agent", "id": "trader-7"}, **members,
    }


@pytest.mark.parametrize("sender", [{}, {"x5t_s256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}])
def test_op_47_op_61_tx_18_a_public_client_without_dpop_is_never_deferred(contract: Contract, sender: dict[str, str]) -> None:
    deployed = contract.deployed
    before = deployed.inbox()
    dtr = _decide("dtr", public=True, sender=sender, completion_mode="deferred", resource=[RS], authorization_details=[trade(6601)])
    txn = _decide("txn", public=True, sender=sender, transaction_challenge=contract.challenge())
    for body in (dtr, txn):
        answer = contract.sidecar("/oauth/v1/decide", body)
        assert answer == {"outcome": "error", "status": 400, "error": "invalid_request", "error_description": "DPoP required for deferred completion"}
    time.sleep(0.3)
    assert deployed.inbox() == before  # no access request was opened
    with_dpop = {**dtr, "sender": {"dpop_jkt": ECKey.generate_key("P-256").thumbprint()}}
    assert contract.sidecar("/oauth/v1/decide", with_dpop)["outcome"] == "pending"


def test_op_53_ciba_refuses_public_clients(contract: Contract) -> None:
    deployed = contract.deployed
    before = deployed.inbox()
    body = _decide(
        "ciba", public=True, sender={"dpop_jkt": ECKey.generate_key("P-256").thumbprint()}, scope="openid",
        authorization_details=[trade(6602)], ciba={"delivery_mode": "poll", "login_hint": "alice"},
    )
    body.update(subject={"type": "User", "id": "alice"}, actor={"sub": "trader-7"}, grant_type="urn:openid:params:grant-type:ciba")
    answer = contract.sidecar("/oauth/v1/decide", body)
    assert (answer["outcome"], answer["error"]) == ("error", "unauthorized_client")
    time.sleep(0.3)
    assert deployed.inbox() == before


def test_op_62_a_redemption_by_the_same_client_authenticated_otherwise_is_invalid_grant(contract: Contract) -> None:
    client = contract.deployed.client()
    code = deferred(client, 6603)["deferral_code"]
    redeem = {"binding": "dtr", "handle": code, "client_id": client.client_id, "auth_method": "private_key_jwt", "sender": {"dpop_jkt": client.jkt}}
    assert contract.sidecar("/oauth/v1/redeem", redeem) == {"outcome": "error", "status": 400, "error": "invalid_grant"}
    recorded = contract.sidecar("/oauth/v1/redeem", {**redeem, "auth_method": CLIENT_AUTH})
    assert recorded["error"] in ("authorization_pending", "slow_down")  # the recorded method still works


# -- OP-54, OP-61, OP-64, OP-65, OP-66: cancellation -----------------------------------------


def test_op_61_op_64_a_revocation_proving_another_key_has_no_effect(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    code = deferred(client, 6701)["deferral_code"]
    task_id = new_task(deployed, before)
    foreign = client.revoke(code, key=ECKey.generate_key("P-256"))
    assert (foreign.status_code, foreign.content) == (200, b"")
    assert deployed.task(task_id)["status"] == "pending"
    wait_interval()
    assert error(client.poll(code)) == "authorization_pending"


def test_op_54_op_66_ciba_and_txn_requests_have_no_client_cancellation(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    before = deployed.inbox()
    auth_req_id = ok(client.backchannel(6702))["auth_req_id"]
    ciba_task = new_task(deployed, before)
    before = deployed.inbox()
    transaction_id = ok(client.present(contract.challenge()))["transaction_authorization_id"]
    txn_task = new_task(deployed, before)
    for handle in (auth_req_id, transaction_id):
        revoked = client.revoke(handle)
        assert (revoked.status_code, revoked.content) == (200, b"")
    assert deployed.task(ciba_task)["status"] == deployed.task(txn_task)["status"] == "pending"
    wait_interval()
    assert error(client.poll_ciba(auth_req_id)) == "authorization_pending"
    assert error(client.poll_txn(transaction_id)) == "authorization_pending"


def test_op_65_revocation_answers_200_whether_or_not_the_code_is_known(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    for unknown in ("never-issued", "x" * 43):
        response = client.revoke(unknown)
        assert (response.status_code, response.content) == (200, b"")
    before = deployed.inbox()
    code = deferred(client, 6703)["deferral_code"]
    deployed.review(new_task(deployed, before), "approve")
    ok(client.poll(code))
    for _ in range(2):  # an issued code, twice: still 200, and the grant stands
        response = client.revoke(code)
        assert (response.status_code, response.content) == (200, b"")
    assert error(client.poll(code)) == "invalid_grant"


# -- OP-69: no raw logging by default ------------------------------------------------------


def test_op_69_requested_details_handles_and_challenges_are_not_logged(contract: Contract) -> None:
    deployed, client = contract.deployed, contract.deployed.client()
    secret = "SECRET-69-rebalance-justification"
    before = deployed.inbox()
    pending = request_token(client, [{**trade(7001), "business_justification": secret}], completion_mode="deferred")
    code = pending.json()["deferral_code"]
    deployed.review(new_task(deployed, before), "approve")
    issued = ok(client.poll(code))
    challenge = contract.challenge()
    transaction_id = ok(client.present(challenge))["transaction_authorization_id"]
    assert error(client.trade(7002, portfolio="alice-frozen")) == "invalid_authorization_details"
    time.sleep(0.5)
    assert deployed.server is not None
    logged = deployed.server.log.read_text(errors="replace")
    assert '"message": "starting"' in logged  # the service's own log, at its default level
    for raw in (secret, code, issued["access_token"], issued["refresh_token"], challenge, transaction_id, challenge.split(".")[1]):
        assert raw not in logged


# -- OP-72: descriptions stay minimal and well formed --------------------------------------


def test_op_72_a_challenge_with_hostile_header_values_is_a_well_formed_invalid_request(contract: Contract) -> None:
    client = contract.deployed.client()
    key = ECKey.generate_key("P-256", private=True)
    now = int(time.time())
    claims = {
        "iss": RS + '/"' + "x" * 2000, "aud": contract.issuer, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()),
        "txn": str(uuid.uuid4()), "reason": "needs approval", "authorization_details": [trade(6801)],
    }
    hostile = jwt.encode({"alg": "ES256", "typ": TYP, "kid": 'rs "1" \\ caf\u00e9'}, claims, key)
    response = client.present(hostile)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request" and set(body) <= {"error", "error_description"}
    description = body.get("error_description", "")
    assert len(description) <= 160 and all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)
