"""Unit tests of the CIBA rules (profiles/arop/ciba.py): oauth-transports.md TX-20..TX-28 and
spec/arop.md OP-50..OP-55, D-4. Named after the requirement each proves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from profiles.arop import ciba
from profiles.arop.grants import GrantPolicy, build_grant
from profiles.arop.model import DecideRequest
from profiles.arop.requested import requested_of
from tests.unit.test_arop_profile import FILE, NOW, refused, request_for

PING = {"delivery_mode": "ping", "login_hint": "bob@corp.example", "client_notification_token": "cnt_3Vb8xQ", "notification_endpoint": "https://agent42.corp.example/ciba/notify"}


def backchannel(ciba_members: dict[str, Any] | None = None, **members: Any) -> DecideRequest:
    params = {"delivery_mode": "poll", "login_hint": "bob@corp.example", **(ciba_members or {})}
    return request_for("ciba", ciba=params, **members)


def test_tx_20_a_valid_poll_request_passes_with_its_requested_expiry() -> None:
    assert ciba.check_backchannel(backchannel({"requested_expiry": "600"})) == 600
    assert ciba.check_backchannel(backchannel()) is None


def test_tx_20_ciba_has_no_public_clients() -> None:
    """OP-53: CIBA clients authenticate with their registered method."""
    public = {"id": "agent-42", "auth_method": "none", "public": True}
    refused("unauthorized_client", ciba.check_backchannel, backchannel(client=public))


@pytest.mark.parametrize(
    "hints",
    [
        {"login_hint": None},
        {"login_hint_token": "eyJ.hint"},
        {"id_token_hint": "eyJ.id"},
    ],
)
def test_tx_22_exactly_one_hint(hints: dict[str, Any]) -> None:
    refused("invalid_request", ciba.check_backchannel, backchannel(hints))


@pytest.mark.parametrize("hint", ["login_hint_token", "id_token_hint"])
def test_tx_22_any_single_hint_kind_will_do(hint: str) -> None:
    ciba.check_backchannel(backchannel({"login_hint": None, hint: "eyJ.hint"}))


@pytest.mark.parametrize("scope", [None, "files:read", "openid_extra"])
def test_op_50_scope_must_include_openid(scope: str | None) -> None:
    refused("invalid_scope", ciba.check_backchannel, backchannel(scope=scope))


@pytest.mark.parametrize("mode", ["ping", "push"])
@pytest.mark.parametrize("token", [None, "", "two words", "line\nbreak", "x" * 1025])
def test_op_52_ping_and_push_need_a_usable_client_notification_token(mode: str, token: str | None) -> None:
    """TX-26: it travels as `Authorization: Bearer <token>`, so it must be an RFC 6750 b64token."""
    refused("invalid_request", ciba.check_backchannel, backchannel({**PING, "delivery_mode": mode, "client_notification_token": token}))


@pytest.mark.parametrize("mode", ["ping", "push"])
@pytest.mark.parametrize("endpoint", [None, "http://agent42.corp.example/notify", "not a url"])
def test_op_52_ping_and_push_need_a_registered_https_endpoint(mode: str, endpoint: str | None) -> None:
    refused("unauthorized_client", ciba.check_backchannel, backchannel({**PING, "delivery_mode": mode, "notification_endpoint": endpoint}))


@pytest.mark.parametrize("mode", ["ping", "push"])
def test_op_52_ping_and_push_with_token_and_endpoint_pass(mode: str) -> None:
    assert ciba.check_backchannel(backchannel({**PING, "delivery_mode": mode, "client_notification_token": "a-Z_0.9~+/=="})) is None


def test_op_51_a_poll_client_needs_no_notification_token() -> None:
    ciba.check_backchannel(backchannel({"client_notification_token": None}))


@pytest.mark.parametrize(("value", "seconds"), [(600, 600), ("600", 600), ("0600", 600), (1, 1)])
def test_tx_22_requested_expiry_is_a_positive_integer(value: Any, seconds: int) -> None:
    assert ciba.check_backchannel(backchannel({"requested_expiry": value})) == seconds


@pytest.mark.parametrize("value", [0, -5, "0", "-5", "1.5", "abc", "", " 600", "1e3", "1234567890"])
def test_tx_22_requested_expiry_otherwise_is_invalid_request(value: Any) -> None:
    refused("invalid_request", ciba.check_backchannel, backchannel({"requested_expiry": value}))


@pytest.mark.parametrize("message", ["Rotate prod-eu DB credentials", "Überweisung 12,00 €", "A" * 64, "Code: 4711!"])
def test_tx_22_a_short_plain_binding_message_is_accepted(message: str) -> None:
    ciba.check_backchannel(backchannel({"binding_message": message}))


@pytest.mark.parametrize("message", ["", "A" * 65, "two\nlines", "tab\there", "bidi\u202etext", "zero\u200bwidth", "nb\u00a0space"])
def test_tx_22_a_long_or_unplain_binding_message_is_invalid_binding_message(message: str) -> None:
    refused("invalid_binding_message", ciba.check_backchannel, backchannel({"binding_message": message}))


def test_tx_22_only_ciba_requests_are_checked() -> None:
    with pytest.raises(ValueError, match="ciba"):
        ciba.check_backchannel(request_for("dtr"))


# -- notifications (TX-26..TX-28, OP-55) ---------------------------------------------------


def test_tx_26_the_ping_names_the_request_only() -> None:
    assert ciba.ping_body("Zt8pQ1mW") == {"auth_req_id": "Zt8pQ1mW"}


def _grant(refresh: bool) -> Any:
    request = request_for("ciba", scope="openid")
    policy = GrantPolicy(access_ttl=timedelta(minutes=5), refresh_ttl=timedelta(hours=1) if refresh else None)
    return build_grant(request, requested_of(request), now=NOW, policy=policy, approved_until=[NOW + timedelta(minutes=10)])


def test_tx_27_a_push_carries_the_approved_grant_and_says_what_the_as_adds() -> None:
    """OP-55: the approved `authorization_details`, bounded by the approval."""
    push = ciba.push_success("Zt8pQ1mW", _grant(refresh=False))
    assert push.body == {"auth_req_id": "Zt8pQ1mW", "expires_in": 300, "authorization_details": [FILE], "scope": "openid"}
    assert push.token_members == ("access_token", "token_type", "id_token")
    assert push.id_token_claims == {"urn:openid:params:jwt:claim:auth_req_id": "Zt8pQ1mW"}
    assert push.id_token_hashes == ("at_hash",)


def test_tx_27_a_pushed_refresh_token_needs_rt_hash_in_the_id_token() -> None:
    push = ciba.push_success("Zt8pQ1mW", _grant(refresh=True))
    assert push.token_members[-1] == "refresh_token"
    assert push.id_token_hashes == ("at_hash", "rt_hash")


def test_tx_28_a_push_error_names_the_request_and_the_error() -> None:
    assert ciba.push_error_body("Zt8pQ1mW", "access_denied") == {"auth_req_id": "Zt8pQ1mW", "error": "access_denied"}
    assert ciba.push_error_body("Zt8pQ1mW", "expired_token", "The request expired") == {
        "auth_req_id": "Zt8pQ1mW",
        "error": "expired_token",
        "error_description": "The request expired",
    }


def test_tx_23_the_polling_grant_type() -> None:
    assert ciba.GRANT_TYPE == "urn:openid:params:grant-type:ciba"
