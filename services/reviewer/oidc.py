"""Sign-in to the reviewer UI with OpenID Connect: the authorization code flow with PKCE
(OpenID Connect Core 1.0 §3.1, RFC 7636), through Authlib's OAuth 2.0 client.

The provider's metadata comes from its discovery document, fetched once and checked: its
`issuer` must be the configured one (OpenID Connect Discovery §4.3). The ID token is verified
with joserfc against the provider's JWK Set (§3.1.3.7): signature, `iss`, `aud` (and `azp` when
there are several audiences), `exp`, `iat`, and the `nonce` this sign-in sent. `state` ties
the callback to the browser session that started the sign-in (no login CSRF); the PKCE
verifier ties the code to it (no code injection).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import warnings
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError

from profiles.arap.signed import UnverifiedToken, verify_jwt
from services.config import OidcConfig
from services.jwks import JwksCache, cached_tls_context
from services.reviewer.sessions import same_secret
from services.store.records import OidcLogin, SignedIn

import authlib.deprecate  # noqa: F401  (installs Authlib's "always warn" filter first, so ours wins)

with warnings.catch_warnings():
    # Authlib prefers the `httpx2` package and warns when it uses httpx; httpx is what we ship.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
CLOCK_SKEW = 60  # seconds allowed between the provider's clock and ours


class SignInFailed(Exception):
    """The sign-in did not prove who the person is; the message says why (shown to them)."""


class OidcSignIn:
    def __init__(self, config: OidcConfig, redirect_uri: str) -> None:
        self.config = config
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, Any] | None = None
        self._keys: JwksCache | None = None
        self._lock = asyncio.Lock()

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id, client_secret=self.config.client_secret or None, scope=" ".join(self.config.scopes),
            redirect_uri=self.redirect_uri, code_challenge_method="S256", verify=cached_tls_context(self.config.ca_file), trust_env=False, timeout=10,
        )

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None:
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    async with httpx.AsyncClient(verify=cached_tls_context(self.config.ca_file), trust_env=False, timeout=10) as client:
                        response = await client.get(url)
                    document = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    raise SignInFailed(f"the identity provider is unreachable ({type(exc).__name__})") from None
                if not isinstance(document, dict) or document.get("issuer") != self.config.issuer:
                    raise SignInFailed("the identity provider's discovery document does not name the configured issuer")
                if "S256" not in document.get("code_challenge_methods_supported", ["S256"]):
                    raise SignInFailed("the identity provider does not support PKCE with S256")
                for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(endpoint), str):
                        raise SignInFailed(f"the identity provider's discovery document has no {endpoint}")
                self._metadata = document
                self._keys = JwksCache(document["jwks_uri"], ca_file=self.config.ca_file)
            return self._metadata

    async def begin(self, next_path: str) -> tuple[str, OidcLogin]:
        """The provider's authorization URL to send the browser to, and what the callback must
        find in the session."""
        metadata = await self.metadata()
        login = OidcLogin(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), code_verifier=secrets.token_urlsafe(48), next=next_path)
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=login.state, code_verifier=login.code_verifier, nonce=login.nonce
            )
        return url, login

    async def finish(self, login: OidcLogin, code: str) -> SignedIn:
        """Redeem the code with the PKCE verifier and verify the ID token it returns."""
        metadata = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(metadata["token_endpoint"], code=code, code_verifier=login.code_verifier)
        except Exception as exc:  # Authlib raises OAuthError, httpx its own: the code was not redeemed
            raise SignInFailed(f"the identity provider refused the code ({getattr(exc, 'error', type(exc).__name__)})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("the identity provider returned no ID token")
        claims = await self._verify(id_token, login.nonce)
        entity_id = claims.get(self.config.entity_claim)
        if not isinstance(entity_id, str) or not entity_id:
            raise SignInFailed(f"the ID token has no {self.config.entity_claim!r} claim to identify you by")
        # The entity id, not the `name` claim, names the reviewer in the audit log: people can
        # edit their display names at most providers.
        return SignedIn(name=entity_id, entity_type=self.config.entity_type, entity_id=entity_id, method="oidc")

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's signature, `alg` and `aud` through the checks every JWT of this
        service passes (profiles/arap/signed.py), then the OpenID Connect claims."""
        assert self._keys is not None
        keys = self._keys
        try:
            kid = jws.extract_compact(id_token.encode("ascii")).headers().get("kid")
        except (JoseError, ValueError, UnicodeError):
            raise SignInFailed("the ID token is malformed") from None
        await keys.ensure(kid if isinstance(kid, str) else None)
        try:
            verified = verify_jwt(
                id_token, resolve_key=lambda issuer, kid: keys.key(kid) if issuer == self.config.issuer else None,
                audience=self.config.client_id, algorithms=ALGORITHMS,
            )
        except UnverifiedToken as exc:
            raise SignInFailed(f"the ID token does not verify ({exc})") from None
        claims = dict(verified.claims)
        now = time.time()
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        problems = [
            (len(audiences) > 1 and claims.get("azp") != self.config.client_id, "was issued to another party (azp)"),
            (not _number(claims.get("exp")) or claims["exp"] < now - CLOCK_SKEW, "has expired"),
            (not _number(claims.get("iat")) or claims["iat"] > now + CLOCK_SKEW, "is issued in the future"),
            (not same_secret(nonce, claims.get("nonce") if isinstance(claims.get("nonce"), str) else None), "answers another sign-in (nonce)"),
        ]
        for failed, why in problems:
            if failed:
                raise SignInFailed(f"the ID token {why}")
        return claims


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
