"""Contract tests of spec/arop.md OP-n MUSTs that no other unit test proves by name: what every
client-facing answer may hold (OP-1, OP-2, OP-72), requestability (OP-13), synchronous codes
(OP-15), the denial echoed to the ARS (OP-43), the evaluation context (OP-42), never failing
open (OP-32). The end-to-end half is tests/oauth/test_op_contract.py. Named after the
requirement each test proves."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from profiles.arop import errors
from profiles.arop.handles import HandleState, poll
from profiles.arop.model import OAuthError, Remediation, relayed_body
from profiles.arop.outcomes import choose
from profiles.arop.txn_challenge import TYP, verify_challenge
from profiles.authzen.model import Action, Decision, EvaluationRequest, Resource, Subject
from services.config import ConfigError, load_config
from services.oauth.service import _context, _resolution, _submission, _verdict
from tests.unit.test_arop_profile import JKT, NOW, RETRY, decision, pair, refused, request_for

# OP-1: the codes of RFC 6749 §5.2, RFC 8628 §3.5 (pending, slow_down, access_denied,
# expired_token), RFC 9396 §5 (invalid_authorization_details), RFC 8707 §2 (invalid_target),
# CIBA §13 (invalid_binding_message, and its use of unauthorized_client). Nothing else.
TRANSPORT_CODES = frozenset(
    {
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
        "authorization_pending", "slow_down", "access_denied", "expired_token",
        "invalid_authorization_details", "invalid_target", "invalid_binding_message",
    }
)
# OP-1 / TX-4 / D-AROP-4: the members a synchronous refusal may hold; `approval_obtainable` is
# the documented remediation extension (DESIGN §5). (`interval` belongs to DTR polls, TX-15.)
REFUSAL_MEMBERS = frozenset({"error", "error_description", "approval_obtainable"})


# -- OP-1: nothing invented ----------------------------------------------------------------


def test_op_1_every_error_code_is_a_transport_one() -> None:
    codes = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)}
    assert codes and codes <= TRANSPORT_CODES, codes - TRANSPORT_CODES
    assert errors.DEFERRED_PATH_ONLY <= codes


@pytest.mark.parametrize("binding", ["dtr", "ciba", "txn"])
@pytest.mark.parametrize("state", list(HandleState))
@pytest.mark.parametrize("approved", [False, True])
@pytest.mark.parametrize("since_last_poll", [0, 60])
@pytest.mark.parametrize("expired", [False, True])
def test_op_1_op_2_op_72_poll_answers_hold_the_bare_error_and_no_description(
    binding: str, state: HandleState, approved: bool, since_last_poll: int, expired: bool
) -> None:
    """Every answer of the §7 table is `{"error"}`, DTR's pending poll also `interval` (TX-15):
    no handle, task, approval, progress or description (OP-70, OP-72)."""
    answer = poll(
        state, binding=binding, now=NOW, expires_at=NOW - timedelta(seconds=1) if expired else NOW + timedelta(hours=1),  # type: ignore[arg-type]
        last_poll_at=NOW - timedelta(seconds=since_last_poll), interval=30, approved=approved,
    )
    if answer.error is None:
        return  # the approval is in: the answer is the re-evaluation's grant
    body = relayed_body(answer.error)
    assert body["error"] in TRANSPORT_CODES
    assert set(body) <= ({"error", "interval"} if binding == "dtr" and body["error"] == "authorization_pending" else {"error"}), body


@pytest.mark.parametrize("binding", ["token", "dtr", "ciba", "txn"])
@pytest.mark.parametrize("verdicts", [["deny"], ["requestable"], ["allow", "requestable"], ["requestable", "deny"]])
@pytest.mark.parametrize("public", [False, True])
def test_op_1_op_2_op_72_synchronous_refusals_hold_only_transport_members(binding: str, verdicts: list[str], public: bool) -> None:
    """The outcome of §5 for any mix of verdicts: a transport error whose only extension is the
    documented remediation member (D-AROP-4), and a description only where D-2 fixes one."""
    client = {"id": "agent-42", "auth_method": "none" if public else "private_key_jwt", "public": public}
    request = request_for(binding, client=client, sender={})
    choice = choose(request, [decision(v, index=i) for i, v in enumerate(verdicts)], retry_with=RETRY)
    if not isinstance(choice, (OAuthError, Remediation)):
        return
    body = relayed_body(choice)
    assert body["error"] in TRANSPORT_CODES
    assert set(body) <= REFUSAL_MEMBERS
    if isinstance(choice, Remediation):
        assert body["approval_obtainable"] == {"retry_with": RETRY}
    assert body.get("error_description") in (None, "DPoP required for deferred completion")


# -- OP-13: requestable only with context.access_request -----------------------------------


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"reason": "approval_required"},
        {"reason": "approval_required", "evaluation_id": "ev_1", "template": "owner_approval"},
        {"access_request": None},
        {"access_request": True},
        {"access_request": "owner_approval"},
        {"access_request": [{"expires_at": "2026-07-01T09:15:00Z"}]},
        {"approval_required": {"expires_at": "2026-07-01T09:15:00Z"}},
    ],
)
def test_op_13_a_denial_without_context_access_request_is_not_requestable(context: dict[str, Any] | None) -> None:
    assert _verdict(Decision(decision=False, context=context)) == "deny"


def test_op_13_a_denial_with_context_access_request_is_requestable_and_an_allow_is_an_allow() -> None:
    hint = {"access_request": {"expires_at": "2026-07-01T09:15:00Z", "binding_token": "eyJ.eyJ.c2ln"}}
    assert _verdict(Decision(decision=False, context=hint)) == "requestable"
    assert _verdict(Decision(decision=True, context=hint)) == "allow"


# -- OP-15: never a deferred-path code as a synchronous answer -----------------------------


def test_op_15_a_deployment_whose_tokens_could_never_live_long_enough_does_not_start(tmp_path: Path) -> None:
    """An access ttl below the floor would answer standing access with a synchronous
    `access_denied` (OP-34's no-lifetime answer) instead of a token."""
    config = tmp_path / "arop.toml"
    config.write_text("[oauth]\naccess_token_ttl = 5\nmin_token_lifetime = 10\n")
    with pytest.raises(ConfigError, match="min_token_lifetime"):
        load_config(config, environ={})
    config.write_text("[oauth]\naccess_token_ttl = 10\nmin_token_lifetime = 10\n")
    assert load_config(config, environ={}).oauth.min_token_lifetime == 10


# -- OP-32: never fail open ----------------------------------------------------------------


def test_op_32_an_unreadable_task_keeps_the_handle_pending() -> None:
    """`_task` answers None when the ARS cannot be read: not approved, not denied."""
    assert _resolution(None) == "pending"
    answer = poll(HandleState.PENDING, binding="dtr", now=NOW, expires_at=NOW + timedelta(hours=1),
                  last_poll_at=NOW - timedelta(minutes=1), interval=5, approved=False)
    assert answer.error is not None and answer.error.error == "authorization_pending"


# -- OP-42 / OP-43: what the PDP and the ARS are given -------------------------------------


def test_op_42_the_evaluation_context_holds_nothing_volatile() -> None:
    request = request_for("dtr", resource=["https://files.corp.example"])
    first, second = _context(request, {"amount": 5}), _context(request, {"amount": 5})
    assert first == second == {"amount": 5, "client_id": "agent-42", "dpop_jkt": JKT, "resource": ["https://files.corp.example"]}


def _evaluated(binding_token: str, evaluation_id: str = "ev_7Hx") -> tuple[Any, EvaluationRequest, Decision]:
    context = {
        "evaluation_id": evaluation_id,
        "reason": "approval_required",
        "access_request": {"expires_at": "2026-07-01T09:15:00Z", "binding_token": binding_token, "template": "owner_approval"},
    }
    request = EvaluationRequest(Subject("Agent", "agent-42"), Action("buy"), Resource("Portfolio", "alice-main"), {"client_id": "agent-42"})
    return pair(), request, Decision(decision=False, context=context)


def test_op_43_the_denial_binding_material_is_echoed_byte_for_byte() -> None:
    # A token the sidecar must not decode, normalize or re-encode: unusual but opaque.
    token = "eyJhbGciOiJFUzI1NiJ9.eyJldiI6ImV2XzAxIn0.c2ln-_=="
    body = _submission([_evaluated(token)])
    assert body["denial"] == {
        "expires_at": "2026-07-01T09:15:00Z",
        "evaluation_id": "ev_7Hx",
        "binding_token": token,
        "reason": "approval_required",
        "template": "owner_approval",
    }
    assert body["subject"] == {"type": "Agent", "id": "agent-42"} and body["context"] == {"client_id": "agent-42"}


def test_op_43_op_38_several_requestable_pairs_are_one_submission_each_with_its_own_denial() -> None:
    body = _submission([_evaluated("tok-a", "ev_a"), _evaluated("tok-b", "ev_b")])
    assert "denial" not in body and [item["denial"]["binding_token"] for item in body["items"]] == ["tok-a", "tok-b"]
    assert [item["denial"]["evaluation_id"] for item in body["items"]] == ["ev_a", "ev_b"]


# -- OP-72: minimal, well-formed descriptions ----------------------------------------------


@pytest.mark.parametrize(
    "header",
    [{"kid": 'rs "one"'}, {"kid": "caf\u00e9"}, {"kid": "back\\slash"}, {"alg": "HS256", "kid": 'q"'}],
    ids=["quoted-kid", "non-ascii-kid", "backslash-kid", "refused-alg"],
)
@pytest.mark.parametrize("iss", ["https://billing.corp.example", 'https://evil.example/"' + "x" * 3000], ids=["iss", "long-quoted-iss"])
def test_op_72_a_refused_challenge_is_always_a_well_formed_minimal_invalid_request(header: dict[str, str], iss: str) -> None:
    """The description may quote the challenge's own header values; it stays an RFC 6749
    §5.2 description (never a crash instead of `invalid_request`, D-3, TX-42) and short."""
    key = ECKey.generate_key("P-256", private=True)
    claims = {"iss": iss, "aud": "https://as.corp.example", "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 300,
              "jti": "j1", "txn": "t1", "reason": "needs approval", "authorization_details": [{"type": "trade"}]}
    full = {"alg": "ES256", "typ": TYP, **header}
    # An algorithm that is refused before any key is used needs no real signature.
    token = jwt.encode(full, claims, key) if full["alg"] == "ES256" else _compact(full, claims)
    failure = refused(
        "invalid_request", verify_challenge, token, resolve_key=lambda iss, kid: None, audience="https://as.corp.example",
        now=NOW, skew=timedelta(seconds=30),
    )
    response = failure.response()  # raises if the description is not NQSCHAR
    assert response.error_description is not None and len(response.error_description) <= 200


def _compact(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(b"s" * 32)))
