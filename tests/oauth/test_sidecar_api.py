"""The sidecar API as the AS sees it (DESIGN.md §3): callers with the `oauth` scope, strict
request types (D-AROP-1) answered as RFC 9457 problems naming the member, and each AS kept to
its own handles and grants (D-AROP-29)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.auth import new_api_key
from tests.oauth.conftest import APPROVABLE, Deployment, deployment

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


SECOND_AS_KEY, SECOND_AS_HASH = new_api_key()


@pytest.fixture(scope="module")
def two_as(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The service with a second AS caller, `as-2`, whose clients have ids like the first's."""
    second = f'\n[[callers]]\nname = "as-2"\nkey_sha256 = "{SECOND_AS_HASH}"\nscopes = ["oauth"]\n'
    with deployment(backend, tmp_path_factory.mktemp(f"two-as-{backend}"), "", caller=second) as started:
        yield started


def as_2(deployed: Deployment, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{deployed.base_url}{path}", json=body, headers={"Authorization": f"Bearer {SECOND_AS_KEY}"}, timeout=10)


def test_d_arop_29_one_as_never_uses_another_as_handle(two_as: Deployment) -> None:
    """Client ids are each AS's own namespace (OP-24): the same client id, method and key at
    another AS redeems and revokes nothing, and its request is another request (OP-20)."""
    trade = [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": APPROVABLE}]
    decide = {**DECIDE, "binding": "dtr", "completion_mode": "deferred", "authorization_details": trade}
    first = post(two_as, "/oauth/v1/decide", decide).json()
    assert first["outcome"] == "pending", first
    handle = first["response"]["body"]["deferral_code"]
    before = two_as.inbox()
    redeem = {"binding": "dtr", "handle": handle, "client_id": "trader-7", "auth_method": "client_secret_post", "sender": {}}
    assert as_2(two_as, "/oauth/v1/redeem", redeem).json() == {"outcome": "error", "status": 400, "error": "invalid_grant"}
    cancel = {"token": handle, "client_id": "trader-7", "auth_method": "client_secret_post", "sender": {}}
    assert as_2(two_as, "/oauth/v1/cancel", cancel).json() == {"status": 200, "body": {}}
    assert two_as.inbox() == before  # its access request is still open
    assert post(two_as, "/oauth/v1/redeem", redeem).json()["error"] in ("authorization_pending", "slow_down")

    second = as_2(two_as, "/oauth/v1/decide", decide).json()
    assert second["outcome"] == "pending" and second["response"]["body"]["deferral_code"] != handle
