"""Unit tests of what the AS may mint (profiles/arop/grants.py): spec/arop.md OP-4..OP-6,
OP-33..OP-38, OP-59, OP-63 and oauth-transports.md TX-44..TX-47. Named after the requirement."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from profiles.arop.grants import (
    GrantPolicy,
    GrantRecord,
    build_grant,
    check_exchange,
    check_refresh,
    confirmation,
    details_within,
    element_within,
    scope_within,
    token_lifetime,
)
from profiles.arop.model import (
    Confirmation,
    ExchangeCheckRequest,
    Grant,
    RefreshCheckRequest,
    Sender,
)
from profiles.arop.requested import Requested, requested_of
from profiles.arop.txn_challenge import VerifiedChallenge
from tests.unit.test_arop_profile import (
    BUDGET,
    FILE,
    JKT,
    NOW,
    PLAN,
    refused,
    request_for,
)

APPROVED_AT = datetime(2026, 7, 1, 9, 12, 20, tzinfo=NOW.tzinfo)
APPROVED_UNTIL = datetime(2026, 7, 1, 9, 20, 0, tzinfo=NOW.tzinfo)
POLICY = GrantPolicy(access_ttl=timedelta(minutes=15), refresh_ttl=timedelta(hours=8))
BOTH = {"type": "file_access", "actions": ["download", "read"], "locations": [BUDGET, PLAN]}
CHALLENGE = VerifiedChallenge(
    iss="https://billing.corp.example",
    jti="c7e1",
    txn="b9f2d6c0",
    authorization_details=({"type": "invoice_management", "actions": ["void"], "locations": ["https://billing.corp.example/invoices/inv-2231"]},),
    reason="Voiding invoice inv-2231 requires finance approval.",
    issued_at=NOW,
    expires_at=NOW + timedelta(minutes=5),
    act={"sub": "agent-42"},
)


def granted(**overrides: Any) -> Grant:
    request = request_for("dtr", scope="files:read", actor={"sub": "agent-42"})
    arguments: dict[str, Any] = {"now": APPROVED_AT, "policy": POLICY, "approved_until": [APPROVED_UNTIL], **overrides}
    return build_grant(request, requested_of(request), **arguments)


def record(grant: Grant | None = None, **overrides: Any) -> GrantRecord:
    fields: dict[str, Any] = {
        "grant": grant or granted(),
        "authority": "as-1",
        "client_id": "agent-42",
        "auth_method": "private_key_jwt",
        "sender": Sender(dpop_jkt=JKT),
        "approved_until": "2026-07-01T09:20:00Z",
        **overrides,
    }
    return GrantRecord(**fields)


def refresh(**overrides: Any) -> RefreshCheckRequest:
    fields: dict[str, Any] = {"grant_id": "g1", "client_id": "agent-42", "auth_method": "private_key_jwt", "sender": Sender(dpop_jkt=JKT), **overrides}
    return RefreshCheckRequest(**fields)


def exchange(**overrides: Any) -> ExchangeCheckRequest:
    return ExchangeCheckRequest(**msgspec.structs.asdict(refresh(**overrides)))


LATER = APPROVED_AT + timedelta(minutes=3)


# -- OP-4 / OP-33: never broader -----------------------------------------------------------


@pytest.mark.parametrize(
    "narrower",
    [
        BOTH,
        {**BOTH, "actions": ["read"]},
        {**BOTH, "locations": [PLAN]},
        {**BOTH, "actions": ["read", "download"]},
    ],
)
def test_op_4_narrowing_a_requested_element_is_allowed(narrower: dict[str, Any]) -> None:
    assert element_within(narrower, BOTH)


@pytest.mark.parametrize(
    "broader",
    [
        {**BOTH, "actions": ["read", "delete"]},
        {**BOTH, "actions": []},
        {**BOTH, "locations": ["https://files.corp.example/"]},
        {"type": "file_access", "actions": ["read"]},
        {**BOTH, "datatypes": ["budget"]},
        {**BOTH, "type": "file_admin"},
        {**BOTH, "actions": "read"},
    ],
)
def test_op_4_a_granted_element_is_never_broader(broader: dict[str, Any]) -> None:
    """Adding or dropping a member can widen it (absent often means "any")."""
    assert not element_within(broader, BOTH)


def test_op_33_every_granted_element_narrows_a_requested_one_structurally() -> None:
    amount = {"type": "payment_initiation", "identifier": "p1", "instructedAmount": {"amount": 1, "currency": "EUR"}}
    assert details_within([amount, FILE], [BOTH, {**amount, "instructedAmount": {"currency": "EUR", "amount": 1.0}}])
    assert not details_within([{**amount, "instructedAmount": {"amount": True, "currency": "EUR"}}], [amount])
    assert not details_within([FILE, {**FILE, "actions": ["delete"]}], [BOTH])


def test_op_4_granted_scope_is_a_subset() -> None:
    assert scope_within(["files:read"], ["openid", "files:read"])
    assert not scope_within(["files:write"], ["files:read"])


# -- issuance (OP-34, OP-38, OP-5, OP-63, OP-59, OP-36) ------------------------------------


def test_op_34_expires_in_is_the_earlier_of_policy_ttl_and_approved_until() -> None:
    """§11.1 trace step 9: min(900, 09:20:00 − 09:12:20) = 460 s."""
    grant = granted()
    assert (grant.expires_in, grant.expires_at) == (460, "2026-07-01T09:20:00Z")
    assert granted(approved_until=[]).expires_in == 900


def test_op_34_the_earliest_approval_bound_wins() -> None:
    pdp_bound = APPROVED_AT + timedelta(seconds=100.7)
    assert granted(approved_until=[APPROVED_UNTIL, pdp_bound]).expires_in == 100


@pytest.mark.parametrize("until", [APPROVED_AT, APPROVED_AT - timedelta(seconds=1), APPROVED_AT + timedelta(seconds=0.5)])
def test_op_34_no_time_left_is_access_denied(until: datetime) -> None:
    refused("access_denied", granted, approved_until=[until])


def test_op_34_a_lifetime_below_the_floor_is_no_lifetime() -> None:
    floor = GrantPolicy(access_ttl=timedelta(minutes=15), floor=timedelta(seconds=30))
    assert token_lifetime(now=APPROVED_AT, policy=floor, approved_until=[APPROVED_AT + timedelta(seconds=29)]) == 0
    assert token_lifetime(now=APPROVED_AT, policy=floor, approved_until=[APPROVED_AT + timedelta(seconds=30)]) == 30


def test_op_38_the_grant_is_the_full_requested_set_for_the_principal() -> None:
    grant = granted()
    assert grant.authorization_details == [FILE] and grant.scope == "files:read"
    assert (grant.subject.id, grant.actor) == ("bob@corp.example", {"sub": "agent-42"})
    assert grant.txn is None and grant.grant_id is None


def test_op_5_audience_is_the_resource_indicators_once_each() -> None:
    request = request_for("dtr", resource=["https://b", "https://a", "https://b"])
    grant = build_grant(request, requested_of(request), now=NOW, policy=POLICY)
    assert grant.audience == ["https://b", "https://a"]


@pytest.mark.parametrize(
    ("sender", "cnf"),
    [({"dpop_jkt": JKT}, Confirmation(jkt=JKT)), ({"x5t_s256": "x5t"}, Confirmation(x5t_s256="x5t")), ({}, None)],
)
def test_op_63_the_token_is_bound_to_the_origination_key(sender: dict[str, str], cnf: Confirmation | None) -> None:
    request = request_for("dtr", sender=sender)
    assert build_grant(request, requested_of(request), now=NOW, policy=POLICY).cnf == cnf
    assert confirmation(Sender(**sender)) == cnf


def test_op_59_a_txn_grant_is_for_the_challenging_rs_carries_txn_and_never_refreshes() -> None:
    """TX-45, OP-36: audience = challenge `iss`, `txn` bound, no refresh token."""
    request = request_for("txn", actor={"sub": "agent-42"})
    grant = build_grant(request, CHALLENGE.requested(), now=NOW, policy=POLICY, challenge=CHALLENGE, grant_id="g7")
    assert grant.audience == ["https://billing.corp.example"]
    assert grant.txn == "b9f2d6c0"
    assert grant.authorization_details == list(CHALLENGE.authorization_details)
    assert (grant.refresh_allowed, grant.refresh_expires_at, grant.grant_id) == (False, None, "g7")


def test_tx_45_d_arop_30_the_challenge_act_is_the_actor_unless_the_as_named_one() -> None:
    unnamed = build_grant(request_for("txn"), CHALLENGE.requested(), now=NOW, policy=POLICY, challenge=CHALLENGE)
    assert unnamed.actor == {"sub": "agent-42"}
    named = build_grant(request_for("txn", actor={"sub": "agent-7"}), CHALLENGE.requested(), now=NOW, policy=POLICY, challenge=CHALLENGE)
    assert named.actor == {"sub": "agent-7"}
    assert build_grant(request_for("dtr"), requested_of(request_for("dtr")), now=NOW, policy=POLICY).actor is None


def test_op_36_refresh_is_bounded_by_the_approval_and_the_policy() -> None:
    grant = granted()
    assert (grant.refresh_allowed, grant.refresh_expires_at) == (True, "2026-07-01T09:20:00Z")
    standing = granted(approved_until=[])
    assert standing.refresh_expires_at == "2026-07-01T17:12:20Z"


@pytest.mark.parametrize(
    "overrides", [{"single_use": True}, {"policy": GrantPolicy(access_ttl=timedelta(minutes=15))}]
)
def test_op_36_single_use_approvals_and_policies_without_refresh_get_none(overrides: dict[str, Any]) -> None:
    grant = granted(**overrides)
    assert (grant.refresh_allowed, grant.refresh_expires_at) == (False, None)


# -- refresh and exchange (OP-35, OP-36, OP-37) --------------------------------------------


def test_op_35_a_refresh_is_bounded_again_and_never_extends_the_refresh_bound() -> None:
    renewed = check_refresh(record(), refresh(), authority="as-1", now=LATER, policy=POLICY)
    assert (renewed.expires_in, renewed.expires_at) == (280, "2026-07-01T09:20:00Z")
    assert renewed.refresh_expires_at == granted().refresh_expires_at
    assert renewed.authorization_details == [FILE] and renewed.cnf == Confirmation(jkt=JKT)


@pytest.mark.parametrize("when", [APPROVED_UNTIL, APPROVED_UNTIL + timedelta(minutes=1)])
def test_op_35_refresh_or_exchange_after_approved_until_is_invalid_grant(when: datetime) -> None:
    """§11.1 trace step 11: refresh at 09:21 → invalid_grant."""
    refused("invalid_grant", check_refresh, record(), refresh(), authority="as-1", now=when, policy=POLICY)
    refused("invalid_grant", check_exchange, record(), exchange(), authority="as-1", now=when, policy=POLICY)


def test_op_35_refresh_ends_at_its_own_bound_even_for_standing_access() -> None:
    standing = record(granted(approved_until=[]), approved_until=None)
    assert check_refresh(standing, refresh(), authority="as-1", now=LATER, policy=POLICY).expires_in == 900
    refused("invalid_grant", check_refresh, standing, refresh(), authority="as-1", now=APPROVED_AT + timedelta(hours=8), policy=POLICY)


def test_op_36_no_refresh_where_none_was_allowed() -> None:
    refused("invalid_grant", check_refresh, record(granted(single_use=True)), refresh(), authority="as-1", now=LATER, policy=POLICY)


@pytest.mark.parametrize(
    "mismatch",
    [{"client_id": "agent-43"}, {"auth_method": "none"}, {"sender": Sender(dpop_jkt="another-key")}, {"sender": Sender()}],
)
def test_op_62_refresh_and_exchange_need_the_origination_client_and_key(mismatch: dict[str, Any]) -> None:
    refused("invalid_grant", check_refresh, record(), refresh(**mismatch), authority="as-1", now=LATER, policy=POLICY)
    refused("invalid_grant", check_exchange, record(), exchange(**mismatch), authority="as-1", now=LATER, policy=POLICY)


def test_d_arop_29_refresh_and_exchange_only_through_the_minting_as() -> None:
    refused("invalid_grant", check_refresh, record(), refresh(), authority="as-2", now=LATER, policy=POLICY)
    refused("invalid_grant", check_exchange, record(), exchange(), authority="as-2", now=LATER, policy=POLICY)


def test_op_35_refresh_and_exchange_may_narrow() -> None:
    wide = record(granted(approved_until=[APPROVED_UNTIL]))
    narrowed = check_refresh(wide, refresh(scope="files:read", resource=["https://files.corp.example"]), authority="as-1", now=LATER, policy=POLICY)
    assert (narrowed.scope, narrowed.audience) == ("files:read", ["https://files.corp.example"])
    both = record(msgspec.structs.replace(granted(), authorization_details=[BOTH]))
    assert check_exchange(both, exchange(authorization_details=[FILE]), authority="as-1", now=LATER, policy=POLICY).authorization_details == [FILE]


@pytest.mark.parametrize(
    ("ask", "code"),
    [
        ({"authorization_details": [{**FILE, "actions": ["delete"]}]}, "invalid_authorization_details"),
        ({"scope": "files:read files:write"}, "invalid_scope"),
        ({"scope": "bad\\scope"}, "invalid_scope"),
        ({"resource": ["https://other.corp.example"]}, "invalid_target"),
    ],
)
def test_op_35_refresh_and_exchange_never_widen(ask: dict[str, Any], code: str) -> None:
    refused(code, check_refresh, record(), refresh(**ask), authority="as-1", now=LATER, policy=POLICY)
    refused(code, check_exchange, record(), exchange(**ask), authority="as-1", now=LATER, policy=POLICY)


def test_op_35_exchange_output_is_bounded_and_carries_no_refresh() -> None:
    exchanged = check_exchange(record(), exchange(), authority="as-1", now=LATER, policy=POLICY)
    assert (exchanged.expires_in, exchanged.refresh_allowed, exchanged.refresh_expires_at) == (280, False, None)


def test_tx_47_a_single_use_grant_is_never_exchanged() -> None:
    request = request_for("txn")
    txn_grant = build_grant(request, CHALLENGE.requested(), now=NOW, policy=POLICY, challenge=CHALLENGE, single_use=True)
    refused("invalid_grant", check_exchange, record(txn_grant, single_use=True), exchange(), authority="as-1", now=NOW + timedelta(seconds=1), policy=POLICY)


def test_s10_requested_from_a_challenge_is_its_details_only() -> None:
    assert CHALLENGE.requested() == Requested(authorization_details=CHALLENGE.authorization_details)
