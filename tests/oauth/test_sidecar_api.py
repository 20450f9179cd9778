"""The sidecar API as the AS sees it (DESIGN.md §3): callers with the `oauth` scope, strict
request types (D-AROP-1) answered as RFC 9457 problems naming the member, and the bindings not
served yet."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.oauth.conftest import Deployment

DECIDE: dict[str, Any] = {
    "binding": "token",
    "grant_type": "client_credentials",
    "client": {"id": "trader-7", "auth_method": "client_secret_post", "public": False},
    "subject": {"type": "Agent", "id": "trader-7"},
    "sender": {},
    "authorization_details": [{"type": "trade", "identifier": "alice-main", "actions": ["read"]}],
}


def post(deployed: Deployment, path: str, body: Any, authorization: str | None = "as") -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": deployed.authorization_server.sidecar.headers["authorization"]}
    return httpx.post(f"{deployed.base_url}{path}", json=body, headers=headers, timeout=10)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()  # type: ignore[no-any-return]


def test_design_3_callers_authenticate(deployed: Deployment) -> None:
    problem(post(deployed, "/oauth/v1/decide", DECIDE, authorization=None), 401)
    reviewer = httpx.post(f"{deployed.base_url}/oauth/v1/decide", json=DECIDE, headers=dict(deployed.reviewer.headers), timeout=10)
    problem(reviewer, 401)


def test_design_3_answers_are_tagged_outcomes_never_cached(deployed: Deployment) -> None:
    response = post(deployed, "/oauth/v1/decide", DECIDE)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert response.json()["outcome"] == "allow"


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ({**DECIDE, "sender": {"jkt": "x"}}, "sender"),
        ({**DECIDE, "client": {"id": "trader-7"}}, "client"),
        ({**DECIDE, "binding": "dtr"}, "binding"),
    ],
)
def test_d_arop_1_malformed_requests_are_problems_naming_the_member(deployed: Deployment, body: dict[str, Any], member: str) -> None:
    assert member in problem(post(deployed, "/oauth/v1/decide", body), 400)["detail"]


def test_op_2_unknown_handles_and_foreign_revocations_reveal_nothing(deployed: Deployment) -> None:
    redeem = {"binding": "dtr", "handle": "nope", "client_id": "trader-7", "auth_method": "client_secret_post", "sender": {}}
    assert post(deployed, "/oauth/v1/redeem", redeem).json() == {"outcome": "error", "status": 400, "error": "invalid_grant"}
    cancel = {"token": "nope", "client_id": "trader-7", "auth_method": "client_secret_post", "sender": {}}
    assert post(deployed, "/oauth/v1/cancel", cancel).json() == {"status": 200, "body": {}}
    check = {"grant_id": "gr_nope", "client_id": "trader-7", "auth_method": "client_secret_post", "sender": {}}
    assert post(deployed, "/oauth/v1/refresh-check", check).json()["error"] == "invalid_grant"
    assert post(deployed, "/oauth/v1/exchange-check", check).json()["error"] == "invalid_grant"


def test_ciba_is_served(deployed: Deployment) -> None:
    ciba = {**DECIDE, "binding": "ciba", "scope": "openid", "ciba": {"delivery_mode": "poll", "login_hint": "alice"}}
    assert post(deployed, "/oauth/v1/decide", ciba).status_code == 200
