"""Unit tests of continuation handles (profiles/arop/handles.py): spec/arop.md §7, §8, §13, §14
and oauth-transports.md TX-13..TX-15, TX-19, TX-24. Named after the requirement each proves."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest

from profiles.arop.errors import OAuthFailure
from profiles.arop.handles import (
    DEFAULT_INTERVAL,
    SLOW_DOWN_STEP,
    HandleOwner,
    HandleState,
    PollAnswer,
    check_redeemer,
    handle_digest,
    handle_expires_in,
    new_handle,
    owner_of,
    poll,
    remaining_seconds,
    revocation_applies,
    settle,
    task_resolution,
)
from profiles.arop.model import CancelRequest, OAuthError, RedeemRequest, Sender
from tests.unit.test_arop_profile import JKT, NOW, refused, request_for

EXPIRES = NOW + timedelta(hours=1)
CREATED = NOW - timedelta(seconds=60)
OWNER = HandleOwner(authority="as-1", binding="dtr", client_id="agent-42", auth_method="private_key_jwt", sender=Sender(dpop_jkt=JKT))


def answer(state: HandleState = HandleState.PENDING, **overrides: Any) -> PollAnswer:
    arguments: dict[str, Any] = {
        "binding": "dtr",
        "now": NOW,
        "expires_at": EXPIRES,
        "last_poll_at": CREATED,
        "interval": 30,
        "approved": False,
        **overrides,
    }
    return poll(state, **arguments)


def error(code: str, **members: Any) -> OAuthError:
    return OAuthError(status=400, error=code, **members)


def redeem(**overrides: Any) -> RedeemRequest:
    fields: dict[str, Any] = {
        "binding": "dtr",
        "handle": "h",
        "client_id": "agent-42",
        "auth_method": "private_key_jwt",
        "sender": Sender(dpop_jkt=JKT),
        **overrides,
    }
    return RedeemRequest(**fields)


def revoke(**overrides: Any) -> CancelRequest:
    fields: dict[str, Any] = {
        "token": "h",
        "client_id": "agent-42",
        "auth_method": "private_key_jwt",
        "sender": Sender(dpop_jkt=JKT),
        "token_type_hint": "urn:ietf:params:oauth:token-type:deferral-code",
        **overrides,
    }
    return CancelRequest(**fields)


# -- generation and storage (OP-22, OP-27) -------------------------------------------------


def test_op_22_tx_10_tx_21_handles_carry_256_random_bits_in_unpadded_base64url() -> None:
    handles = {new_handle() for _ in range(50)}
    assert len(handles) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", handle) for handle in handles)


def test_op_27_only_a_sha256_digest_is_stored() -> None:
    handle = new_handle()
    digest = handle_digest(handle)
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and handle not in digest
    assert digest == hashlib.sha256(handle.encode()).hexdigest() and handle_digest(new_handle()) != digest


# -- the §7 poll table ---------------------------------------------------------------------


def test_s7_pending_poll_after_the_interval_is_authorization_pending() -> None:
    for binding in ("ciba", "txn"):
        assert answer(binding=binding) == PollAnswer(HandleState.PENDING, 30, error("authorization_pending"))


def test_tx_15_dtr_pending_polls_repeat_the_interval_but_not_the_code() -> None:
    assert answer().error == error("authorization_pending", interval=30)


def test_op_28_an_early_poll_slows_down_and_the_interval_grows_for_good() -> None:
    early = answer(last_poll_at=NOW - timedelta(seconds=10))
    assert early == PollAnswer(HandleState.PENDING, 30 + SLOW_DOWN_STEP, error("slow_down"))
    assert SLOW_DOWN_STEP >= 5
    # §11.1 trace: the next poll 30 s later is still early for the raised 35 s interval.
    again = answer(now=NOW + timedelta(seconds=30), last_poll_at=NOW, interval=early.interval)
    assert again == PollAnswer(HandleState.PENDING, 40, error("slow_down"))
    on_time = answer(now=NOW + timedelta(seconds=75), last_poll_at=NOW + timedelta(seconds=30), interval=40)
    assert on_time == PollAnswer(HandleState.PENDING, 40, error("authorization_pending", interval=40))


def test_op_28_the_first_poll_counts_from_the_handle_creation() -> None:
    assert answer(last_poll_at=NOW - timedelta(seconds=29)).error == error("slow_down")
    assert answer(last_poll_at=NOW - timedelta(seconds=30)).error == error("authorization_pending", interval=30)


def test_op_29_the_default_interval_is_five_seconds() -> None:
    assert DEFAULT_INTERVAL == 5


def test_op_45_an_approved_handle_redeems_even_when_polled_early() -> None:
    """OP-30: a notified client polls at once; the approval is in, so it is not slowed down."""
    resolved = answer(approved=True, last_poll_at=NOW)
    assert resolved == PollAnswer(HandleState.PENDING, 30, None)


@pytest.mark.parametrize("when", [NOW, EXPIRES + timedelta(days=1)])
def test_op_25_an_issued_handle_answers_invalid_grant_forever(when: Any) -> None:
    assert answer(HandleState.ISSUED, now=when, last_poll_at=when) == PollAnswer(HandleState.ISSUED, 30, error("invalid_grant"))


@pytest.mark.parametrize("state", [HandleState.DENIED, HandleState.CANCELLED])
def test_tx_14_a_denied_or_cancelled_handle_repeats_access_denied_until_expiry(state: HandleState) -> None:
    for last in (CREATED, NOW):  # never slow_down: the answer is final
        assert answer(state, last_poll_at=last) == PollAnswer(state, 30, error("access_denied"))
    assert answer(state, approved=True).error == error("access_denied")


@pytest.mark.parametrize("state", [HandleState.DENIED, HandleState.CANCELLED, HandleState.EXPIRED])
def test_op_68_after_expiry_every_poll_is_expired_token(state: HandleState) -> None:
    assert answer(state, now=EXPIRES) == PollAnswer(state, 30, error("expired_token"))


@pytest.mark.parametrize("approved", [False, True])
def test_op_26_a_pending_handle_expires_at_its_expiry(approved: bool) -> None:
    """The move to EXPIRED tells the caller to cancel the ARS request; a late approval is lost."""
    assert answer(now=EXPIRES, approved=approved) == PollAnswer(HandleState.EXPIRED, 30, error("expired_token"))
    assert answer(now=EXPIRES - timedelta(microseconds=1)).state is HandleState.PENDING


def test_s7_terminal_states_never_change() -> None:
    assert settle(HandleState.PENDING, HandleState.ISSUED) is HandleState.ISSUED
    for terminal in (HandleState.ISSUED, HandleState.DENIED, HandleState.CANCELLED, HandleState.EXPIRED):
        with pytest.raises(ValueError, match="already"):
            settle(terminal, HandleState.DENIED)
    with pytest.raises(ValueError, match="not a resolution"):
        settle(HandleState.PENDING, HandleState.PENDING)


# -- ARS task → handle (§9, D-5, D-7) ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "resolution"),
    [
        ("denied", "denied"),
        ("cancelled", "denied"),
        ("failed", "denied"),
        ("partial", "denied"),
        ("expired", "denied"),
        ("pending", "pending"),
        ("escalated", "pending"),
    ],
)
def test_d_5_ars_statuses_resolve_the_handle(status: str, resolution: str) -> None:
    assert task_resolution(status, mode=None, has_approval=False) == resolution


@pytest.mark.parametrize(
    ("mode", "has_approval", "resolution"),
    [(None, True, "approved"), ("reevaluate", True, "approved"), ("issue", True, "denied"), (None, False, "denied")],
)
def test_d_7_approved_counts_only_with_an_approval_and_a_known_mode(mode: str | None, has_approval: bool, resolution: str) -> None:
    assert task_resolution("approved", mode=mode, has_approval=has_approval) == resolution


def test_d_5_the_handle_never_outlives_the_ars_task_or_the_ciba_wish() -> None:
    ttl = timedelta(hours=1)
    assert handle_expires_in(now=NOW, ttl=ttl, task_expires_at=None) == 3600
    assert handle_expires_in(now=NOW, ttl=ttl, task_expires_at=NOW + timedelta(minutes=20, seconds=0.9)) == 1200
    assert handle_expires_in(now=NOW, ttl=ttl, task_expires_at=NOW + timedelta(days=1), requested_expiry=600) == 600


def test_op_20_a_deduplicated_answer_counts_the_same_handle_down() -> None:
    assert remaining_seconds(EXPIRES, NOW + timedelta(seconds=90.5)) == 3509
    assert remaining_seconds(EXPIRES, EXPIRES + timedelta(seconds=5)) == 0


# -- who may use a handle (OP-24, OP-61, OP-62, OP-64, OP-65) ------------------------------


def test_op_62_the_owner_is_recorded_from_the_originating_request() -> None:
    assert owner_of(request_for("dtr"), authority="as-1") == OWNER
    assert owner_of(request_for("ciba"), authority="as-1").delivery_mode == "poll"


def test_op_24_the_originating_client_with_the_same_key_may_redeem() -> None:
    check_redeemer(OWNER, redeem(), authority="as-1")


@pytest.mark.parametrize(
    "mismatch",
    [
        {"client_id": "agent-43"},
        {"auth_method": "client_secret_basic"},
        {"sender": Sender(dpop_jkt="another-key")},
        {"sender": Sender()},
        {"sender": Sender(x5t_s256=JKT)},
        {"binding": "ciba"},
    ],
)
def test_op_64_another_client_method_key_or_endpoint_is_invalid_grant(mismatch: dict[str, Any]) -> None:
    """OP-24, OP-61, OP-62, TX-39: indistinguishable from an unknown handle."""
    failure = refused("invalid_grant", check_redeemer, OWNER, redeem(**mismatch), authority="as-1")
    assert failure.description is None


def test_tx_24_a_push_client_has_nothing_to_redeem() -> None:
    push = HandleOwner(authority="as-1", binding="ciba", client_id="agent-42", auth_method="private_key_jwt", sender=Sender(dpop_jkt=JKT), delivery_mode="push")
    refused("unauthorized_client", check_redeemer, push, redeem(binding="ciba"), authority="as-1")


@pytest.mark.parametrize("hint", ["urn:ietf:params:oauth:token-type:deferral-code", None, "access_token"])
def test_op_65_a_revocation_by_the_owner_cancels_the_dtr_handle(hint: str | None) -> None:
    assert revocation_applies(OWNER, revoke(token_type_hint=hint), authority="as-1")


@pytest.mark.parametrize(
    ("owner", "mismatch"),
    [
        (OWNER, {"sender": Sender(dpop_jkt="another-key")}),
        (OWNER, {"client_id": "agent-43"}),
        (OWNER, {"auth_method": "none"}),
        (HandleOwner(authority="as-1", binding="ciba", client_id="agent-42", auth_method="private_key_jwt", sender=Sender(dpop_jkt=JKT)), {}),
        (HandleOwner(authority="as-1", binding="txn", client_id="agent-42", auth_method="private_key_jwt", sender=Sender(dpop_jkt=JKT)), {}),
    ],
)
def test_tx_19_any_other_revocation_silently_has_no_effect(owner: HandleOwner, mismatch: dict[str, Any]) -> None:
    """OP-64 (other key: like an unknown token), OP-66 (CIBA and txn have no cancellation)."""
    assert not revocation_applies(owner, revoke(**mismatch), authority="as-1")


def test_op_23_a_handle_alone_authorizes_nothing() -> None:
    with pytest.raises(OAuthFailure):
        check_redeemer(OWNER, redeem(client_id="someone-with-the-handle", sender=Sender()), authority="as-1")


def test_d_arop_29_another_as_never_uses_a_handle() -> None:
    """Client ids are each AS's own namespace: another sidecar caller with the same client id,
    method and key redeems and revokes nothing."""
    refused("invalid_grant", check_redeemer, OWNER, redeem(), authority="as-2")
    assert not revocation_applies(OWNER, revoke(), authority="as-2")
