"""DTR through oidc-provider (spec/arop.md §11.1, oauth-transports.md §2): a client credentials
request with `completion_mode=deferred` is decided by the sidecar after oidc-provider
authenticated the client; pending → alice approves in the reviewer API → the redeemed token is
minted by oidc-provider, DPoP-bound, bounded by the approval and carrying exactly the approved
`authorization_details`. Then the ways it must fail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import ECKey

from tests.e2e.conftest import INTERVAL, Client, Stack, stack
from tests.oauth.conftest import RS, claims_of, new_task

BUY_5000 = [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": 5000}]


def _deferred(deployed: Stack, amount: int, client_id: str = "trader-7") -> tuple[Client, str, str]:
    """A deferred request that opens one access request: (client, deferral_code, task id)."""
    client = deployed.client(client_id)
    before = deployed.inbox()
    response = client.trade(amount, completion_mode="deferred")
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "deferral_code", "expires_in", "interval"}, body  # TX-9
    assert body["error"] == "authorization_pending" and body["interval"] == INTERVAL
    assert response.headers["cache-control"] == "no-store"
    return client, body["deferral_code"], new_task(deployed, before)


def _error(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["error"]  # type: ignore[attr-defined]


def test_op_34_tx_9_pending_then_approved_then_a_dpop_bound_token_within_the_approval(deployed: Stack) -> None:
    client, code, task_id = _deferred(deployed, 5000)
    time.sleep(INTERVAL + 0.2)
    assert client.poll(code).json() == {"error": "authorization_pending", "interval": INTERVAL}  # TX-15
    approved_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    deployed.review(task_id, "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))

    time.sleep(INTERVAL + 0.2)
    issued = client.poll(code)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert tokens["token_type"] == "DPoP" and "refresh_token" not in tokens
    assert tokens["authorization_details"] == BUY_5000
    claims = claims_of(tokens["access_token"])
    assert claims["iss"] == deployed.issuer and claims["aud"] == RS and claims["sub"] == "trader-7"
    assert claims["cnf"] == {"jkt": client.jkt}  # OP-63
    assert claims["authorization_details"] == BUY_5000
    # OP-34: the AS's own lifetime for these tokens is 15 minutes; the approval ends sooner.
    assert claims["exp"] <= approved_until.timestamp() and tokens["expires_in"] <= 300

    time.sleep(INTERVAL + 0.2)
    assert _error(client.poll(code)) == (400, "invalid_grant")  # OP-25: redeemed once


def test_op_28_polling_early_slows_down(deployed: Stack) -> None:
    client, code, task_id = _deferred(deployed, 5001)
    slowed = client.poll(code)  # sooner than `interval` after the handle was made
    assert (slowed.status_code, slowed.json()) == (400, {"error": "slow_down"}), slowed.text
    deployed.review(task_id, "deny", reason="not now")


def test_op_24_op_64_another_key_or_client_is_as_good_as_an_unknown_code(deployed: Stack) -> None:
    client, code, task_id = _deferred(deployed, 5002)
    time.sleep(INTERVAL + 0.2)
    assert _error(client.poll(code, key=ECKey.generate_key("P-256"))) == (400, "invalid_grant")
    other = deployed.client("trader-9")
    assert _error(other.poll(code)) == (400, "invalid_grant")
    deployed.review(task_id, "approve")
    time.sleep(INTERVAL + 0.2)
    assert client.poll(code).status_code == 200  # the bound client and key still redeem it


def test_rfc_9449_a_replayed_dpop_proof_is_refused(deployed: Stack) -> None:
    client, code, task_id = _deferred(deployed, 5003)
    time.sleep(INTERVAL + 0.2)
    proof = client.proof("/token")
    form = client.form(grant_type="urn:ietf:params:oauth:grant-type:deferred", deferral_code=code)
    assert _error(client.http.post("/token", data=form, headers={"DPoP": proof})) == (400, "authorization_pending")
    assert _error(client.http.post("/token", data=form, headers={"DPoP": proof})) == (400, "invalid_dpop_proof")
    deployed.review(task_id, "deny", reason="no")


def test_op_26_a_denial_is_access_denied_on_every_poll(deployed: Stack) -> None:
    client, code, task_id = _deferred(deployed, 5004)
    deployed.review(task_id, "deny", reason="too much")
    for _ in range(2):
        time.sleep(INTERVAL + 0.2)
        assert _error(client.poll(code)) == (400, "access_denied")


def test_op_14_op_17_without_the_opt_in_the_client_learns_approval_is_obtainable(deployed: Stack) -> None:
    before = deployed.inbox()
    refused = deployed.client("trader-7").trade(5005)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_authorization_details", "approval_obtainable": {"retry_with": ["completion_mode=deferred"]}}
    assert deployed.inbox() == before  # never deferred without the opt-in


def test_op_14_a_denial_that_is_not_requestable_opens_nothing(deployed: Stack) -> None:
    before = deployed.inbox()
    refused = deployed.client("trader-9").trade(5000, completion_mode="deferred")  # bob's agent, alice's portfolio
    assert refused.status_code == 400 and refused.json() == {"error": "invalid_authorization_details"}
    assert deployed.inbox() == before


def test_standing_access_is_minted_at_once_within_the_as_lifetime(deployed: Stack) -> None:
    issued = deployed.client("trader-7").trade(500)
    assert issued.status_code == 200, issued.text
    assert issued.json()["expires_in"] <= 900 and claims_of(issued.json()["access_token"])["authorization_details"][0]["amount"] == 500


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("e2e-short"), oauth="handle_ttl = 3\n") as started:
        yield started


def test_op_26_an_expired_deferral_code_is_expired_token(short_lived: Stack) -> None:
    client, code, _ = _deferred(short_lived, 5006)
    time.sleep(3.5)
    assert _error(client.poll(code)) == (400, "expired_token")
