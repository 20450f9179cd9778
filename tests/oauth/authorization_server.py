"""A small OAuth Authorization Server on top of the sidecar API, for the AROP end-to-end tests.

It does what DESIGN.md §3 leaves to the AS: client authentication (`client_secret_post`), DPoP
proof verification (RFC 9449: `typ`, ES256, signature by the header `jwk`, `htm`, `htu`, `iat`
window, `jti` replay), and minting ES256 JWT access tokens (`cnf.jkt`, `aud`, `exp` from the
grant). Decisions and continuation state are the sidecar's: the AS posts what it saw and relays
what it is told, exactly (status and body).

    POST /token    client_credentials (optionally with completion_mode=deferred),
                   urn:ietf:params:oauth:grant-type:deferred, refresh_token, token-exchange
                   (RFC 8693: of this AS's own access tokens; one from a recorded grant goes
                   to exchange-check, any other is an originating grant)
    POST /revoke   RFC 7009; refresh tokens are the AS's, any other token goes to the sidecar
    POST /txn      the transaction authorization endpoint (TX-37..TX-40): a `transaction_challenge`
                   → decide (binding txn), a `transaction_authorization_id` → redeem
    POST /bc-authorize  CIBA backchannel authentication (the principal is the `login_hint` user,
                   acted for by the client: OP-49); its grant urn:openid:params:grant-type:ciba
                   is served by POST /token
    POST /ciba/push     the sidecar's push notification (HMAC-signed, OP-51): mint the grant and
                   deliver the tokens, or the error, to the client's endpoint (TX-27, TX-28)

Client Challenge (oauth-transports.md §5): the clients in `challenge_clients` registered
`insufficient_client_authorization_supported: true` (TX-59), which the AS passes with each of
their requests; a token request's `challenge_session` and evidence (the OAuth-Client-Attestation
and OAuth-Client-Attestation-PoP headers, the `mandate` parameter, a further profile's
`EVIDENCE_PARAMETERS`) are relayed as they came, and the 403 challenge relayed like any error.
The client credentials grant consumes nothing, so a challenge leaves nothing spent (TX-58).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from litestar import Litestar, Request, Response, get, post

from profiles.arap.callbacks import SIGNATURE_HEADER, verify_callback_signature
from profiles.arop import ciba, dtr
from tests.server import free_port

CLIENT_AUTH = "client_secret_post"
IAT_WINDOW = 60
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1, TX-3
EVIDENCE_PARAMETERS = ("vp_token",)  # the parameter of the extension type the tests configure


class OAuthFailure(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class AuthorizationServer:
    """`clients`: client_id → secret. The principal of a client_credentials grant is the
    client itself, as an `Agent` entity (spec/arop.md §10)."""

    def __init__(
        self, sidecar_url: str, sidecar_key: str, clients: dict[str, str], *, port: int | None = None,
        push_secret: str = "", ca_file: str | None = None, challenge_clients: frozenset[str] = frozenset(),
    ) -> None:
        self.sidecar = httpx.AsyncClient(base_url=sidecar_url, headers={"Authorization": f"Bearer {sidecar_key}"}, timeout=30)
        self.clients = clients
        self.challenge_clients = challenge_clients
        self.signing_key = ECKey.generate_key("P-256", parameters={"kid": "as-1"})
        self.port = port or free_port()
        # CIBA: each client's registered delivery mode and notification endpoint, the secret the
        # sidecar signs push notifications with, the CA of the clients' endpoints, what was pushed.
        self.ciba_clients: dict[str, dict[str, str]] = {}
        self.push_secret = push_secret.encode()
        self.ca_file = ca_file
        self.pushed: list[dict[str, Any]] = []
        self.pushed_grants: set[str] = set()  # the grant_ids minted through push (at-least-once notices)
        # An outage of the push endpoint: while set, each signed notice is refused with this
        # status (and kept in `refused`), so that the sidecar has to deliver it again later.
        self.push_status: int | None = None
        self.refused: list[dict[str, Any]] = []
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.seen_jti: set[str] = set()
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token → grant id, client, key
        self.access_tokens: dict[str, dict[str, Any]] = {}  # access token jti → grant id, subject (RFC 8693)

    # -- OAuth plumbing the AS owns --------------------------------------------------------

    def client(self, form: dict[str, str]) -> str:
        client_id = form.get("client_id", "")
        secret = self.clients.get(client_id)
        if secret is None or not secrets.compare_digest(secret, form.get("client_secret", "")):
            raise OAuthFailure(401, "invalid_client")
        return client_id

    def dpop(self, request: Request[Any, Any, Any], path: str) -> str | None:
        """RFC 9449 §4.3: the proof's checks; the key's RFC 7638 thumbprint (`jkt`)."""
        proofs = request.headers.getall("dpop", [])
        if not proofs:
            return None
        if len(proofs) != 1:  # RFC 9449 §4.3 (TX-69): exactly one proof
            raise OAuthFailure(400, "invalid_dpop_proof")
        proof = proofs[0]
        try:
            header = _header(proof)
            if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256" or "d" in header.get("jwk", {}):
                raise OAuthFailure(400, "invalid_dpop_proof")
            key = ECKey.import_key(header["jwk"])
            claims = jwt.decode(proof, key, algorithms=["ES256"]).claims
        except (JoseError, ValueError, KeyError, TypeError):
            raise OAuthFailure(400, "invalid_dpop_proof") from None
        if claims.get("htm") != "POST" or claims.get("htu") != self.issuer + path:
            raise OAuthFailure(400, "invalid_dpop_proof")
        if not isinstance(claims.get("iat"), int) or abs(time.time() - claims["iat"]) > IAT_WINDOW:
            raise OAuthFailure(400, "invalid_dpop_proof")
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self.seen_jti:
            raise OAuthFailure(400, "invalid_dpop_proof")
        self.seen_jti.add(jti)
        return key.thumbprint()

    def mint(self, grant: dict[str, Any], client_id: str) -> dict[str, Any]:
        """A JWT access token exactly as the grant says (OP-3, OP-34, OP-63)."""
        now = int(time.time())
        exp = int(datetime.fromisoformat(grant["expires_at"].replace("Z", "+00:00")).timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": grant["subject"]["id"], "client_id": client_id, "iat": now, "exp": exp,
            "jti": secrets.token_urlsafe(12), "aud": grant["audience"] or [self.issuer],
        }
        for member in ("authorization_details", "scope", "cnf", "txn"):
            if member in grant:
                claims[member] = grant[member]
        if "actor" in grant:  # RFC 8693: the acting party goes in `act`
            claims["act"] = grant["actor"]
        token = jwt.encode({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}, claims, self.signing_key)
        self.access_tokens[claims["jti"]] = {"grant_id": grant.get("grant_id"), "subject": grant["subject"]}
        body: dict[str, Any] = {"access_token": token, "token_type": "DPoP" if "cnf" in grant else "Bearer", "expires_in": grant["expires_in"]}
        for member in ("authorization_details", "scope"):
            if member in grant:
                body[member] = grant[member]
        if grant.get("refresh_allowed") and "grant_id" in grant:  # standing access: re-decide instead
            refresh = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = {"grant_id": grant["grant_id"], "client_id": client_id, "cnf": grant.get("cnf")}
            body["refresh_token"] = refresh
        return body

    # -- relaying the sidecar ---------------------------------------------------------------

    async def ask(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.sidecar.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def relay(self, answer: dict[str, Any], client_id: str, *, id_token: bool = False, exchanged: bool = False) -> Response[Any]:
        """The sidecar's outcome on the OAuth wire: a token, or its status and body exactly.
        A CIBA token response adds the ID Token (TX-25), an exchange `issued_token_type` (TX-74)."""
        headers = NO_STORE
        outcome = answer.pop("outcome")
        if outcome == "allow":
            body = self.mint(answer["grant"], client_id)
            if id_token:
                body["id_token"] = self.id_token(answer["grant"]["subject"]["id"], client_id, body["access_token"])
            if exchanged:
                body["issued_token_type"] = ACCESS_TOKEN_TYPE
            return Response(body, status_code=200, headers=headers)
        if outcome == "pending":
            return Response(answer["response"]["body"], status_code=answer["response"]["status"], headers=headers)
        return Response({k: v for k, v in answer.items() if k != "status"}, status_code=answer["status"], headers=headers)

    async def token(self, request: Request[Any, Any, Any]) -> Response[Any]:
        raw = await request.form()
        form = dict(raw)
        client_id = self.client(form)
        jkt = self.dpop(request, "/token")
        sender = {"dpop_jkt": jkt} if jkt else {}
        grant_type = form.get("grant_type")
        resources = request.query_params.getall("resource", []) or raw.getall("resource", [])  # RFC 8707: repeatable
        if grant_type == "client_credentials":
            decide = _decide(form, resources, client_id, sender, grant_type, {"type": "Agent", "id": client_id})
            return self.relay(await self.ask("/oauth/v1/decide", self.answering(decide, request, form)), client_id)
        if grant_type == TOKEN_EXCHANGE:
            return await self.exchange(form, resources, client_id, sender, request)
        if grant_type == ciba.GRANT_TYPE:
            redeem = {"binding": "ciba", "handle": form.get("auth_req_id", ""), "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": sender}
            return self.relay(await self.ask("/oauth/v1/redeem", redeem), client_id, id_token=True)
        if grant_type == dtr.GRANT_TYPE:
            redeem = {"binding": "dtr", "handle": form.get("deferral_code", ""), "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": sender}
            return self.relay(await self.ask("/oauth/v1/redeem", redeem), client_id)
        if grant_type == "refresh_token":
            known = self.refresh_tokens.get(form.get("refresh_token", ""))
            if known is None or known["client_id"] != client_id:
                raise OAuthFailure(400, "invalid_grant")
            check = {"grant_id": known["grant_id"], "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": sender}
            return self.relay(await self.ask("/oauth/v1/refresh-check", check), client_id)
        raise OAuthFailure(400, "unsupported_grant_type")

    async def exchange(
        self, form: dict[str, str], resources: list[str], client_id: str, sender: dict[str, str], request: Request[Any, Any, Any]
    ) -> Response[Any]:
        """RFC 8693 (TX-73..TX-76): the subject token must be a live access token of this AS. One
        minted from a recorded grant goes to exchange-check (same client and key, inside the
        approval, never broader); any other is an originating grant like client_credentials,
        its subject the token's, the DTR opt-in included (TX-8, TX-76)."""
        if not form.get("subject_token") or not form.get("subject_token_type") or ("actor_token" in form) != ("actor_token_type" in form):
            raise OAuthFailure(400, "invalid_request")
        minted = self.own_token(form["subject_token"], form["subject_token_type"])
        if "actor_token" in form:
            self.own_token(form["actor_token"], form["actor_token_type"])
        if minted["grant_id"] is not None:
            check: dict[str, Any] = {"grant_id": minted["grant_id"], "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": sender}
            if resources:
                check["resource"] = resources
            if "scope" in form:
                check["scope"] = form["scope"]
            details = _details(form)
            if details is not None:
                check["authorization_details"] = details
            return self.relay(await self.ask("/oauth/v1/exchange-check", check), client_id, exchanged=True)
        decide = _decide(form, resources, client_id, sender, TOKEN_EXCHANGE, minted["subject"])
        return self.relay(await self.ask("/oauth/v1/decide", self.answering(decide, request, form)), client_id, exchanged=True)

    def answering(self, decide: dict[str, Any], request: Request[Any, Any, Any], form: dict[str, str]) -> dict[str, Any]:
        """A token request's Client Challenge members: the client's registered support (TX-59),
        and a follow-up's `challenge_session` and evidence, relayed as sent (TX-58)."""
        decide["client"]["insufficient_client_authorization_supported"] = decide["client"]["id"] in self.challenge_clients
        if "challenge_session" in form:
            decide["challenge_session"] = form["challenge_session"]
        evidence: dict[str, Any] = {}
        for member, header in (("client_attestation", "oauth-client-attestation"), ("client_attestation_pop", "oauth-client-attestation-pop")):
            if header in request.headers:
                evidence[member] = request.headers[header]
        if "mandate" in form:
            evidence["mandate"] = form["mandate"]
        parameters = {name: form[name] for name in EVIDENCE_PARAMETERS if name in form}
        if parameters:
            evidence["parameters"] = parameters
        if evidence:
            decide["evidence"] = evidence
        return decide

    def own_token(self, token: str, token_type: str) -> dict[str, Any]:
        """TX-75: a subject (or actor) token that is not an unexpired access token of this AS is
        invalid_request."""
        try:
            claims = jwt.decode(token, self.signing_key, algorithms=["ES256"]).claims
        except (JoseError, ValueError):
            raise OAuthFailure(400, "invalid_request") from None
        minted = self.access_tokens.get(str(claims.get("jti")))
        if token_type != ACCESS_TOKEN_TYPE or minted is None or not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            raise OAuthFailure(400, "invalid_request")
        return minted

    def id_token(self, subject: str, client_id: str, access_token: str) -> str:
        """CIBA Core §11 (TX-25): the ID Token of a poll or ping client's token response."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": client_id, "iat": now, "exp": now + 300, "at_hash": _half_hash(access_token)}
        return jwt.encode({"alg": "ES256", "kid": "as-1"}, claims, self.signing_key)

    async def backchannel(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """CIBA §7: the AS resolves `login_hint` to the user (here: the User of that id) and
        posts the request with the client's registered delivery mode and endpoint (OP-49)."""
        form = dict(await request.form())
        client_id = self.client(form)
        jkt = self.dpop(request, "/bc-authorize")
        registered = self.ciba_clients.get(client_id, {"mode": "poll"})
        parameters: dict[str, Any] = {"delivery_mode": registered["mode"]}
        if "endpoint" in registered:
            parameters["notification_endpoint"] = registered["endpoint"]
        for member in ("login_hint", "login_hint_token", "id_token_hint", "binding_message", "requested_expiry", "client_notification_token"):
            if member in form:
                parameters[member] = form[member]
        decide: dict[str, Any] = {
            "binding": "ciba",
            "grant_type": ciba.GRANT_TYPE,
            "client": {"id": client_id, "auth_method": CLIENT_AUTH, "public": False},
            "subject": {"type": "User", "id": form.get("login_hint", "")},
            "actor": {"sub": client_id},
            "sender": {"dpop_jkt": jkt} if jkt else {},
            "ciba": parameters,
        }
        for member in ("scope",):
            if member in form:
                decide[member] = form[member]
        if "resource" in form:  # RFC 8707 on the backchannel request, as at the token endpoint
            decide["resource"] = [form["resource"]]
        details = _details(form)
        if details is not None:
            decide["authorization_details"] = details
        return self.relay(await self.ask("/oauth/v1/decide", decide), client_id)

    async def push(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """OP-51, TX-27, TX-28: the sidecar's signed notice; the AS mints and delivers."""
        raw = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify_callback_signature(self.push_secret, signature, raw, now=datetime.now(UTC), window=timedelta(minutes=5)):
            return Response({"error": "bad signature"}, status_code=401)
        notice = json.loads(raw)
        if self.push_status is not None:
            self.refused.append(notice)
            return Response(b"", status_code=self.push_status)
        body = dict(notice["push"]["body"])
        if notice["outcome"] == "allow":
            if notice["grant"]["grant_id"] in self.pushed_grants:  # a repeat after a lost 2xx: mint once
                return Response(b"", status_code=204)
            self.pushed_grants.add(notice["grant"]["grant_id"])
            minted = self.mint(notice["grant"], notice["client_id"])
            body.update({k: minted[k] for k in ("access_token", "token_type", "expires_in")})
            claims = {
                "iss": self.issuer, "sub": notice["grant"]["subject"]["id"], "aud": notice["client_id"], "iat": int(time.time()),
                "exp": int(time.time()) + 300, **notice["push"]["id_token_claims"], "at_hash": _half_hash(minted["access_token"]),
            }
            body["id_token"] = jwt.encode({"alg": "ES256", "kid": "as-1"}, claims, self.signing_key)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=self.ca_file), timeout=10) as http:
            delivered = await http.post(
                notice["notification_endpoint"], json=body, headers={"Authorization": f"Bearer {notice['client_notification_token']}"}
            )
        self.pushed.append({"notice": notice, "delivered": body, "status": delivered.status_code})
        return Response(b"", status_code=204)

    async def txn(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """TX-37..TX-40: the initial request carries the challenge, polls the id; both go to the
        sidecar with the client and key verified here (TX-39). The principal is the client's
        Agent entity, as at the token endpoint."""
        form = dict(await request.form())
        client_id = self.client(form)
        jkt = self.dpop(request, "/txn")
        sender = {"dpop_jkt": jkt} if jkt else {}
        if "transaction_challenge" in form:
            decide = {
                "binding": "txn", "grant_type": "client_credentials", "sender": sender,
                "client": {"id": client_id, "auth_method": CLIENT_AUTH, "public": False},
                "subject": {"type": "Agent", "id": client_id}, "transaction_challenge": form["transaction_challenge"],
            }
            return self.relay(await self.ask("/oauth/v1/decide", decide), client_id)
        if "transaction_authorization_id" in form:
            redeem = {"binding": "txn", "handle": form["transaction_authorization_id"], "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": sender}
            return self.relay(await self.ask("/oauth/v1/redeem", redeem), client_id)
        raise OAuthFailure(400, "invalid_request")

    async def revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        client_id = self.client(form)
        jkt = self.dpop(request, "/revoke")
        token = form.get("token")
        if not token:  # RFC 7009 §2.1 (TX-77): `token` is REQUIRED
            raise OAuthFailure(400, "invalid_request")
        known = self.refresh_tokens.get(token)
        if known is not None:  # one of ours: only its own client revokes it
            if known["client_id"] == client_id:
                del self.refresh_tokens[token]
        else:  # TX-78: whatever the hint says, a token the AS does not hold may be a deferral code
            cancel: dict[str, Any] = {"token": token, "client_id": client_id, "auth_method": CLIENT_AUTH, "sender": {"dpop_jkt": jkt} if jkt else {}}
            if "token_type_hint" in form:
                cancel["token_type_hint"] = form["token_type_hint"]
            await self.ask("/oauth/v1/cancel", cancel)
        return Response(b"", status_code=200)

    async def metadata(self) -> dict[str, Any]:
        """RFC 8414, OP-12: the AS's own members and endpoints, the sidecar's members for the
        transports it serves, and each served transport's endpoint (TX-37)."""
        served = (await self.sidecar.get("/oauth/v1/metadata")).json()
        endpoints = {
            "dtr": {"revocation_endpoint": "/revoke"},
            "ciba": {"backchannel_authentication_endpoint": "/bc-authorize"},
            "txn": {"transaction_authorization_endpoint": "/txn"},
        }
        document: dict[str, Any] = {
            "issuer": self.issuer, "token_endpoint": self.issuer + "/token",
            "token_endpoint_auth_methods_supported": [CLIENT_AUTH], "dpop_signing_alg_values_supported": ["ES256"],
        }
        for transport in served["transports"]:
            document.update({name: self.issuer + path for name, path in endpoints[transport].items()})
        own_grants = ["client_credentials", "refresh_token", TOKEN_EXCHANGE]
        document.update({**served["metadata"], "grant_types_supported": own_grants + served["metadata"]["grant_types_supported"]})
        return document

    def app(self) -> Litestar:
        @get("/.well-known/oauth-authorization-server")
        async def metadata() -> dict[str, Any]:
            return await self.metadata()

        @post("/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.token(request)

        @post("/revoke", status_code=200)
        async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.revoke(request)

        @post("/bc-authorize", status_code=200)
        async def backchannel(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.backchannel(request)

        @post("/ciba/push", status_code=200)
        async def push(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.push(request)

        @post("/txn", status_code=200)
        async def txn(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.txn(request)

        def failed(_: Request[Any, Any, Any], exc: OAuthFailure) -> Response[Any]:
            return Response({"error": exc.error}, status_code=exc.status, headers=NO_STORE)

        return Litestar([metadata, token, revoke, backchannel, push, txn], exception_handlers={OAuthFailure: failed}, openapi_config=None)


def _half_hash(token: str) -> str:
    """OIDC `at_hash` for ES256: the left half of the SHA-256 of the token, base64url."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def _decide(
    form: dict[str, str], resources: list[str], client_id: str, sender: dict[str, str], grant_type: str, subject: dict[str, Any]
) -> dict[str, Any]:
    """A token request as the sidecar's decide wants it; the DTR opt-in picks the binding."""
    decide: dict[str, Any] = {
        "binding": "dtr" if dtr.opted_in(form.get("completion_mode")) else "token",
        "grant_type": grant_type,
        "client": {"id": client_id, "auth_method": CLIENT_AUTH, "public": False},
        "subject": subject,
        "sender": sender,
        "resource": resources,
    }
    for member in ("scope", "completion_mode"):
        if member in form:
            decide[member] = form[member]
    details = _details(form)
    if details is not None:
        decide["authorization_details"] = details
    return decide


def _details(form: dict[str, str]) -> list[dict[str, Any]] | None:
    """RFC 9396 (TX-63, TX-65): form-encoded JSON, an array of objects; anything else is
    invalid_authorization_details (the sidecar takes only an array of objects)."""
    if "authorization_details" not in form:
        return None
    try:
        details = json.loads(form["authorization_details"], parse_constant=_not_json)
    except ValueError:
        raise OAuthFailure(400, "invalid_authorization_details") from None
    if not isinstance(details, list) or not all(isinstance(element, dict) for element in details):
        raise OAuthFailure(400, "invalid_authorization_details")
    return details


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _header(compact: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, read to find the key it names (`jwk`)."""
    encoded = compact.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))  # type: ignore[no-any-return]


@contextmanager
def running(server: AuthorizationServer) -> Iterator[AuthorizationServer]:
    """Serve the AS with uvicorn on 127.0.0.1 in a thread of the test process."""
    config = uvicorn.Config(server.app(), host="127.0.0.1", port=server.port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="test-authorization-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test authorization server did not start")
        time.sleep(0.02)
    try:
        yield server
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
