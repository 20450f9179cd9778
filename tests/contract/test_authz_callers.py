"""Caller authentication of the AuthZEN endpoints (authzen-api.md §8.4, AZ-52, AZ-54).

`secured_server` has two callers: `pep` (scope evaluate) and `operator` (evaluate + admin).
`server` has none: loopback callers evaluate anonymously, the admin API is closed.
`credentials_server` has the other credential kinds of DESIGN.md §3: bearer JWTs verified
against issuers' JWK Sets served over real HTTPS, and client certificates a trusted proxy
forwards (RFC 9440 `Client-Cert`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from services.auth import AuthError, Authenticator, new_api_key
from services.config import CallerConfig, JwtCredential
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
from tests.https_receiver import HttpsReceiver, TestCA, https_receiver
from tests.integration.test_issuer_keys import publish
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


# -- DESIGN.md §3: bearer JWTs from a configured issuer, client certificates via a trusted proxy --

IDP = "https://idp.example"
OPS_IDP = "https://ops-idp.example"
AUDIENCE = "https://pdp.example/arop"


class Credentials:
    """The issuers (real HTTPS JWK Sets under a test CA), their keys, and client certificates."""

    def __init__(self, directory: Path, idp: HttpsReceiver, ops_idp: HttpsReceiver, ca: TestCA) -> None:
        self.idp, self.ops_idp, self.ca = idp, ops_idp, ca
        self.key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
        self.ops_key = RSAKey.generate_key(2048, parameters={"kid": "ops-1"}, private=True)
        publish(idp, self.key, max_age=3600)
        publish(ops_idp, self.ops_key, max_age=3600)
        self.certificate = _client_certificate(ca, "pep.internal")
        self.other_certificate = _client_certificate(ca, "stranger.internal")

    def jwks_uri(self, receiver: HttpsReceiver) -> str:
        return f"https://127.0.0.1:{receiver.port}/jwks"

    def config(self) -> str:
        ca_file = self.ca.ca_file
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(self.certificate).digest()).rstrip(b"=").decode()
        return (
            '[server]\ntrusted_proxies = ["127.0.0.1/32"]\n\n'
            f'[[callers]]\nname = "jwt-pep"\nscopes = ["evaluate"]\n'
            f'jwt = {{ issuer = "{IDP}", jwks_uri = "{self.jwks_uri(self.idp)}", audience = "{AUDIENCE}", subject = "pep-client", ca_file = "{ca_file}" }}\n\n'
            f'[[callers]]\nname = "jwt-as"\nscopes = ["oauth"]\n'
            f'jwt = {{ issuer = "{IDP}", jwks_uri = "{self.jwks_uri(self.idp)}", audience = "{AUDIENCE}", subject = "as-client", ca_file = "{ca_file}" }}\n\n'
            f'[[callers]]\nname = "jwt-operator"\nscopes = ["admin"]\n'
            f'jwt = {{ issuer = "{OPS_IDP}", jwks_uri = "{self.jwks_uri(self.ops_idp)}", audience = "{AUDIENCE}", subject = "operator", '
            f'algorithms = ["RS256"], ca_file = "{ca_file}" }}\n\n'
            f'[[callers]]\nname = "proxied-pep"\nscopes = ["evaluate"]\nmtls = {{ x5t_s256 = "{thumbprint}" }}\n'
        )


def _client_certificate(ca: TestCA, name: str) -> bytes:
    """The DER of a certificate the CA issued (which kind does not matter to a thumbprint)."""
    certificate_file, _ = ca.issue_server([name])
    return x509.load_pem_x509_certificate(certificate_file.read_bytes()).public_bytes(serialization.Encoding.DER)


def client_cert(der: bytes) -> dict[str, str]:
    """RFC 9440 §2.2: the certificate as a structured-field byte sequence."""
    return {"Client-Cert": f":{base64.b64encode(der).decode()}:"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": IDP, "sub": "pep-client", "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": f"j-{time.monotonic_ns()}"}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def token(key: Any, alg: str = "ES256", **overrides: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims(**overrides), key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Credentials]:
    directory = tmp_path_factory.mktemp("caller-credentials")
    ca = TestCA(directory)
    certificate, key = ca.issue_server(["127.0.0.1"])
    with ExitStack() as stack:
        idp = stack.enter_context(https_receiver(certificate, key))
        ops_idp = stack.enter_context(https_receiver(certificate, key))
        yield Credentials(directory, idp, ops_idp, ca)


@pytest.fixture(scope="module")
def credentials_server(tmp_path_factory: pytest.TempPathFactory, credentials: Credentials) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("credentials"), config=credentials.config()) as running:
        yield running


@pytest.fixture(scope="module")
def other(credentials_server: RunningServer) -> Iterator[httpx.Client]:
    with credentials_server.client() as c:
        yield c


def jwks_fetches(receiver: HttpsReceiver) -> int:
    return len([r for r in receiver.received if r.method == "GET"])


def test_design_3_jwt_caller_on_the_admin_api_fetches_its_issuers_keys_first(other: httpx.Client, credentials: Credentials) -> None:
    """A framework-routed API: the before-request hook loads the keys (RS256 from another issuer)."""
    assert jwks_fetches(credentials.ops_idp) == 0
    response = other.get("/admin/v1/bundle", headers=bearer(token(credentials.ops_key, "RS256", iss=OPS_IDP, sub="operator")))
    assert response.status_code == 200, response.text
    assert jwks_fetches(credentials.ops_idp) == 1


@pytest.mark.parametrize("path", ENDPOINTS)
def test_design_3_jwt_caller_is_served(other: httpx.Client, credentials: Credentials, path: str) -> None:
    response = other.post(path, json=VALID_BODIES[path], headers=bearer(token(credentials.key)))
    assert response.status_code == 200, response.text


def test_design_3_jwt_keys_are_cached(other: httpx.Client, credentials: Credentials) -> None:
    for _ in range(3):
        assert other.post(EVALUATION, json=BODY, headers=bearer(token(credentials.key))).status_code == 200
    assert jwks_fetches(credentials.idp) == 1  # max-age 3600; and no other issuer's set was fetched
    assert [r.path for r in credentials.idp.received] == ["/jwks"]


def test_design_3_jwt_as_caller_reaches_the_sidecar_api(other: httpx.Client, credentials: Credentials) -> None:
    """Authenticated (the malformed body is then a 400 problem), with the oauth scope."""
    response = other.post("/oauth/v1/decide", json={}, headers=bearer(token(credentials.key, sub="as-client")))
    assert_problem(response, 400)
    response = other.post("/oauth/v1/decide", json={}, headers=bearer(token(credentials.key, sub="pep-client")))
    assert_problem(response, 403)


def _refusals() -> dict[str, Any]:
    """Tokens that must not authenticate, built from the issuer's credentials."""

    def alg_none(c: Credentials) -> str:
        header = _b64(json.dumps({"alg": "none", "kid": "idp-1"}).encode())
        return f"{header}.{_b64(json.dumps(claims()).encode())}."

    def hs256_with_the_public_key(c: Credentials) -> str:
        secret = OctKey.import_key(json.dumps(c.key.as_dict(private=False)).encode(), {"kid": "idp-1"})
        return jwt.encode({"alg": "HS256", "kid": "idp-1"}, claims(), secret, algorithms=["HS256"])

    def tampered(c: Credentials) -> str:
        header, _, signature = token(c.key).split(".")
        return f"{header}.{_b64(json.dumps(claims(sub='pep-client', exp=int(time.time()) + 86400)).encode())}.{signature}"

    def unknown_kid(c: Credentials) -> str:
        return token(ECKey.generate_key("P-256", parameters={"kid": "stranger"}, private=True))

    def right_kid_wrong_key(c: Credentials) -> str:
        return token(ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True))

    return {
        "wrong iss": lambda c: token(c.key, iss="https://evil.example"),
        "iss of another configured issuer": lambda c: token(c.key, iss=OPS_IDP, sub="operator"),
        "wrong aud": lambda c: token(c.key, aud="https://someone-else.example"),
        "aud missing": lambda c: token(c.key, aud=None),
        "unknown sub": lambda c: token(c.key, sub="mallory"),
        "expired": lambda c: token(c.key, iat=int(time.time()) - 600, exp=int(time.time()) - 120),
        "exp missing": lambda c: token(c.key, exp=None),
        "exp not a number": lambda c: token(c.key, exp="tomorrow"),
        "nbf in the future": lambda c: token(c.key, nbf=int(time.time()) + 300),
        "iat in the future": lambda c: token(c.key, iat=int(time.time()) + 300),
        "alg none": alg_none,
        "HS256 keyed with the public key": hs256_with_the_public_key,
        "RS256 not allowed for this issuer": lambda c: token(RSAKey.generate_key(2048, parameters={"kid": "idp-1"}, private=True), "RS256"),
        "tampered payload": tampered,
        "unknown kid": unknown_kid,
        "known kid, another key": right_kid_wrong_key,
        "not a JWS": lambda c: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_design_3_jwt_refusals_are_401(other: httpx.Client, credentials: Credentials, case: str) -> None:
    response = other.post(EVALUATION, json=BODY, headers=bearer(REFUSALS[case](credentials)))
    error = assert_authzen_error(response, 401)
    assert_challenge(response)
    assert error["message"] == "invalid credentials"  # which check failed is not told


def test_design_3_jwt_refusal_on_the_sidecar_api_is_a_401_problem(other: httpx.Client, credentials: Credentials) -> None:
    response = other.post("/oauth/v1/decide", json={}, headers=bearer(token(credentials.key, sub="as-client", aud="https://x.example")))
    problem = assert_problem(response, 401)
    assert problem["detail"] == "invalid credentials"
    assert_challenge(response)


def test_design_3_why_a_jwt_was_refused_is_logged_but_never_the_token(credentials_server: RunningServer, credentials: Credentials) -> None:
    refused = token(credentials.key, aud="https://elsewhere.example")
    with credentials_server.client() as c:
        assert c.post(EVALUATION, json=BODY, headers=bearer(refused)).status_code == 401
    log = credentials_server.log.read_text()
    assert "caller JWT refused" in log and "does not name this service" in log
    assert refused.split(".")[0] not in log and refused.split(".")[2] not in log and "eyJ" not in log


def test_design_3_jwt_caller_without_the_scope_is_403(other: httpx.Client, credentials: Credentials) -> None:
    response = other.post(EVALUATION, json=BODY, headers=bearer(token(credentials.key, sub="as-client")))
    assert assert_authzen_error(response, 403)["error"] == "forbidden"
    response = other.get("/admin/v1/bundle", headers=bearer(token(credentials.key)))
    assert "admin" in assert_problem(response, 403)["detail"]


def test_design_3_the_caller_set_is_not_open_on_loopback(other: httpx.Client) -> None:
    """JWT and mTLS callers are configured callers: no anonymous loopback access."""
    assert_authzen_error(other.post(EVALUATION, json=BODY), 401)


def test_design_3_mtls_caller_via_a_trusted_proxy_is_served(other: httpx.Client, credentials: Credentials) -> None:
    response = other.post(EVALUATION, json=BODY, headers=client_cert(credentials.certificate))
    assert response.status_code == 200, response.text
    response = other.get("/admin/v1/bundle", headers=client_cert(credentials.certificate))
    assert "admin" in assert_problem(response, 403)["detail"]  # recognized on every API, scoped


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda c: client_cert(c.other_certificate), id="another certificate"),
        pytest.param(lambda c: client_cert(c.certificate[:-1] + bytes([c.certificate[-1] ^ 1])), id="one bit off"),
        pytest.param(lambda c: {"Client-Cert": base64.b64encode(c.certificate).decode()}, id="not a byte sequence"),
        pytest.param(lambda c: {"Client-Cert": ":not base64!:"}, id="not base64"),
        pytest.param(lambda c: {"Client-Cert": "::"}, id="empty"),
    ],
)
def test_design_3_mtls_wrong_certificate_is_401(other: httpx.Client, credentials: Credentials, headers: Any) -> None:
    response = other.post(EVALUATION, json=BODY, headers=headers(credentials))
    assert_authzen_error(response, 401)
    assert_challenge(response)


def test_design_3_mtls_certificate_sent_twice_is_401(other: httpx.Client, credentials: Credentials) -> None:
    value = client_cert(credentials.certificate)["Client-Cert"]
    headers = [("Client-Cert", value), ("Client-Cert", value), ("Content-Type", "application/json")]
    response = other.post(EVALUATION, content=json.dumps(BODY), headers=headers)
    assert_authzen_error(response, 401)
    response = other.get("/admin/v1/bundle", headers=[("Client-Cert", value), ("Client-Cert", value)])
    assert_problem(response, 401)


def test_design_3_client_cert_from_an_untrusted_peer_is_ignored(credentials_server: RunningServer, credentials: Credentials) -> None:
    """127.0.0.2 is not in trusted_proxies: the header proves nothing, whatever it holds."""
    with credentials_server.client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as untrusted:
        response = untrusted.post(EVALUATION, json=BODY, headers=client_cert(credentials.certificate))
        assert_authzen_error(response, 401)
        assert_challenge(response)
        assert_problem(untrusted.get("/admin/v1/bundle", headers=client_cert(credentials.certificate)), 401)
        # The same peer with a bearer credential is served: only the header was ignored.
        assert untrusted.post(EVALUATION, json=BODY, headers=bearer(token(credentials.key))).status_code == 200


# -- key rotation and refetch limits (in process: the refetch interval is a constructor knob) ----


def jwt_authenticator(receiver: HttpsReceiver, ca: TestCA, *, min_refresh: float) -> Authenticator:
    credential = JwtCredential(issuer=IDP, jwks_uri=f"https://127.0.0.1:{receiver.port}/jwks", audience=AUDIENCE, subject="pep-client", ca_file=str(ca.ca_file))
    return Authenticator([CallerConfig(name="jwt-pep", jwt=credential)], min_refresh=min_refresh)


async def authenticated(authenticator: Authenticator, credential: str) -> str:
    authorization = f"Bearer {credential}"
    await authenticator.prepare(authorization)
    return authenticator.authenticate(authorization, "127.0.0.1", "evaluate").name


@pytest.fixture
def jwks(tmp_path: Path) -> Iterator[tuple[HttpsReceiver, TestCA]]:
    ca = TestCA(tmp_path)
    certificate, key = ca.issue_server(["127.0.0.1"])
    with https_receiver(certificate, key) as receiver:
        yield receiver, ca


async def test_design_3_key_rotation_refetches_once_and_accepts_the_new_kid(jwks: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks
    old, new = (ECKey.generate_key("P-256", parameters={"kid": kid}, private=True) for kid in ("idp-1", "idp-2"))
    publish(receiver, old, max_age=3600)
    authenticator = jwt_authenticator(receiver, ca, min_refresh=0)
    assert await authenticated(authenticator, token(old)) == "jwt-pep"
    publish(receiver, old, new, max_age=3600)  # the issuer rotates
    assert await authenticated(authenticator, token(new)) == "jwt-pep"
    assert await authenticated(authenticator, token(old)) == "jwt-pep"
    assert await authenticated(authenticator, token(new)) == "jwt-pep"
    assert jwks_fetches(receiver) == 2  # one refetch, for the new kid only


async def test_design_3_forged_kids_cannot_make_us_hammer_the_issuer(jwks: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
    publish(receiver, key, max_age=3600)
    authenticator = jwt_authenticator(receiver, ca, min_refresh=60)
    assert await authenticated(authenticator, token(key)) == "jwt-pep"
    for n in range(5):
        with pytest.raises(AuthError) as refused:
            await authenticated(authenticator, token(ECKey.generate_key("P-256", parameters={"kid": f"forged-{n}"}, private=True)))
        assert refused.value.status == 401
    assert jwks_fetches(receiver) == 1


async def test_design_3_jwks_is_fetched_over_verified_tls_only(tmp_path: Path, jwks: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, _ = jwks
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
    publish(receiver, key)
    (tmp_path / "other").mkdir()
    authenticator = jwt_authenticator(receiver, TestCA(tmp_path / "other", name="Untrusted CA"), min_refresh=60)
    with pytest.raises(AuthError):
        await authenticated(authenticator, token(key))
    assert receiver.received == []  # the handshake failed before any request


async def test_design_3_without_prepare_a_jwt_is_refused_not_trusted(jwks: tuple[HttpsReceiver, TestCA]) -> None:
    """Authentication itself never waits: keys not loaded yet mean 401, never an unverified pass."""
    receiver, ca = jwks
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
    publish(receiver, key)
    authenticator = jwt_authenticator(receiver, ca, min_refresh=60)
    with pytest.raises(AuthError):
        authenticator.authenticate(f"Bearer {token(key)}", "127.0.0.1", "evaluate")
    assert receiver.received == []


async def test_design_3_a_huge_jwks_is_refused(jwks: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
    receiver.document = msgspec.json.encode({"keys": [{**key.as_dict(private=False), "kid": "idp-1"}], "padding": "x" * 300_000})
    authenticator = jwt_authenticator(receiver, ca, min_refresh=60)
    with pytest.raises(AuthError):
        await authenticated(authenticator, token(key))
    assert jwks_fetches(receiver) == 1
