"""Unit tests of the Transaction Authorization Challenge rules (profiles/arop/txn_challenge.py):
oauth-transports.md TX-29, TX-32..TX-34, TX-38, TX-42, TX-43 and spec/arop.md OP-57, OP-60,
OP-78, D-3. Real keys are generated per module; time is always passed in."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from profiles.arop.txn_challenge import (
    KnownTxn,
    VerifiedChallenge,
    accepts_txn_challenge,
    admit_challenge,
    jti_memory_until,
    verify_challenge,
)
from tests.unit.test_arop_profile import NOW, REMOVE, refused

RS = "https://billing.corp.example"
AS = "https://as.corp.example"
KID = "rs-2026-07"
SKEW = timedelta(seconds=30)
DETAILS = [{"type": "invoice_management", "actions": ["void"], "locations": ["https://billing.corp.example/invoices/inv-2231"]}]
CLAIMS: dict[str, Any] = {
    "iss": RS,
    "aud": AS,
    "iat": int(NOW.timestamp()),
    "exp": int(NOW.timestamp()) + 300,
    "jti": "c7e1a0f4-5b2d-4e88-9f31-0d6a2b7c9e11",
    "txn": "b9f2d6c0-3e4a-41f7-a8d5-7c1e0b2a6f93",
    "authorization_details": DETAILS,
    "reason": "Voiding invoice inv-2231 requires finance approval.",
    "act": {"sub": "agent-42"},
}
HEADER = {"alg": "ES256", "typ": "txn-authz-challenge+jwt", "kid": KID}


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": KID}, private=True)


def public(key: Any) -> Any:
    return type(key).import_key(key.as_dict(private=False))


def resolver(key: Any, issuer: str = RS) -> Callable[[str, str | None], Any]:
    """The AS's view of recognized RSs: this key, for this issuer and kid only."""
    trusted = public(key)

    def resolve(iss: str, kid: str | None) -> Any:
        return trusted if (iss, kid) == (issuer, KID) else None

    return resolve


def challenge(key: Any, header: dict[str, Any] | None = None, **claims: Any) -> str:
    merged = {name: value for name, value in {**CLAIMS, **claims}.items() if value is not REMOVE}
    header = header or HEADER
    return jwt.encode(header, merged, key, algorithms=[header["alg"]])


def verify(token: str, key: Any, **overrides: Any) -> VerifiedChallenge:
    arguments: dict[str, Any] = {"resolve_key": resolver(key), "audience": AS, "now": NOW, "skew": SKEW, **overrides}
    return verify_challenge(token, **arguments)


def rejected(token: str, key: Any, **overrides: Any) -> str:
    """D-3: every challenge validation failure is invalid_request; returns the description."""
    failure = refused("invalid_request", verify, token, key, **overrides)
    assert failure.description is not None
    return failure.description


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)))


# -- TX-29: Accept-Txn-Challenge -----------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [["?1"], [" ?1\t"], ["?1;v=2"], ['?1; a=1.5;b="x \\" y";c=tok/en:1;d=:cHJldGVuZA==:;e=?0;f=@1659578233;g=%"caf%c3%a9";h']],
)
def test_tx_29_only_the_boolean_true_advertises_support(lines: list[str]) -> None:
    assert accepts_txn_challenge(lines)


@pytest.mark.parametrize(
    "lines",
    [[], [""], ["?0"], ["?1", "?1"], ["?1, ?0"], ["1"], ["true"], ['"?1"'], ["?1;"], ["?1;Key=1"], ["?1 ;a"], ["?1;a=?2"], ["?1;a=\"x"], ["?10"], ["(?1)"]],
)
def test_tx_29_any_other_value_type_or_a_list_counts_as_absent(lines: list[str]) -> None:
    assert not accepts_txn_challenge(lines)


# -- TX-32..TX-34, TX-42: the AS checklist -------------------------------------------------


def test_tx_42_a_valid_challenge_verifies_and_yields_its_claims(key: ECKey) -> None:
    verified = verify(challenge(key, reason_uri="https://billing.corp.example/why"), key)
    assert (verified.iss, verified.jti, verified.txn) == (RS, CLAIMS["jti"], CLAIMS["txn"])
    assert verified.authorization_details == tuple(DETAILS)
    assert (verified.reason, verified.act, verified.reason_uri) == (CLAIMS["reason"], {"sub": "agent-42"}, "https://billing.corp.example/why")
    assert verified.expires_at == NOW + timedelta(seconds=300) and verified.issued_at == NOW
    assert verify(challenge(key, act=REMOVE), key).act is None


@pytest.mark.parametrize("typ", ["application/txn-authz-challenge+jwt", "TXN-AUTHZ-CHALLENGE+JWT"])
def test_tx_32_typ_compares_as_a_media_type(key: ECKey, typ: str) -> None:
    verify(challenge(key, {**HEADER, "typ": typ}), key)


@pytest.mark.parametrize("typ", [REMOVE, "JWT", "arap-binding+jwt", "dpop+jwt"])
def test_tx_32_typ_must_be_txn_authz_challenge_jwt(key: ECKey, typ: Any) -> None:
    header = {name: value for name, value in {**HEADER, "typ": typ}.items() if value is not REMOVE}
    assert "typ" in rejected(challenge(key, header), key)


@pytest.mark.parametrize(
    ("alg", "make"),
    [
        ("ES384", lambda: ECKey.generate_key("P-384", parameters={"kid": KID}, private=True)),
        ("PS256", lambda: RSAKey.generate_key(2048, parameters={"kid": KID}, private=True)),
        ("RS256", lambda: RSAKey.generate_key(2048, parameters={"kid": KID}, private=True)),
        ("Ed25519", lambda: OKPKey.generate_key("Ed25519", parameters={"kid": KID}, private=True)),
    ],
)
def test_tx_32_other_asymmetric_algorithms_an_rs_may_use(alg: str, make: Callable[[], Any]) -> None:
    rs_key = make()
    assert verify(challenge(rs_key, {**HEADER, "alg": alg}), rs_key).txn == CLAIMS["txn"]


def test_tx_32_none_and_hmac_are_refused_before_any_key_is_used(key: ECKey) -> None:
    looked_up: list[str] = []

    def resolve(iss: str, kid: str | None) -> Any:
        looked_up.append(iss)
        return public(key)

    for alg in ("none", "HS256", "EdDSA", "ES512"):
        token = unsigned({**HEADER, "alg": alg}, CLAIMS, b"x" * 32)
        refused("invalid_request", verify, token, key, resolve_key=resolve)
    assert looked_up == []


def test_tx_32_jws_extensions_are_refused(key: ECKey) -> None:
    assert "crit" in rejected(unsigned({**HEADER, "crit": ["exp"], "exp": 1}, CLAIMS, b"s" * 64), key)
    rejected(unsigned({**HEADER, "b64": False}, CLAIMS, b"s" * 64), key)


@pytest.mark.parametrize("token", ["not-a-jws", "a.b", "e30.e30.e30.e30.e30", "\u00e9.e30.e30"])
def test_tx_34_garbage_is_not_a_challenge(key: ECKey, token: str) -> None:
    rejected(token, key)


def test_tx_32_payload_must_be_a_json_object(key: ECKey) -> None:
    for payload in (b"[1]", b"not json"):
        token = ".".join((b64(json.dumps(HEADER).encode()), b64(payload), b64(b"sig")))
        rejected(token, key)


@pytest.mark.parametrize("where", ["issuer", "kid"])
def test_op_78_only_a_recognized_rs_key_verifies(key: ECKey, where: str) -> None:
    """OP-11: a challenge for another RS, or an unknown key, is never acted upon."""
    token = challenge(key, iss="https://evil.example") if where == "issuer" else challenge(key, {**HEADER, "kid": "other"})
    assert "no key trusted" in rejected(token, key)


def test_tx_34_the_signature_must_verify(key: ECKey) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": KID}, private=True)
    assert "signature" in rejected(challenge(impostor), key)
    head, _, signature = challenge(key).split(".")
    tampered = ".".join((head, b64(json.dumps({**CLAIMS, "txn": "other"}).encode()), signature))
    assert "signature" in rejected(tampered, key)


def test_tx_34_a_key_of_another_type_never_verifies(key: ECKey) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": KID}, private=True)
    assert "signature" in rejected(challenge(key), key, resolve_key=lambda iss, kid: public(rsa))


@pytest.mark.parametrize("aud", [AS, [AS, "https://other-as.example"]])
def test_tx_42_aud_names_this_as(key: ECKey, aud: Any) -> None:
    verify(challenge(key, aud=aud), key)


@pytest.mark.parametrize("aud", [REMOVE, "https://other-as.example", ["https://other-as.example"], 7])
def test_tx_42_a_challenge_for_another_as_is_refused(key: ECKey, aud: Any) -> None:
    assert "aud is missing or does not name" in rejected(challenge(key, aud=aud), key)


def test_tx_42_expiry_and_issuance_within_the_skew(key: ECKey) -> None:
    exp = CLAIMS["exp"]
    verify(challenge(key), key, now=NOW + timedelta(seconds=330))
    assert "expired" in rejected(challenge(key), key, now=NOW + timedelta(seconds=331))
    verify(challenge(key, iat=CLAIMS["iat"] + 30), key)
    assert "not valid yet" in rejected(challenge(key, iat=CLAIMS["iat"] + 31), key)
    assert "not valid yet" in rejected(challenge(key, nbf=CLAIMS["iat"] + 31), key)
    assert "expired" in rejected(challenge(key, exp=exp - 331), key)


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": REMOVE},
        {"iss": 7},
        {"iat": REMOVE},
        {"exp": REMOVE},
        {"exp": "soon"},
        {"iat": True},
        {"jti": REMOVE},
        {"jti": ""},
        {"txn": REMOVE},
        {"txn": 42},
        {"txn": ""},
        {"reason": REMOVE},
        {"reason": ""},
        {"authorization_details": REMOVE},
        {"authorization_details": []},
        {"authorization_details": {"type": "invoice_management"}},
        {"authorization_details": [{"actions": ["void"]}]},
        {"authorization_details": ["invoice_management"]},
        {"act": "agent-42"},
        {"reason_uri": 1},
    ],
)
def test_tx_32_required_claims_must_be_present_and_well_typed(key: ECKey, claims: dict[str, Any]) -> None:
    """TX-42: `txn` a string, the operation sufficiently described; `act` an object when sent."""
    rejected(challenge(key, **claims), key)


def test_tx_32_unknown_claims_are_ignored(key: ECKey) -> None:
    assert verify(challenge(key, risk_score=7), key).txn == CLAIMS["txn"]


# -- TX-43, OP-60: replay and dedup --------------------------------------------------------


def test_tx_43_the_jti_is_remembered_until_the_challenge_could_no_longer_be_accepted(key: ECKey) -> None:
    verified = verify(challenge(key), key)
    assert jti_memory_until(verified, SKEW) == NOW + timedelta(seconds=330)


def test_op_60_the_same_client_presenting_a_pending_txn_reuses_its_handle(key: ECKey) -> None:
    verified = verify(challenge(key), key)
    pending = KnownTxn(presenter="agent-42", pending=True)
    assert admit_challenge(verified, presenter="agent-42", known=pending, jti_replayed=True) == "reuse"
    assert admit_challenge(verified, presenter="agent-42", known=None, jti_replayed=False) == "open"


def test_tx_43_a_known_txn_from_another_presenter_is_invalid_request(key: ECKey) -> None:
    verified = verify(challenge(key), key)
    for pending in (True, False):
        known = KnownTxn(presenter="agent-7", pending=pending)
        refused("invalid_request", admit_challenge, verified, presenter="agent-42", known=known, jti_replayed=False)


def test_tx_43_a_replayed_challenge_is_invalid_request_once_nothing_is_pending(key: ECKey) -> None:
    verified = verify(challenge(key), key)
    resolved = KnownTxn(presenter="agent-42", pending=False)
    refused("invalid_request", admit_challenge, verified, presenter="agent-42", known=resolved, jti_replayed=True)
    refused("invalid_request", admit_challenge, verified, presenter="agent-42", known=None, jti_replayed=True)
    assert admit_challenge(verified, presenter="agent-42", known=resolved, jti_replayed=False) == "open"
