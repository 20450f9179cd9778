"""Resource servers' transaction-challenge keys (OP-57, OP-78, TX-33, TX-34, TX-42), fetched
from a real HTTPS `txn_challenge_jwks_uri` with its own CA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop.errors import OAuthFailure
from profiles.arop.txn_challenge import TYP, verify_challenge
from services.oauth.issuer_keys import IssuerKeys, TrustedIssuer
from tests.https_receiver import HttpsReceiver, TestCA, https_receiver

RS = "https://billing.example"
AS = "https://as.example"
NOW = datetime.now(UTC)


def rs_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)


def challenge(key: ECKey, **claims: Any) -> str:
    body = {
        "iss": RS, "aud": AS, "iat": int(NOW.timestamp()), "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "jti": "j-1", "txn": "t-1", "reason": "Voiding an invoice needs approval",
        "authorization_details": [{"type": "invoice_management", "actions": ["void"]}],
        **claims,
    }
    return jwt.encode({"alg": "ES256", "typ": TYP, "kid": key.kid}, body, key)


def publish(receiver: HttpsReceiver, *keys: ECKey, max_age: int | None = None) -> None:
    receiver.document = json.dumps({"keys": [{**k.as_dict(private=False), "kid": k.kid, "use": "sig"} for k in keys]}).encode()
    receiver.document_headers = {"Content-Type": "application/jwk-set+json"}
    if max_age is not None:
        receiver.document_headers["Cache-Control"] = f"max-age={max_age}"


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[HttpsReceiver, TestCA]]:
    ca = TestCA(tmp_path)
    certificate, key = ca.issue_server(["127.0.0.1"])
    with https_receiver(certificate, key) as receiver:
        yield receiver, ca


def keys_for(receiver: HttpsReceiver, ca: TestCA, **options: Any) -> IssuerKeys:
    server = TrustedIssuer(issuer=RS, jwks_uri=f"https://127.0.0.1:{receiver.port}/jwks")
    return IssuerKeys([server], ca_file=str(ca.ca_file), **options)


async def _loaded(keys: IssuerKeys, token: str) -> Any:
    await keys.load(token)
    return keys.resolve


async def verified(keys: IssuerKeys, token: str) -> Any:
    return verify_challenge(token, resolve_key=await _loaded(keys, token), audience=AS, now=NOW, skew=timedelta(seconds=30))


async def test_tx_33_keys_are_fetched_from_the_jwks_uri_and_cached(jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks_server
    key = rs_key("rs-1")
    publish(receiver, key, max_age=600)
    keys = keys_for(receiver, ca)
    assert (await verified(keys, challenge(key))).txn == "t-1"
    assert (await verified(keys, challenge(key, jti="j-2"))).jti == "j-2"
    assert len([r for r in receiver.received if r.method == "GET"]) == 1  # cached for max-age


async def test_tx_33_an_unknown_kid_refreshes_the_keys_once(jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks_server
    old, new = rs_key("rs-1"), rs_key("rs-2")
    publish(receiver, old, max_age=3600)
    keys = keys_for(receiver, ca, min_refresh=0)
    await verified(keys, challenge(old))
    publish(receiver, old, new, max_age=3600)  # the RS rotates
    assert (await verified(keys, challenge(new))).iss == RS
    assert len(receiver.received) == 2


async def test_a_forged_kid_cannot_make_us_hammer_the_rs(jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks_server
    key = rs_key("rs-1")
    publish(receiver, key, max_age=3600)
    keys = keys_for(receiver, ca, min_refresh=60)
    await verified(keys, challenge(key))
    stranger = rs_key("nobody")
    for _ in range(5):
        with pytest.raises(OAuthFailure):
            await verified(keys, challenge(stranger))
    assert len(receiver.received) == 1


async def test_op_78_a_challenge_from_an_unconfigured_rs_has_no_key(jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks_server
    key = rs_key("rs-1")
    publish(receiver, key)
    keys = keys_for(receiver, ca)
    with pytest.raises(OAuthFailure, match="no key trusted"):
        await verified(keys, challenge(key, iss="https://evil.example"))
    assert receiver.received == []  # nothing fetched for an unknown issuer


async def test_tx_34_tls_is_verified(tmp_path: Path, jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, _ = jwks_server
    key = rs_key("rs-1")
    publish(receiver, key)
    (tmp_path / "other").mkdir()
    keys = keys_for(receiver, TestCA(tmp_path / "other", name="Untrusted CA"))
    with pytest.raises(OAuthFailure):
        await verified(keys, challenge(key))
    assert receiver.received == []  # the handshake failed before any request


async def test_a_jwks_with_private_key_material_is_refused(jwks_server: tuple[HttpsReceiver, TestCA]) -> None:
    receiver, ca = jwks_server
    key = rs_key("rs-1")
    receiver.document = json.dumps({"keys": [{**key.as_dict(private=True), "kid": "rs-1"}]}).encode()
    keys = keys_for(receiver, ca)
    with pytest.raises(OAuthFailure):
        await verified(keys, challenge(key))


async def test_inline_keys_need_no_fetch() -> None:
    key = rs_key("rs-1")
    server = TrustedIssuer(issuer=RS, jwks={"keys": [{**key.as_dict(private=False), "kid": "rs-1"}]})
    keys = IssuerKeys([server])
    assert (await verified(keys, challenge(key))).txn == "t-1"


def test_a_trusted_issuer_names_exactly_one_key_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TrustedIssuer(issuer=RS)
    with pytest.raises(ValueError, match="https"):
        TrustedIssuer(issuer=RS, jwks_uri="http://billing.example/jwks")
