"""The Transaction Authorization Challenge and the Client Challenge through oidc-provider, and
the AS failing closed when the sidecar is unavailable.

Txn (spec/arop.md §11.3, TX-37..TX-45): the resource server answers the agent with a signed
challenge; the agent presents it at the adapter's `transaction_authorization_endpoint`, alice
approves, and the RS accepts the `txn`-bound token oidc-provider minted (signature by the AS's
published key, audience, `txn`, details, DPoP key). Client Challenge (TX-49..TX-62): trader-8
is challenged for alice's mandate and gets its token with one."""

from __future__ import annotations

import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.e2e.conftest import INTERVAL, Client, Stack
from tests.oauth.conftest import APPROVABLE, RS, new_task


def _rs_accepts(deployed: Stack, token: str, *, txn: str, client: Client) -> dict[str, Any]:
    """What the RS checks before acting on a txn-bound token: the AS's signature (its JWKS from
    discovery), audience, `txn`, the challenged details, and the sender key."""
    discovery = httpx.get(f"{deployed.issuer}/.well-known/openid-configuration").json()
    keys = KeySet.import_key_set(httpx.get(discovery["jwks_uri"]).json())
    claims = jwt.decode(token, keys, algorithms=["ES256"]).claims
    assert claims["iss"] == deployed.issuer and claims["aud"] == RS and claims["txn"] == txn
    assert claims["authorization_details"] == [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": APPROVABLE}]
    assert claims["cnf"] == {"jkt": client.jkt} and claims["exp"] > time.time()
    return claims


def test_tx_37_discovery_advertises_the_transports(deployed: Stack) -> None:
    metadata = httpx.get(f"{deployed.issuer}/.well-known/openid-configuration").json()
    assert metadata["transaction_authorization_endpoint"] == f"{deployed.issuer}/txn"
    assert metadata["deferred_token_response_supported"] is True
    assert {"urn:ietf:params:oauth:grant-type:deferred", "urn:openid:params:grant-type:ciba"} <= set(metadata["grant_types_supported"])
    assert set(metadata["authorization_details_types_supported"]) == {"trade", "portfolio_read"}
    assert metadata["backchannel_token_delivery_modes_supported"] == ["poll", "ping"]


def test_tx_38_tx_45_challenge_pending_approval_then_the_rs_accepts_the_txn_bound_token(deployed: Stack) -> None:
    client = deployed.client("trader-7")
    challenge = deployed.rs.challenge(deployed.issuer)
    txn = jwt.decode(challenge, deployed.rs.key).claims["txn"]
    before = deployed.inbox()
    accepted = client.present(challenge)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert set(body) == {"transaction_authorization_id", "expires_in", "interval"}
    assert accepted.headers["cache-control"] == "no-store"
    task_id = new_task(deployed, before)

    time.sleep(INTERVAL + 0.2)
    pending = client.poll_txn(body["transaction_authorization_id"])
    assert (pending.status_code, pending.json()) == (400, {"error": "authorization_pending"})
    deployed.review(task_id, "approve")
    time.sleep(INTERVAL + 0.2)
    issued = client.poll_txn(body["transaction_authorization_id"])
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP" and "refresh_token" not in issued.json()
    _rs_accepts(deployed, issued.json()["access_token"], txn=txn, client=client)

    replayed = client.poll_txn(body["transaction_authorization_id"])  # OP-25
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")


def test_tx_42_tx_43_forged_or_replayed_challenges_and_stolen_ids_are_refused(deployed: Stack) -> None:
    client = deployed.client("trader-7")
    challenge = deployed.rs.challenge(deployed.issuer)
    body = client.present(challenge).json()
    again = deployed.client("trader-8").present(challenge)  # another client, the same jti
    assert (again.status_code, again.json()["error"]) == (400, "invalid_request")
    forged = deployed.rs.challenge(deployed.issuer, key=deployed.trust.wallet)  # a key the RS never published
    assert client.present(forged).json()["error"] == "invalid_request"
    elsewhere = deployed.rs.challenge("https://another-as.example")
    assert client.present(elsewhere).json()["error"] == "invalid_request"
    time.sleep(INTERVAL + 0.2)
    stolen = deployed.client("trader-7").poll_txn(body["transaction_authorization_id"])  # another DPoP key
    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    wrong_secret = Client(deployed.issuer, "trader-7", "not-the-secret").present(deployed.rs.challenge(deployed.issuer))
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")


def test_tx_49_tx_58_a_challenged_client_presents_the_mandate_and_gets_its_token(deployed: Stack) -> None:
    client = deployed.client("trader-8")
    challenged = client.trade(5000)
    assert challenged.status_code == 403, challenged.text
    body = challenged.json()
    assert body["error"] == "insufficient_client_authorization"
    assert body["authorization_requirement"]["type"] == "mandate" and body["expires_in"] > 0

    without = client.trade(5000, challenge_session=body["challenge_session"])  # nothing presented
    assert without.status_code in (400, 403) and "access_token" not in without.json()
    wrong_key = client.trade(5000, challenge_session=body["challenge_session"],
                             mandate=deployed.trust.mandate(deployed.client("trader-8")))  # bound to another key
    assert "access_token" not in wrong_key.json()

    fresh = client.trade(5000).json()
    issued = client.trade(5000, challenge_session=fresh["challenge_session"], mandate=deployed.trust.mandate(client, max_amount=10_000))
    assert issued.status_code == 200, issued.text
    assert issued.json()["authorization_details"][0]["amount"] == 5000
    replay = client.trade(5000, challenge_session=fresh["challenge_session"], mandate=deployed.trust.mandate(client))
    assert "access_token" not in replay.json()  # a challenge session is answered once


def test_tx_59_a_client_that_did_not_register_support_is_never_challenged(deployed: Stack) -> None:
    refused = deployed.client("trader-7").trade(5000)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_authorization_details"


def test_sidecar_unavailable_the_as_fails_closed_then_recovers(deployed: Stack) -> None:
    client = deployed.client("trader-7")
    deployed.kill_sidecar()
    try:
        for response in (client.trade(500), client.trade(5000, completion_mode="deferred"), client.present(deployed.rs.challenge(deployed.issuer)),
                         deployed.client("assistant-poll").backchannel(5000)):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "temporarily_unavailable" and "access_token" not in response.json()
    finally:
        deployed.restart_sidecar()
    assert client.trade(500).status_code == 200


def test_tx_39_malformed_client_authentication_at_the_txn_endpoint_is_invalid_client(deployed: Stack) -> None:
    response = httpx.post(
        f"{deployed.issuer}/txn", data={"transaction_challenge": deployed.rs.challenge(deployed.issuer)},
        headers={"Authorization": "Basic dHJhZGVyLTc6JUU0"},  # "trader-7:%E4", not UTF-8 once decoded
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
