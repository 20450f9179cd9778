"""Caller authentication of the AuthZEN endpoints (authzen-api.md §8.4, AZ-52, AZ-54).

`secured_server` has two callers: `pep` (scope evaluate) and `operator` (evaluate + admin).
`server` has none: loopback callers evaluate anonymously, the admin API is closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.auth import new_api_key
from tests.conftest import Keys
from tests.contract.helpers import (
    EVALUATION,
    MORTY,
    MORTYS_TODO,
    VALID_BODIES,
    assert_authzen_error,
    assert_problem,
    bearer,
    post_raw,
    request,
)
from tests.server import RunningServer, run_server

BODY = request(MORTY, "can_update_todo", MORTYS_TODO)
ENDPOINTS = list(VALID_BODIES)
ADMIN_CALLS = [("GET", "/admin/v1/bundle", None), ("GET", f"/admin/v1/entities?type=user&id={MORTY}", None), ("POST", "/admin/v1/entities", {"entities": []}), ("POST", "/admin/v1/entities/delete", {"entities": []})]


@pytest.fixture(scope="module")
def secured(secured_server: RunningServer) -> Iterator[httpx.Client]:
    with secured_server.client() as c:
        yield c


def assert_challenge(response: httpx.Response) -> None:
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), response.headers
    assert "realm=" in challenge


# -- AZ-52: 401 with a Bearer challenge ---------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_52_no_credentials_is_401_with_www_authenticate(secured: httpx.Client, path: str) -> None:
    response = secured.post(path, json=VALID_BODIES[path])
    assert_authzen_error(response, 401)
    assert_challenge(response)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_52_wrong_key_is_401_with_www_authenticate(secured: httpx.Client, path: str) -> None:
    wrong, _ = new_api_key()
    response = secured.post(path, json=VALID_BODIES[path], headers=bearer(wrong))
    assert_authzen_error(response, 401)
    assert_challenge(response)


@pytest.mark.parametrize("authorization", ["Basic cGVwOnNlY3JldA==", "Bearer", "Bearer  \t x", "Token abc", "bearer-abc", ""])
def test_az_52_malformed_or_other_scheme_is_401(secured: httpx.Client, authorization: str) -> None:
    response = secured.post(EVALUATION, json=BODY, headers={"Authorization": authorization})
    assert_authzen_error(response, 401)
    assert_challenge(response)


def test_az_52_key_of_the_other_scheme_position_is_401(secured: httpx.Client, keys: Keys) -> None:
    response = secured.post(EVALUATION, json=BODY, headers={"Authorization": f"Basic {keys.evaluate}"})
    assert_authzen_error(response, 401)


def test_az_52_authentication_comes_before_validation(secured: httpx.Client) -> None:
    """An unauthenticated caller learns nothing about what a valid request looks like."""
    response = post_raw(secured, EVALUATION, b"not json", "text/plain")
    assert_authzen_error(response, 401)
    assert_challenge(response)


def test_az_50_request_id_echoed_on_401(secured: httpx.Client) -> None:
    response = secured.post(EVALUATION, json=BODY, headers={"X-Request-ID": "unauth-1"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "unauth-1"


def test_az_50_request_id_echoed_on_403(secured: httpx.Client, keys: Keys) -> None:
    response = secured.get("/admin/v1/bundle", headers={**bearer(keys.evaluate), "X-Request-ID": "forbidden-1"})
    assert response.status_code == 403
    assert response.headers["x-request-id"] == "forbidden-1"


# -- AZ-54: authenticated callers ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["evaluate", "admin"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_az_54_configured_callers_are_served(secured: httpx.Client, keys: Keys, path: str, who: str) -> None:
    key = keys.evaluate if who == "evaluate" else keys.admin
    response = secured.post(path, json=VALID_BODIES[path], headers=bearer(key))
    assert response.status_code == 200, response.text


def test_az_54_scheme_is_case_insensitive(secured: httpx.Client, keys: Keys) -> None:
    response = secured.post(EVALUATION, json=BODY, headers={"Authorization": f"bearer {keys.evaluate}"})
    assert response.status_code == 200 and response.json() == {"decision": True}


def test_az_7_authenticated_deny_is_200_not_403(secured: httpx.Client, keys: Keys) -> None:
    response = secured.post(EVALUATION, json=request(MORTY, "can_delete_todo", "someone-elses"), headers=bearer(keys.evaluate))
    assert response.status_code == 200 and response.json()["decision"] is False


# -- 403: authenticated, but not for this API ---------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_403_evaluate_scope_may_not_use_the_admin_api(secured: httpx.Client, keys: Keys, method: str, path: str, body: Any) -> None:
    response = secured.request(method, path, json=body, headers=bearer(keys.evaluate))
    problem = assert_problem(response, 403)
    assert "admin" in problem["detail"]
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_401_admin_api_without_credentials(secured: httpx.Client, method: str, path: str, body: Any) -> None:
    response = secured.request(method, path, json=body)
    assert_problem(response, 401)
    assert_challenge(response)


@pytest.fixture(scope="module")
def admin_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    key, digest = new_api_key()
    config = f'[[callers]]\nname = "auditor"\nkey_sha256 = "{digest}"\nscopes = ["admin"]\n'
    with run_server(tmp_path_factory.mktemp("admin-only"), config=config) as running:
        yield running, key


@pytest.mark.parametrize("path", ENDPOINTS)
def test_403_admin_only_caller_may_not_evaluate(admin_only_server: tuple[RunningServer, str], path: str) -> None:
    """§8.4: 403 = an authenticated PEP not allowed to use this API (never a deny, AZ-7)."""
    running, key = admin_only_server
    with running.client() as c:
        response = c.post(path, json=VALID_BODIES[path], headers={**bearer(key), "X-Request-ID": "scope-1"})
        assert c.get("/admin/v1/bundle", headers=bearer(key)).status_code == 200
    error = assert_authzen_error(response, 403)
    assert error["error"] == "forbidden"
    assert response.headers["x-request-id"] == "scope-1"


# -- out of the box: loopback callers evaluate anonymously ---------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_loopback_anonymous_access_works_without_configuration(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=VALID_BODIES[path])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_api_is_closed_without_configured_callers(client: httpx.Client, method: str, path: str, body: Any) -> None:
    response = client.request(method, path, content=json.dumps(body) if body is not None else None, headers={"Content-Type": "application/json"})
    assert_problem(response, 401)
