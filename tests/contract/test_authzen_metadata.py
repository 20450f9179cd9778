"""PDP metadata (discovery) over real HTTP (authzen-api.md §7)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from tests.contract.conftest import TENANT_URL
from tests.contract.helpers import MORTY, MORTYS_TODO, WELL_KNOWN, media_type, request
from tests.server import RunningServer

ENDPOINTS = {
    "access_evaluation_endpoint": "/access/v1/evaluation",
    "access_evaluations_endpoint": "/access/v1/evaluations",
    "search_subject_endpoint": "/access/v1/search/subject",
    "search_resource_endpoint": "/access/v1/search/resource",
    "search_action_endpoint": "/access/v1/search/action",
}
TENANT_PATH = WELL_KNOWN + "/tenant-a"


def fetch(client: httpx.Client, path: str = WELL_KNOWN, **headers: str) -> dict[str, Any]:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    assert media_type(response) == "application/json"
    document = response.json()
    assert isinstance(document, dict)
    return document


def expected_document(base: str) -> dict[str, Any]:
    """The AuthZEN members, plus ARAP discovery (spec/arap.md §1): every server here issues
    access requests (an https or loopback identifier); tests/contract/test_arap_pdp.py covers it."""
    return {
        "policy_decision_point": base,
        **{member: base + path for member, path in ENDPOINTS.items()},
        "access_request_endpoint": f"{base}/access/v1/requests",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "capabilities": ["urn:openid:authzen:capability:access-request"],
    }


# -- AZ-27, AZ-29, AZ-32, AZ-33 ----------------------------------------------------------------


def test_az_33_metadata_is_200_application_json(client: httpx.Client, server: RunningServer) -> None:
    assert fetch(client) == expected_document(server.base_url)


def test_az_29_no_null_or_empty_members(client: httpx.Client) -> None:
    document = fetch(client)
    for member, value in document.items():
        assert value is not None, member
        assert value != [] and value != "" and value != {}, member
    assert "capabilities" not in document or (isinstance(document["capabilities"], list) and document["capabilities"])
    assert "signed_metadata" not in document, "signing is off on this server"


def test_az_33_metadata_is_cacheable(client: httpx.Client) -> None:
    response = client.get(WELL_KNOWN)
    match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
    assert match and int(match.group(1)) > 0, response.headers


def test_az_32_metadata_is_fetched_with_get(client: httpx.Client) -> None:
    assert client.post(WELL_KNOWN, json={}).status_code == 405


def test_az_43_published_endpoints_answer(client: httpx.Client) -> None:
    document = fetch(client)
    body = request(MORTY, "can_update_todo", MORTYS_TODO)
    assert httpx.post(document["access_evaluation_endpoint"], json=body).json() == {"decision": True}
    assert httpx.post(document["access_evaluations_endpoint"], json={**body, "evaluations": [{}]}).json() == {"evaluations": [{"decision": True}]}
    search = {"subject": {"type": "user", "id": MORTY}, "action": {"name": "can_update_todo"}, "resource": {"type": "todo"}}
    assert httpx.post(document["search_resource_endpoint"], json=search).json()["results"] == [{"type": "todo", "id": MORTYS_TODO}]
    assert httpx.post(document["search_subject_endpoint"], json={**search, "subject": {"type": "user"}, "resource": {"type": "todo", "id": MORTYS_TODO}}).status_code == 200
    assert httpx.post(document["search_action_endpoint"], json={"subject": search["subject"], "resource": {"type": "todo", "id": MORTYS_TODO}}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example.net"},
        {"X-Forwarded-Host": "evil.example.net", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=evil.example.net;proto=https"},
    ],
)
def test_az_34_host_header_does_not_change_the_identifier(client: httpx.Client, server: RunningServer, headers: dict[str, str]) -> None:
    assert fetch(client, **headers) == expected_document(server.base_url)


# -- AZ-31, AZ-34: a tenant identifier behind a proxy ------------------------------------------


def test_az_31_tenant_metadata_is_served_at_the_inserted_path(configured: httpx.Client) -> None:
    assert fetch(configured, TENANT_PATH) == expected_document(TENANT_URL)


def test_az_34_tenant_identifier_is_exactly_the_configured_public_url(configured: httpx.Client) -> None:
    document = fetch(configured, TENANT_PATH)
    assert document["policy_decision_point"] == "https://pdp.example.net/tenant-a"
    assert document["access_evaluation_endpoint"] == "https://pdp.example.net/tenant-a/access/v1/evaluation"


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example.net"},
        {"Host": "pdp.example.net:8443"},
        {"X-Forwarded-Host": "evil.example.net", "X-Forwarded-Proto": "http", "X-Forwarded-Prefix": "/tenant-b"},
    ],
)
def test_az_34_tenant_document_ignores_the_host_header(configured: httpx.Client, headers: dict[str, str]) -> None:
    assert fetch(configured, TENANT_PATH, **headers) == expected_document(TENANT_URL)


@pytest.mark.parametrize("path", ["/tenant-a" + WELL_KNOWN, WELL_KNOWN + "/tenant-b", WELL_KNOWN + "/tenant-a/x"])
def test_az_31_not_appended_and_unknown_tenant_is_404(configured: httpx.Client, path: str) -> None:
    assert configured.get(path).status_code == 404


def test_az_34_no_document_with_a_foreign_identifier_at_the_root(configured: httpx.Client) -> None:
    """A PEP fetching /.well-known/authzen-configuration derives the identifier
    https://pdp.example.net (AZ-31). This PDP is https://pdp.example.net/tenant-a: answering
    there with another policy_decision_point is the mix-up AZ-34 guards against (§11 #10);
    the URL is an unknown tenant path (AZ-33: 404)."""
    response = configured.get(WELL_KNOWN)
    assert response.status_code == 404 or response.json()["policy_decision_point"] == "https://pdp.example.net", response.text


# -- AZ-35, AZ-36: signed metadata (secured_server signs) --------------------------------------


@pytest.fixture(scope="module")
def signed_response(secured_server: RunningServer) -> httpx.Response:
    with secured_server.client() as c:
        return c.get(WELL_KNOWN)


@pytest.fixture(scope="module")
def jwks_response(secured_server: RunningServer) -> httpx.Response:
    with secured_server.client() as c:
        return c.get("/.well-known/jwks.json")


def ok_json(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.request.url.path}: {response.status_code} {response.text}"
    assert media_type(response) == "application/json"
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_az_35_signed_metadata_is_published_with_its_key_location(signed_response: httpx.Response, secured_server: RunningServer) -> None:
    signed = ok_json(signed_response)
    base = secured_server.base_url
    assert {k: v for k, v in signed.items() if k != "signed_metadata"} == expected_document(base)
    assert signed["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert isinstance(signed["signed_metadata"], str) and signed["signed_metadata"].count(".") == 2


def test_az_35_jwks_publishes_public_keys_only(jwks_response: httpx.Response) -> None:
    jwks = ok_json(jwks_response)
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert key["kty"] == "EC" and key["kid"] and key.get("alg") == "ES256"
        assert "d" not in key, "private key material must never be published"


def test_az_35_signed_metadata_verifies_against_jwks(signed_response: httpx.Response, jwks_response: httpx.Response) -> None:
    signed = ok_json(signed_response)
    jwks = ok_json(jwks_response)
    token = jwt.decode(signed["signed_metadata"], KeySet.import_key_set(jwks))
    assert token.header["alg"] == "ES256"
    assert token.header["kid"] in {key["kid"] for key in jwks["keys"]}


def test_az_35_signed_claims_equal_the_plain_members_and_name_the_issuer(signed_response: httpx.Response, jwks_response: httpx.Response) -> None:
    signed = ok_json(signed_response)
    jwks = ok_json(jwks_response)
    claims = dict(jwt.decode(signed["signed_metadata"], KeySet.import_key_set(jwks)).claims)
    assert claims.pop("iss") == signed["policy_decision_point"]
    issued, expires = claims.pop("iat", None), claims.pop("exp", None)
    if expires is not None:
        assert isinstance(expires, int) and (issued is None or expires > issued)
    plain = {k: v for k, v in signed.items() if k != "signed_metadata"}
    assert claims == plain


def test_az_36_signed_metadata_has_no_signed_metadata_claim(signed_response: httpx.Response, jwks_response: httpx.Response) -> None:
    signed = ok_json(signed_response)
    jwks = ok_json(jwks_response)
    assert "signed_metadata" not in jwt.decode(signed["signed_metadata"], KeySet.import_key_set(jwks)).claims


def test_az_38_signed_metadata_does_not_verify_with_a_foreign_key(signed_response: httpx.Response) -> None:
    signed = ok_json(signed_response)
    foreign = ECKey.generate_key("P-256", private=True)
    with pytest.raises(JoseError):
        jwt.decode(signed["signed_metadata"], ECKey.import_key(foreign.as_dict(private=False)))


def test_az_2_endpoint_urls_include_v1(client: httpx.Client) -> None:
    document = fetch(client)
    assert all("/v1/" in document[member] for member in ENDPOINTS)
