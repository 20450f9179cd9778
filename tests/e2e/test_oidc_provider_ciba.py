"""CIBA through oidc-provider's own backchannel endpoint and CIBA grant (spec/arop.md §11.2,
OP-49..OP-55; oauth-transports.md §3): the user the hint names approves in AROP; poll clients
redeem through the sidecar (its interval and slow_down), ping clients are pinged by
oidc-provider once the sidecar told the adapter. oidc-provider has no push mode (README)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import INTERVAL, Stack
from tests.oauth.conftest import RS, claims_of, new_task
from tests.support import poll


def _accepted(response: Any) -> dict[str, Any]:
    """TX-21: 200 with oidc-provider's auth_req_id, its lifetime and the sidecar's interval."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"}, body
    assert body["interval"] == INTERVAL and body["expires_in"] > 0
    return body  # type: ignore[no-any-return]


def test_op_51_op_55_poll_pending_slow_down_approval_then_tokens_bounded_by_it(deployed: Stack) -> None:
    client = deployed.client("assistant-poll")
    before = deployed.inbox()
    body = _accepted(client.backchannel(5101, binding_message="Buy 5101 for alice-main"))
    task_id = new_task(deployed, before)
    subject = deployed.reviewer.get(f"/reviewer/v1/tasks/{task_id}").json()["subject"]
    assert (subject["type"], subject["id"]) == ("User", "alice")  # OP-49

    slowed = client.poll_ciba(body["auth_req_id"])  # sooner than the interval: the adapter relays slow_down
    assert (slowed.status_code, slowed.json()) == (400, {"error": "slow_down"})
    time.sleep(6.2)  # the raised interval
    pending = client.poll_ciba(body["auth_req_id"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")

    approved_until = (datetime.now(UTC) + timedelta(minutes=4)).replace(microsecond=0)
    deployed.review(task_id, "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))
    time.sleep(6.2)
    issued = client.poll_ciba(body["auth_req_id"])
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert {"access_token", "token_type", "expires_in", "id_token", "authorization_details"} <= set(tokens)
    assert tokens["token_type"] == "DPoP" and "refresh_token" not in tokens
    access = claims_of(tokens["access_token"])
    assert access["sub"] == "alice" and access["aud"] == RS and access["cnf"] == {"jkt": client.jkt}
    assert access["act"] == {"sub": "assistant-poll"}
    assert access["authorization_details"][0]["amount"] == 5101  # OP-55
    assert access["exp"] <= approved_until.timestamp()
    assert claims_of(tokens["id_token"])["sub"] == "alice"

    again = client.poll_ciba(body["auth_req_id"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_op_51_ping_oidc_provider_pings_the_client_then_it_redeems(deployed: Stack) -> None:
    client = deployed.client("assistant-ping")
    before = deployed.inbox()
    body = _accepted(client.backchannel(5102, client_notification_token="cnt-ping-5102"))
    task_id = new_task(deployed, before)
    time.sleep(0.5)
    assert deployed.pings(body["auth_req_id"]) == []  # nothing before the approval
    deployed.review(task_id, "approve")
    assert poll(lambda: bool(deployed.pings(body["auth_req_id"])), 10)
    [ping] = deployed.pings(body["auth_req_id"])
    assert ping.headers["authorization"] == "Bearer cnt-ping-5102"
    assert json.loads(ping.body) == {"auth_req_id": body["auth_req_id"]}
    issued = client.poll_ciba(body["auth_req_id"])
    assert issued.status_code == 200, issued.text
    assert claims_of(issued.json()["access_token"])["authorization_details"][0]["amount"] == 5102


def test_op_51_ping_on_denial_then_access_denied(deployed: Stack) -> None:
    client = deployed.client("assistant-ping")
    before = deployed.inbox()
    body = _accepted(client.backchannel(5103, client_notification_token="cnt-ping-5103"))
    deployed.review(new_task(deployed, before), "deny", reason="no")
    assert poll(lambda: bool(deployed.pings(body["auth_req_id"])), 10)
    denied = client.poll_ciba(body["auth_req_id"])
    assert (denied.status_code, denied.json()["error"]) == (400, "access_denied")


def test_op_53_the_auth_req_id_is_bound_to_the_key_of_the_request(deployed: Stack) -> None:
    client = deployed.client("assistant-poll")
    before = deployed.inbox()
    body = _accepted(client.backchannel(5104))
    deployed.review(new_task(deployed, before), "approve")
    time.sleep(INTERVAL + 0.2)
    thief = deployed.client("assistant-poll")  # the same client's secret, another DPoP key
    refused = thief.poll_ciba(body["auth_req_id"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert client.poll_ciba(body["auth_req_id"]).status_code == 200


def test_tx_22_a_request_that_expires_is_expired_token(deployed: Stack) -> None:
    client = deployed.client("assistant-poll")
    body = _accepted(client.backchannel(5105, requested_expiry="2"))
    assert body["expires_in"] <= 2
    time.sleep(2.5)
    expired = client.poll_ciba(body["auth_req_id"])
    assert (expired.status_code, expired.json()["error"]) == (400, "expired_token")


def test_d_4_a_denial_that_is_not_requestable_is_refused_at_once(deployed: Stack) -> None:
    before = deployed.inbox()
    refused = deployed.client("assistant-poll").backchannel(5106, login_hint="bob")  # bob buying on alice's portfolio
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_authorization_details"})
    assert deployed.inbox() == before
