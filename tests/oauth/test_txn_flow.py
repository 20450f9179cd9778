"""The Transaction Authorization Challenge binding end to end (spec/arop.md §11.3, OP-7, OP-8,
OP-56..OP-60; oauth-transports.md §4, TX-32..TX-46): a resource server signs challenges (ES256,
`typ` txn-authz-challenge+jwt) with a key it publishes as a JWK Set over HTTPS; a real OAuth
client presents them with DPoP at the test AS's transaction authorization endpoint; the AS
relays to the sidecar; alice reviews. Named after the requirement each test proves.

The trading vocabulary of tests/oauth: a buy of 5,000 on alice-main is requestable through
alice's approval; alice-frozen is forbidden outright.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.oauth.conftest import APPROVABLE, INTERVAL, RS, Deployment, OAuthClient, ResourceServer, claims_of, deployment, new_task, txn_oauth, wait_interval
from tests.server import free_port


class TxnDeployment:
    def __init__(self, deployed: Deployment, rs: ResourceServer) -> None:
        self.deployed, self.rs = deployed, rs
        self.issuer = deployed.authorization_server.issuer

    def challenge(self, **claims: Any) -> str:
        return self.rs.challenge(self.issuer, **claims)


def accepted(client: OAuthClient, challenge: str) -> dict[str, Any]:
    response = client.present(challenge)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"transaction_authorization_id", "expires_in", "interval"}, body
    return body  # type: ignore[no-any-return]


def refused(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def _txn_deployment(backend: str, workdir: Path, rs_keys: tuple[ResourceServer, str, str], placement: str) -> Iterator[TxnDeployment]:
    port = free_port()
    with deployment(backend, workdir, txn_oauth(rs_keys, port, placement), as_options={"port": port}) as deployed:
        yield TxnDeployment(deployed, rs_keys[0])


@pytest.fixture(scope="module")
def resource_pep(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TxnDeployment]:
    """OP-7: the RS is the PEP."""
    yield from _txn_deployment(backend, tmp_path_factory.mktemp(f"txn-resource-{backend}"), rs_keys, "resource")


@pytest.fixture(scope="module")
def both_pep(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TxnDeployment]:
    """OP-8: the RS and the AS's own policy."""
    yield from _txn_deployment(backend, tmp_path_factory.mktemp(f"txn-both-{backend}"), rs_keys, "both")


# -- the flow ------------------------------------------------------------------------------


def test_op_7_op_58_op_59_tx_38_tx_44_tx_45_resource_pep_pending_polls_approval_then_a_txn_token(resource_pep: TxnDeployment) -> None:
    approved_txn_flow(resource_pep)


def test_op_8_op_58_op_59_both_pep_a_requestable_operation_flows_the_same(both_pep: TxnDeployment) -> None:
    approved_txn_flow(both_pep)


def approved_txn_flow(txn: TxnDeployment) -> None:
    """Pending → polls → approval in the reviewer API → a token with `txn`, aud = the RS."""
    client = txn.deployed.client()
    before = txn.deployed.inbox()
    challenge = txn.challenge()
    pending = accepted(client, challenge)
    assert pending["interval"] == INTERVAL and 0 < pending["expires_in"] <= 3600
    task_id = new_task(txn.deployed, before)
    shown = json.dumps(txn.deployed.task(task_id))
    assert claims_of(challenge)["reason"] in shown and claims_of(challenge)["txn"] in shown  # D-AROP-23: the reviewer sees them
    wait_interval()
    still = client.poll_txn(pending["transaction_authorization_id"])
    assert still.status_code == 400 and still.json() == {"error": "authorization_pending"}  # TX-40: the bare error

    approved_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    txn.deployed.review(task_id, "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))
    issued = client.poll_txn(pending["transaction_authorization_id"])
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert "refresh_token" not in body and body["token_type"] == "DPoP"  # OP-59: no refresh
    claims = claims_of(body["access_token"])
    challenged = claims_of(challenge)
    assert claims["txn"] == challenged["txn"] and claims["aud"] == [RS]  # TX-45
    assert claims["authorization_details"] == challenged["authorization_details"] == body["authorization_details"]
    assert claims["cnf"] == {"jkt": client.jkt} and claims["exp"] <= approved_until.timestamp()
    assert refused(client.poll_txn(pending["transaction_authorization_id"])) == "invalid_grant"  # OP-25


def test_op_60_the_same_txn_again_from_the_same_client_gets_the_same_id(resource_pep: TxnDeployment) -> None:
    client = resource_pep.deployed.client()
    before = resource_pep.deployed.inbox()
    txn_id = str(uuid.uuid4())
    first = resource_pep.challenge(txn=txn_id)
    pending = accepted(client, first)
    assert accepted(client, first)["transaction_authorization_id"] == pending["transaction_authorization_id"]  # resent
    again = resource_pep.challenge(txn=txn_id)  # a new challenge (new jti) for the same transaction
    assert accepted(client, again)["transaction_authorization_id"] == pending["transaction_authorization_id"]
    new_task(resource_pep.deployed, before)  # exactly one access request


def test_tx_43_the_same_txn_from_another_client_is_invalid_request(resource_pep: TxnDeployment) -> None:
    txn_id = str(uuid.uuid4())
    accepted(resource_pep.deployed.client("trader-7"), resource_pep.challenge(txn=txn_id))
    other = resource_pep.deployed.client("trader-9")
    assert refused(other.present(resource_pep.challenge(txn=txn_id))) == "invalid_request"


def test_tx_43_d_arop_29_the_same_txn_from_the_same_client_with_another_key_is_invalid_request(resource_pep: TxnDeployment) -> None:
    """The handle is bound to the first presenter's key (OP-24): another key could not redeem it,
    so it is not handed out again."""
    txn_id = str(uuid.uuid4())
    client = resource_pep.deployed.client()
    accepted(client, resource_pep.challenge(txn=txn_id))
    client.key = ECKey.generate_key("P-256")
    assert refused(client.present(resource_pep.challenge(txn=txn_id))) == "invalid_request"


def test_tx_43_a_replayed_challenge_jti_is_invalid_request(resource_pep: TxnDeployment) -> None:
    client = resource_pep.deployed.client()
    jti = secrets.token_urlsafe(12)
    accepted(client, resource_pep.challenge(jti=jti))
    assert refused(client.present(resource_pep.challenge(jti=jti))) == "invalid_request"  # another txn, same jti


def test_op_57_tx_42_a_tampered_challenge_is_invalid_request(resource_pep: TxnDeployment) -> None:
    header, payload, signature = resource_pep.challenge().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["authorization_details"][0]["amount"] = 49000
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(resource_pep.deployed.client().present(f"{header}.{forged}.{signature}")) == "invalid_request"


def test_tx_42_a_challenge_for_another_as_is_invalid_request(resource_pep: TxnDeployment) -> None:
    challenge = resource_pep.rs.challenge("https://another-as.example")
    assert refused(resource_pep.deployed.client().present(challenge)) == "invalid_request"


def test_tx_42_an_expired_challenge_is_invalid_request(resource_pep: TxnDeployment) -> None:
    now = int(time.time())
    challenge = resource_pep.challenge(iat=now - 600, exp=now - 300)
    assert refused(resource_pep.deployed.client().present(challenge)) == "invalid_request"


def test_op_78_tx_33_a_key_of_an_unconfigured_rs_is_refused(resource_pep: TxnDeployment) -> None:
    stranger = ResourceServer("https://stranger.example", ECKey.generate_key("P-256", parameters={"kid": "s-1"}, private=True))
    client = resource_pep.deployed.client()
    assert refused(client.present(stranger.challenge(resource_pep.issuer))) == "invalid_request"
    # nor does the recognized RS's name make a key it never published its own
    own_kid = ECKey.generate_key("P-256", parameters={"kid": "rs-1"}, private=True)
    assert refused(client.present(resource_pep.challenge(key=own_kid))) == "invalid_request"


def test_op_8_d_3_both_an_as_side_non_requestable_denial_is_no_token(both_pep: TxnDeployment) -> None:
    client = both_pep.deployed.client()
    before = both_pep.deployed.inbox()
    frozen = [{"type": "trade", "identifier": "alice-frozen", "actions": ["buy"], "amount": APPROVABLE}]
    response = client.present(both_pep.challenge(authorization_details=frozen))
    assert refused(response) == "invalid_authorization_details" and set(response.json()) == {"error"}
    assert both_pep.deployed.inbox() == before  # no access request opened


def test_tx_39_op_64_a_poll_by_another_client_is_invalid_grant(resource_pep: TxnDeployment) -> None:
    pending = accepted(resource_pep.deployed.client("trader-7"), resource_pep.challenge())
    other = resource_pep.deployed.client("trader-9")
    assert refused(other.poll_txn(pending["transaction_authorization_id"])) == "invalid_grant"
