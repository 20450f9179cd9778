"""The Deferred Token Response binding end to end (spec/arop.md §5-§9, §11.1, §14;
oauth-transports.md §2): a real OAuth client with DPoP proofs → the test AS → the sidecar API
→ the PDP and ARS → the reviewer API. Named after the requirement each test proves.

Trades on alice-main by trader-7 (alice's agent): up to 1,000 standing access, up to 2,000
auto-approved, up to 50,000 requestable through alice's approval; alice-frozen is forbidden.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.oauth.conftest import APPROVABLE, INTERVAL, Deployment, OAuthClient, claims_of, new_task, wait_interval


def deferred(client: OAuthClient, amount: int = APPROVABLE, **members: str) -> dict[str, Any]:
    """A trade with the DTR opt-in: the pending answer (TX-9)."""
    response = client.trade(amount, completion_mode="deferred", **members)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "authorization_pending" and set(body) == {"error", "deferral_code", "expires_in", "interval"}, body
    return body  # type: ignore[no-any-return]


def test_op_3_standing_access_is_a_token_at_once_bounded_by_the_ttl(deployed: Deployment) -> None:
    client = deployed.client()
    response = client.trade(500)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP" and body["expires_in"] == 900 and "refresh_token" not in body
    token = claims_of(body["access_token"])
    assert token["cnf"] == {"jkt": client.jkt} and token["aud"] == ["https://broker.example"]
    assert body["authorization_details"] == [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": 500}]


def test_op_16_op_34_pending_polls_approval_then_a_token_bounded_by_approved_until(deployed: Deployment) -> None:
    client = deployed.client()
    before = deployed.inbox()
    pending = deferred(client)
    assert pending["interval"] == INTERVAL and 0 < pending["expires_in"] <= 3600
    task_id = new_task(deployed, before)
    wait_interval()
    assert client.poll(pending["deferral_code"]).json() == {"error": "authorization_pending", "interval": INTERVAL}

    approved_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    deployed.review(task_id, "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))
    issued = client.poll(pending["deferral_code"])
    assert issued.status_code == 200, issued.text
    body = issued.json()
    token = claims_of(body["access_token"])
    assert token["exp"] <= approved_until.timestamp() and body["expires_in"] <= 300
    assert token["cnf"] == {"jkt": client.jkt} and token["sub"] == "trader-7" and "refresh_token" in body
    assert body["authorization_details"][0]["amount"] == APPROVABLE
    assert not {"evaluation_id", "binding_token", "approval", "task"} & set(body)  # OP-2

    again = client.poll(pending["deferral_code"])  # OP-25
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


def test_op_20_a_retried_request_gets_the_same_deferral_code(deployed: Deployment) -> None:
    client = deployed.client()
    before = deployed.inbox()
    first = deferred(client, 5002)
    second = deferred(client, 5002)
    assert second["deferral_code"] == first["deferral_code"] and second["expires_in"] <= first["expires_in"]
    new_task(deployed, before)
    assert len(deployed.inbox() - before) == 1  # one access request
    other_key = deployed.client()  # D-6: another key is another request
    assert deferred(other_key, 5002)["deferral_code"] != first["deferral_code"]


def test_op_17_op_46_without_completion_mode_never_deferred_but_remediation(deployed: Deployment) -> None:
    client = deployed.client()
    before = deployed.inbox()
    response = client.trade(5006)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_authorization_details", "approval_obtainable": {"retry_with": ["completion_mode=deferred"]}}
    time.sleep(0.5)
    assert deployed.inbox() == before  # no access request was opened


@pytest.mark.parametrize("completion_mode", [None, "deferred"])
def test_op_14_non_requestable_is_invalid_authorization_details(deployed: Deployment, completion_mode: str | None) -> None:
    client = deployed.client()
    extra = {"completion_mode": completion_mode} if completion_mode else {}
    response = client.trade(5000, portfolio="alice-frozen", **extra)
    assert (response.status_code, response.json()) == (400, {"error": "invalid_authorization_details"})


def test_op_48_op_65_revocation_cancels_the_task_and_later_polls_are_access_denied(deployed: Deployment) -> None:
    client = deployed.client()
    before = deployed.inbox()
    pending = deferred(client, 5007)
    task_id = new_task(deployed, before)
    foreign = deployed.client("trader-9").revoke(pending["deferral_code"])  # TX-19: no effect
    assert foreign.status_code == 200 and task_id in deployed.inbox()
    revoked = client.revoke(pending["deferral_code"])
    assert (revoked.status_code, revoked.content) == (200, b"")
    assert deployed.task(task_id)["status"] == "cancelled"
    assert client.poll(pending["deferral_code"]).json() == {"error": "access_denied"}


def test_op_35_refresh_after_approved_until_is_invalid_grant(deployed: Deployment) -> None:
    client = deployed.client()
    before = deployed.inbox()
    pending = deferred(client, 5008)
    approved_until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    deployed.review(new_task(deployed, before), "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))
    body = client.poll(pending["deferral_code"]).json()
    assert body["expires_in"] <= 4 and claims_of(body["access_token"])["exp"] <= approved_until.timestamp()
    refreshed = client.refresh(body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert claims_of(refreshed.json()["access_token"])["exp"] <= approved_until.timestamp()
    time.sleep(max(0.0, approved_until.timestamp() - time.time()) + 0.5)
    late = client.refresh(body["refresh_token"])
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})
