"""A small OAuth Authorization Server on top of the sidecar API, for the AROP end-to-end tests.

It does what DESIGN.md §3 leaves to the AS: client authentication (`client_secret_post`), DPoP
proof verification (RFC 9449: `typ`, ES256, signature by the header `jwk`, `htm`, `htu`, `iat`
window, `jti` replay), and minting ES256 JWT access tokens (`cnf.jkt`, `aud`, `exp` from the
grant). Decisions and continuation state are the sidecar's: the AS posts what it saw and relays
what it is told, exactly (status and body).

    POST /token    client_credentials (optionally with completion_mode=deferred),
                   urn:ietf:params:oauth:grant-type:deferred, refresh_token
    POST /revoke   RFC 7009; deferral codes go to the sidecar
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from litestar import Litestar, Request, Response, post

from profiles.arop import dtr
from tests.server import free_port

CLIENT_AUTH = "client_secret_post"
IAT_WINDOW = 60
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class OAuthFailure(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class AuthorizationServer:
    """`clients`: client_id → secret. The principal of a client_credentials grant is the
    client itself, as an `Agent` entity (spec/arop.md §10)."""

    def __init__(self, sidecar_url: str, sidecar_key: str, clients: dict[str, str]) -> None:
        self.sidecar = httpx.AsyncClient(base_url=sidecar_url, headers={"Authorization": f"Bearer {sidecar_key}"}, timeout=30)
        self.clients = clients
        self.signing_key = ECKey.generate_key("P-256", parameters={"kid": "as-1"})
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.seen_jti: set[str] = set()
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token → grant id, client, key

    # -- OAuth plumbing the AS owns --------------------------------------------------------

    def client(self, form: dict[str, str]) -> str:
        client_id = form.get("client_id", "")
        secret = self.clients.get(client_id)
        if secret is None or not secrets.compare_digest(secret, form.get("client_secret", "")):
            raise OAuthFailure(401, "invalid_client")
        return client_id

    def dpop(self, request: Request[Any, Any, Any], path: str) -> str | None:
        """RFC 9449 §4.3: the proof's checks; the key's RFC 7638 thumbprint (`jkt`)."""
        proof = request.headers.get("dpop")
        if proof is None:
            return None
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
        for member in ("authorization_details", "scope", "cnf", "act"):
            if member in grant:
                claims[member] = grant[member]
        token = jwt.encode({"alg": "ES256", "kid": "as-1", "typ": "at+jwt"}, claims, self.signing_key)
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

    def relay(self, answer: dict[str, Any], client_id: str) -> Response[Any]:
        """The sidecar's outcome on the OAuth wire: a token, or its status and body exactly."""
        headers = {"Cache-Control": "no-store"}
        outcome = answer.pop("outcome")
        if outcome == "allow":
            return Response(self.mint(answer["grant"], client_id), status_code=200, headers=headers)
        if outcome == "pending":
            return Response(answer["response"]["body"], status_code=answer["response"]["status"], headers=headers)
        return Response({k: v for k, v in answer.items() if k != "status"}, status_code=answer["status"], headers=headers)

    async def token(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        client_id = self.client(form)
        jkt = self.dpop(request, "/token")
        sender = {"dpop_jkt": jkt} if jkt else {}
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            decide: dict[str, Any] = {
                "binding": "dtr" if dtr.opted_in(form.get("completion_mode")) else "token",
                "grant_type": grant_type,
                "client": {"id": client_id, "auth_method": CLIENT_AUTH, "public": False},
                "subject": {"type": "Agent", "id": client_id},
                "sender": sender,
                "resource": request.query_params.getall("resource", []) or ([form["resource"]] if "resource" in form else []),
            }
            for member in ("scope", "completion_mode"):
                if member in form:
                    decide[member] = form[member]
            if "authorization_details" in form:
                decide["authorization_details"] = json.loads(form["authorization_details"])
            return self.relay(await self.ask("/oauth/v1/decide", decide), client_id)
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

    async def revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        client_id = self.client(form)
        jkt = self.dpop(request, "/revoke")
        if form.get("token_type_hint") == dtr.DEFERRAL_CODE_HINT:
            cancel = {
                "token": form.get("token", ""), "token_type_hint": dtr.DEFERRAL_CODE_HINT, "client_id": client_id,
                "auth_method": CLIENT_AUTH, "sender": {"dpop_jkt": jkt} if jkt else {},
            }
            await self.ask("/oauth/v1/cancel", cancel)
        return Response(b"", status_code=200)

    def app(self) -> Litestar:
        @post("/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.token(request)

        @post("/revoke", status_code=200)
        async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.revoke(request)

        def failed(_: Request[Any, Any, Any], exc: OAuthFailure) -> Response[Any]:
            return Response({"error": exc.error}, status_code=exc.status, headers={"Cache-Control": "no-store"})

        return Litestar([token, revoke], exception_handlers={OAuthFailure: failed}, openapi_config=None)


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
