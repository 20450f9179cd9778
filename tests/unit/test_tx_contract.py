"""Contract tests of the TX-n rules (oauth-transports.md) the pure profile and the sidecar's
stateless helpers must honour, where tests/unit/test_arop_*.py did not prove them yet. Named
after the requirement each test proves; the table of which test proves which TX rule is the
issue's coverage table. End-to-end counterparts: tests/oauth/test_tx_contract.py."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop.dedup import request_dedup_key
from profiles.arop.errors import OAuthFailure
from profiles.arop.handles import HandleState, poll
from profiles.arop.model import DecideRequest, OAuthError, RedeemRequest, relayed_body
from profiles.arop.outcomes import choose
from profiles.arop.requested import requested_of
from profiles.arop.txn_challenge import TYP, verify_challenge
from services.oauth.issuer_keys import IssuerKeys, TrustedIssuer
from services.oauth.txn import TxnChallenges
from tests.unit.test_arop_profile import (
    NOW,
    REMOVE,
    RETRY,
    decision,
    refused,
    request_for,
)
from tests.unit.test_arop_txn_challenge import (
    AS,
    CLAIMS,
    HEADER,
    KID,
    RS,
    SKEW,
    challenge,
)

NQSCHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


@pytest.fixture(scope="module")
def key() -> ECKey:
    """The RS's signing key, named `KID` in its JWK Set."""
    return ECKey.generate_key("P-256", parameters={"kid": KID}, private=True)


# -- TX-4: error bodies ---------------------------------------------------------------------


def test_tx_4_any_refusal_answers_a_well_formed_error() -> None:
    """A description may echo request text (a challenge's `iss`, `kid`: test_op_72_* prove that
    path); whatever is not NQSCHAR never reaches the relayed error."""
    answer = OAuthFailure("invalid_request", 'say "no" \\ caf\u00e9').response()
    assert answer == OAuthError(status=400, error="invalid_request", error_description="say ?no? ? caf?")
    assert OAuthFailure("invalid_grant").response() == OAuthError(status=400, error="invalid_grant")


# -- TX-8: any originating grant --------------------------------------------------------------


GRANT_TYPES = [
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]


@pytest.mark.parametrize("grant_type", GRANT_TYPES)
def test_tx_8_dtr_defers_whatever_the_originating_grant(grant_type: str) -> None:
    request = request_for("dtr", grant_type=grant_type)
    assert choose(request, [decision("requestable")], retry_with=RETRY) == "defer"
    # the originating grant is not the intent: the same request under another grant is the same
    # access request (D-AROP-6), so switching grants never opens a second one
    assert request_dedup_key(request, requested_of(request), authority="as") == request_dedup_key(request_for("dtr"), requested_of(request_for("dtr")), authority="as")


# -- TX-12: the poll carries the handle, client and key only ----------------------------------


POLL = {"binding": "dtr", "handle": "h", "client_id": "agent-42", "auth_method": "private_key_jwt", "sender": {}}


@pytest.mark.parametrize(
    "member",
    [
        {"authorization_details": [{"type": "file_access"}]},
        {"scope": "files:read"},
        {"resource": ["https://files.corp.example"]},
        {"completion_mode": "deferred"},
        {"subject": {"type": "user", "id": "bob"}},
    ],
)
def test_tx_12_a_poll_cannot_resend_the_originating_parameters(member: dict[str, Any]) -> None:
    """What a poll redeems is the originating request as recorded; the AS has no way to pass
    a new operation along with the deferral code (D-AROP-1)."""
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({**POLL, **member}, RedeemRequest)
    assert msgspec.convert(POLL, RedeemRequest).handle == "h"


# -- TX-15: a raised interval reaches the client ---------------------------------------------


def test_tx_15_later_pending_answers_repeat_the_raised_interval() -> None:
    early = poll(HandleState.PENDING, binding="dtr", now=NOW, expires_at=NOW + timedelta(hours=1), last_poll_at=NOW - timedelta(seconds=1), interval=30, approved=False)
    assert early.error == OAuthError(status=400, error="slow_down") and early.interval == 35
    later = poll(HandleState.PENDING, binding="dtr", now=NOW + timedelta(seconds=40), expires_at=NOW + timedelta(hours=1), last_poll_at=NOW, interval=early.interval, approved=False)
    assert later.error is not None and relayed_body(later.error) == {"error": "authorization_pending", "interval": 35}


# -- TX-32: a challenge without `kid` -------------------------------------------------------------


def _jwk(rs_key: ECKey, kid: str | None) -> dict[str, Any]:
    entry = rs_key.as_dict(private=False)
    entry.pop("kid", None)
    return entry if kid is None else {**entry, "kid": kid}


async def _loaded(keys: IssuerKeys, token: str) -> Any:
    await keys.load(token)
    return keys.resolve


async def _verify(keys: IssuerKeys, token: str) -> Any:
    return verify_challenge(token, resolve_key=await _loaded(keys, token), audience=AS, now=NOW, skew=SKEW)


async def test_tx_32_without_kid_only_the_single_key_of_a_one_key_set_can_verify(key: ECKey) -> None:
    other = ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "typ": TYP}  # no kid
    token = jwt.encode(header, CLAIMS, key, algorithms=["ES256"])
    one = IssuerKeys([TrustedIssuer(issuer=RS, jwks={"keys": [_jwk(key, None)]})])
    assert (await _verify(one, token)).txn == CLAIMS["txn"]
    several = IssuerKeys([TrustedIssuer(issuer=RS, jwks={"keys": [_jwk(key, KID), _jwk(other, "rs-other")]})])
    with pytest.raises(OAuthFailure) as caught:
        await _verify(several, token)
    assert caught.value.error == "invalid_request"  # TX-32: the RS must say which key
    assert (await _verify(several, challenge(key))).txn == CLAIMS["txn"]  # with its kid, it verifies


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "ES512", "EdDSA", "RSA-OAEP"])
async def test_tx_32_only_the_accepted_asymmetric_algorithms_pass(key: ECKey, alg: str) -> None:
    """Through the configured RS's keys too, not only a test resolver (D-AROP-12)."""
    keys = IssuerKeys([TrustedIssuer(issuer=RS, jwks={"keys": [_jwk(key, KID)]})])
    _, payload, signature = challenge(key).split(".")
    header = base64.urlsafe_b64encode(json.dumps({**HEADER, "alg": alg}).encode()).rstrip(b"=").decode()
    with pytest.raises(OAuthFailure) as caught:
        await _verify(keys, f"{header}.{payload}.{signature}")
    assert caught.value.error == "invalid_request"


# -- TX-42: requester context factors into the decision ----------------------------------------


def test_tx_42_the_challenge_act_reason_and_txn_are_in_the_decision_context(key: ECKey) -> None:
    """D-AROP-23: `act` (when the RS named one) MUST factor into the decision, and the
    reviewer is shown the RS's integrity-protected `reason`."""
    verified = verify_challenge(challenge(key), resolve_key=lambda iss, kid: _public(key), audience=AS, now=NOW, skew=SKEW)
    assert TxnChallenges.context(verified) == {
        "transaction_challenge": {"iss": RS, "txn": CLAIMS["txn"], "reason": CLAIMS["reason"], "act": {"sub": "agent-42"}}
    }
    without = verify_challenge(
        challenge(key, act=REMOVE), resolve_key=lambda iss, kid: _public(key), audience=AS, now=NOW, skew=SKEW
    )
    assert "act" not in TxnChallenges.context(without)["transaction_challenge"]


def _public(rs_key: ECKey) -> ECKey:
    return ECKey.import_key(rs_key.as_dict(private=False))


# -- TX-63 / TX-68 / TX-83: what the AS may post ----------------------------------------------------


@pytest.mark.parametrize("details", [{"type": "file_access"}, ["file_access"], [["nested"]], "[]"])
def test_tx_63_authorization_details_is_an_array_of_objects(details: Any) -> None:
    """The AS relays the parsed parameter; anything but an array of objects is not RAR and the
    sidecar refuses it as a malformed AS request (the AS answers invalid_authorization_details)."""
    body = {**msgspec.to_builtins(request_for("dtr")), "authorization_details": details}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, DecideRequest)


@pytest.mark.parametrize(
    "resource",
    ["https://files.corp.example#frag", "/relative/path", "files.corp.example", "", "https://files corp", "https://caf\u00e9.example", "1https://x"],
)
def test_tx_68_a_resource_that_is_not_an_absolute_uri_without_fragment_is_invalid_target(resource: str) -> None:
    refused("invalid_target", requested_of, request_for("dtr", resource=["https://files.corp.example", resource]))


@pytest.mark.parametrize("resource", ["https://files.corp.example", "https://files.corp.example/a?b=c", "urn:example:files"])
def test_tx_68_absolute_uris_are_accepted_and_repeatable(resource: str) -> None:
    requested = requested_of(request_for("dtr", resource=[resource, "https://other.corp.example"]))
    assert requested.resource == (resource, "https://other.corp.example")


def test_tx_83_no_member_lets_an_unsigned_remediation_assert_requestability() -> None:
    """The sidecar evaluates what the client asks for itself (AS as PEP): the AS-facing request
    has no member for `authorization_remediation`, a requestable denial or an approval."""
    base = msgspec.to_builtins(request_for("dtr"))
    for member in ("authorization_remediation", "access_request", "approval", "denial"):
        with pytest.raises(msgspec.ValidationError, match="unknown field"):
            msgspec.convert({**base, member: {"x": 1}}, DecideRequest)
