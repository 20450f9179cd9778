"""Unit tests of the pure ARAP protocol rules in profiles/arap (no server, no store, no clock).

Each test is named after the requirement of spec/arap.md it proves (AR-n); `test_edge_n_…`
tests prove the §19 edge case n; `test_rfc3339_…`/`test_s8_1_…` prove rules without an AR id.
Real ES256 keys are generated per module; time is always passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from profiles.arap.approval import (
    ApplicableApproval,
    ApprovalRecord,
    RejectedApproval,
    approval_claims,
    next_action_for,
    sign_approval_state,
    verify_approval,
)
from profiles.arap.binding import (
    VerifiedBinding,
    binding_claims,
    sign_binding_token,
    verify_binding_token,
)
from profiles.arap.callbacks import (
    SIGNATURE_HEADER,
    callback_body,
    callback_signature,
    check_callback_addresses,
    check_callback_endpoint,
    check_callback_uri,
    verify_callback_signature,
    wants_event,
)
from profiles.arap.compare import (
    NEVER_BOUND,
    Covered,
    Target,
    bound_document,
    context_view,
    json_equal,
    relevant_members,
    strip_act,
)
from profiles.arap.denial import requestable_denial_context
from profiles.arap.discovery import CAPABILITY, ArapMetadata, with_access_request
from profiles.arap.errors import (
    ARAPError,
    BadRequest,
    DuplicateRequest,
    ExpiredDenial,
    InvalidDenialBinding,
    InvalidTaskState,
    NotRequestable,
    TaskExpired,
    UnknownTask,
    problem_body,
)
from profiles.arap.jcs import binding_hash, canonicalize, format_number
from profiles.arap.model import (
    AccessRequestHint,
    Approval,
    Callback,
    Denial,
    Result,
    Submission,
    Task,
    TaskItem,
    TaskResponse,
    format_instant,
    parse_instant,
)
from profiles.arap.recorded import (
    RecordedEvaluation,
    record_evaluation,
    verify_recorded,
)
from profiles.arap.signed import APPROVAL_TYP, BINDING_TYP
from profiles.arap.submission import (
    check_shape,
    coverage_plan,
    entity_json,
    request_fingerprint,
    requested_access,
)
from profiles.arap.tasks import (
    aggregate_status,
    cancel,
    check_retrievable,
    check_task_response,
    transition,
)
from profiles.authzen.metadata import build_metadata, sign_metadata
from profiles.authzen.model import Action, Resource

NOW = datetime(2026, 6, 1, 10, 0, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=10)
EXPIRES_TEXT = "2026-06-01T10:10:00Z"
SKEW = timedelta(seconds=30)
PDP = "https://pdp.example.net"
ARS = "https://pdp.example.net/access/v1/requests"
KID = "pdp-1"

SUBJECT = {"type": "employee", "id": "e-1042", "properties": {"dept": "finance"}}
RESOURCE = {"type": "report", "id": "fy26-budget", "properties": {"classification": "internal"}}
ACTION = {"name": "download"}
CONTEXT = {"amount": 100, "channel": "web", "time": "2026-06-01T10:00:00Z", "business_justification": "Board pack"}
MEMBERS = ["amount", "channel"]
REMOVE = object()


# -- keys and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": KID}, private=True)


@pytest.fixture(scope="module")
def other_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": KID}, private=True)


def public(key: ECKey) -> ECKey:
    return ECKey.import_key(key.as_dict(private=False))


def resolver(key: ECKey, issuer: str = PDP) -> Callable[[str | None, str | None], ECKey | None]:
    """The service's JWK Set view: the key with this kid, only for the issuer it is trusted for."""
    trusted = public(key)

    def resolve(iss: str | None, kid: str | None) -> ECKey | None:
        return trusted if (iss, kid) == (issuer, key.kid) else None

    return resolve


class ReplayCache:
    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    def __call__(self, jti: str, until: datetime) -> bool:
        if jti in self.seen:
            return True
        self.seen[jti] = until
        return False


def covered(
    subject: dict[str, Any] = SUBJECT,
    resource: dict[str, Any] = RESOURCE,
    action: dict[str, Any] = ACTION,
    context: dict[str, Any] | None = CONTEXT,
) -> Covered:
    return Covered(subject, context, (Target(resource, action),))


def bulk(*targets: tuple[dict[str, Any], dict[str, Any]], context: dict[str, Any] | None = CONTEXT) -> Covered:
    return Covered(SUBJECT, context, tuple(Target(r, a) for r, a in targets), bulk=True)


RESOURCE_2 = {"type": "report", "id": "fy27-plan"}
ACTION_2 = {"name": "view"}


def claims_for(what: Covered | None = None, /, *, inline: bool = True, **overrides: Any) -> dict[str, Any]:
    claims = binding_claims(
        issuer=PDP,
        audience=ARS,
        covered=what or covered(),
        members=MEMBERS,
        expires_at=EXPIRES,
        now=NOW,
        lifetime=timedelta(minutes=5),
        jti="jti-1",
        evaluation_id="ev_1",
        inline=inline,
    )
    for name, value in overrides.items():
        if value is REMOVE:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def token_for(key: ECKey, what: Covered | None = None, /, *, inline: bool = True, **overrides: Any) -> str:
    return sign_binding_token(claims_for(what, inline=inline, **overrides), key)


def denial(token: str | None = None, *, evaluation_id: str | None = "ev_1", expires_at: str = EXPIRES_TEXT) -> Denial:
    return Denial(expires_at=expires_at, evaluation_id=evaluation_id, binding_token=token)


def verify(
    key: ECKey,
    token: str,
    what: Covered | None = None,
    *,
    echoed: Denial | None = None,
    now: datetime = NOW,
    audience: str = ARS,
    seen: Callable[[str, datetime], bool] | None = None,
) -> VerifiedBinding:
    return verify_binding_token(
        echoed or denial(token),
        what or covered(),
        resolve_key=resolver(key),
        audience=audience,
        now=now,
        skew=SKEW,
        seen_jti=seen or ReplayCache(),
    )


def invalid_binding(call: Callable[..., Any], *args: Any, **kwargs: Any) -> InvalidDenialBinding:
    with pytest.raises(InvalidDenialBinding) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)))


def segments(token: str) -> list[str]:
    return token.split(".")


def decode_segment(segment: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return value


# -- RFC 3339 instants -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-01T10:10:00Z", datetime(2026, 6, 1, 10, 10, tzinfo=UTC)),
        ("2026-06-01t10:10:00z", datetime(2026, 6, 1, 10, 10, tzinfo=UTC)),
        ("2026-06-01T12:10:00+02:00", datetime(2026, 6, 1, 10, 10, tzinfo=UTC)),
        ("2026-06-01T05:40:00-04:30", datetime(2026, 6, 1, 10, 10, tzinfo=UTC)),
        ("2026-06-01T10:10:00-00:00", datetime(2026, 6, 1, 10, 10, tzinfo=UTC)),
        ("2026-06-01T10:10:00.5Z", datetime(2026, 6, 1, 10, 10, 0, 500000, tzinfo=UTC)),
        ("2026-06-01T10:10:00.123456789Z", datetime(2026, 6, 1, 10, 10, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_parse_instant_is_utc_aware(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-06-01T10:10:00",  # naive: no instant
        "2026-06-01",
        "20260601T101000Z",
        "2026-06-01 10:10:00Z",
        "2026-06-01T10:10Z",
        "2026-13-01T10:10:00Z",
        "2026-06-01T10:10:60Z",
        "2026-06-01T10:10:00+24:00",
        "2026-06-01T10:10:00+0200",
        "0001-01-01T00:00:00+01:00",
        "0000-06-01T10:10:00Z",
        " 2026-06-01T10:10:00Z",
        "2026-06-01T10:10:00Z\n",
        "tomorrow",
        "",
        1780308600,
        None,
    ],
)
def test_rfc3339_parse_instant_rejects_naive_and_garbage(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


def test_rfc3339_format_instant_z_suffix_seconds_unless_subsecond() -> None:
    assert format_instant(NOW) == "2026-06-01T10:00:00Z"
    assert format_instant(NOW.astimezone(timezone(timedelta(hours=2)))) == "2026-06-01T10:00:00Z"
    assert format_instant(NOW.replace(microsecond=500000)) == "2026-06-01T10:00:00.5Z"
    assert format_instant(NOW.replace(microsecond=1)) == "2026-06-01T10:00:00.000001Z"
    assert parse_instant(format_instant(NOW.replace(microsecond=123400))) == NOW.replace(microsecond=123400)


def test_rfc3339_format_instant_rejects_naive() -> None:
    with pytest.raises(ValueError):
        format_instant(datetime(2026, 6, 1, 10, 0))


# -- discovery (§1) --------------------------------------------------------------------------


def arap_metadata(endpoint: str = ARS, jwks_uri: str = PDP + "/jwks") -> ArapMetadata:
    return with_access_request(build_metadata(PDP), access_request_endpoint=endpoint, jwks_uri=jwks_uri)


def test_ar_1_metadata_publishes_the_access_request_endpoint() -> None:
    document = msgspec.to_builtins(arap_metadata("https://ars.example.org/requests"))
    assert document["access_request_endpoint"] == "https://ars.example.org/requests"
    assert document["access_evaluation_endpoint"] == PDP + "/access/v1/evaluation"


@pytest.mark.parametrize("url", ["http://ars.example.org/requests", "ftp://ars.example.org/r", "/access/v1/requests", ""])
def test_ar_1_access_request_endpoint_must_be_https(url: str) -> None:
    with pytest.raises(ValueError, match="access_request_endpoint"):
        arap_metadata(url)


def test_ar_1_plain_http_only_on_loopback_for_the_local_service() -> None:
    assert arap_metadata("http://127.0.0.1:8080/access/v1/requests", "http://localhost:8080/jwks").jwks_uri


def test_ar_2_capability_urn_listed_once() -> None:
    assert CAPABILITY == "urn:openid:authzen:capability:access-request"
    once = arap_metadata()
    assert once.capabilities == [CAPABILITY]
    twice = with_access_request(once, access_request_endpoint=ARS, jwks_uri=PDP + "/jwks")
    assert twice.capabilities == [CAPABILITY]


def test_ar_3_jwks_uri_published_and_https() -> None:
    assert arap_metadata().jwks_uri == PDP + "/jwks"
    with pytest.raises(ValueError, match="jwks_uri"):
        arap_metadata(jwks_uri="http://pdp.example.net/jwks")


def test_ar_3_a_previous_metadata_signature_is_not_carried_over(key: ECKey) -> None:
    signed = sign_metadata(build_metadata(PDP), key, ttl_seconds=60, now=NOW.timestamp())
    assert with_access_request(signed, access_request_endpoint=ARS, jwks_uri=PDP + "/jwks").signed_metadata is None


# -- requestable denial (§2) -----------------------------------------------------------------


def hint(**members: Any) -> AccessRequestHint:
    return AccessRequestHint(**({"expires_at": EXPIRES_TEXT, "template": "owner_approval"} | members))


def test_ar_9_requestable_denial_carries_expiry_and_binding_material() -> None:
    context = requestable_denial_context(
        hint(binding_token="tok"), evaluation_id="ev_1", evaluated_at=NOW, reason="approval_required"
    )
    assert context == {
        "evaluation_id": "ev_1",
        "evaluated_at": "2026-06-01T10:00:00Z",
        "reason": "approval_required",
        "access_request": {"expires_at": EXPIRES_TEXT, "template": "owner_approval", "binding_token": "tok"},
    }


def test_ar_9_no_binding_material_means_no_access_request() -> None:
    with pytest.raises(ValueError, match="AR-9"):
        requestable_denial_context(hint(), evaluation_id=None, evaluated_at=NOW, reason=None)


@pytest.mark.parametrize("expires_at", ["in ten minutes", "2026-06-01T10:10:00", "PT10M"])
def test_ar_9_expires_at_must_be_an_rfc3339_instant(expires_at: str) -> None:
    with pytest.raises(ValueError):
        requestable_denial_context(hint(expires_at=expires_at), evaluation_id="ev_1", evaluated_at=NOW, reason=None)


def test_ar_10_without_a_token_the_evaluation_id_is_the_binding() -> None:
    context = requestable_denial_context(hint(), evaluation_id="ev_9", evaluated_at=NOW, reason=None)
    assert context["evaluation_id"] == "ev_9" and "binding_token" not in context["access_request"]


def test_ar_11_catalogs_only_together_with_a_schema() -> None:
    with pytest.raises(ValueError, match="AR-11"):
        requestable_denial_context(
            hint(request_catalogs_url="https://ars.example.net/catalogs"), evaluation_id="ev_1", evaluated_at=NOW, reason=None
        )
    context = requestable_denial_context(
        hint(request_catalogs_url="https://ars.example.net/catalogs", request_schema_url="https://ars.example.net/s.json"),
        evaluation_id="ev_1",
        evaluated_at=NOW,
        reason=None,
    )
    assert context["access_request"]["request_catalogs_url"] == "https://ars.example.net/catalogs"


def test_ar_11_hint_urls_are_https() -> None:
    with pytest.raises(ValueError, match="HTTPS"):
        requestable_denial_context(hint(form_url="http://ars.example.net/form"), evaluation_id="ev_1", evaluated_at=NOW, reason=None)


def test_ar_12_reason_is_the_machine_readable_code() -> None:
    context = requestable_denial_context(hint(), evaluation_id="ev_1", evaluated_at=NOW, reason="approval_required")
    assert context["reason"] == "approval_required"
    assert "reason" not in requestable_denial_context(hint(), evaluation_id="ev_1", evaluated_at=NOW, reason=None)


# -- structural comparison (§4) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, msgspec.json.decode(b"1e0")),
        (100, msgspec.json.decode(b"1E2")),
        (0, -0.0),
        (0.1 + 0.2, 0.30000000000000004),
        (2**53, 2**53 + 1),  # both are the same IEEE double, hence the same JCS number
        ({"n": [1, 2.0]}, {"n": [1.0, 2]}),
    ],
)
def test_ar_21_numbers_compare_by_value(a: Any, b: Any) -> None:
    assert json_equal(a, b) and json_equal(b, a)


@pytest.mark.parametrize(("a", "b"), [(1, 2), (0.1, 0.10000000000000002), (1, "1"), (2**60, 2**60 + 1024)])
def test_ar_21_different_numbers_differ(a: Any, b: Any) -> None:
    assert not json_equal(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [(True, 1), (False, 0), (1.0, True), ([True], [1]), ({"x": False}, {"x": 0}), (True, "true")]
)
def test_ar_21_bool_never_equals_number(a: Any, b: Any) -> None:
    assert not json_equal(a, b) and not json_equal(b, a)
    assert json_equal(True, True) and not json_equal(True, False)


def test_ar_21_strings_compare_code_point_by_code_point() -> None:
    assert json_equal("é", "é")
    assert not json_equal("\u00e9", "e\u0301")  # NFC vs NFD: no normalisation
    assert not json_equal("Alice", "alice")
    assert not json_equal("a", ["a"])


def test_ar_21_arrays_compare_in_order() -> None:
    assert json_equal([1, "a", None], [1.0, "a", None])
    assert not json_equal(["a", "b"], ["b", "a"])
    assert not json_equal([1], [1, 1])


def test_ar_21_objects_need_the_same_member_set() -> None:
    assert json_equal({"a": 1, "b": {"c": [1]}}, {"b": {"c": [1.0]}, "a": 1})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal({}, [])


def test_ar_21_absent_is_not_null() -> None:
    assert not json_equal({"a": None}, {})
    assert json_equal({"a": None}, {"a": None})
    assert not json_equal(None, {})
    assert not json_equal(None, False)


def test_ar_21_numbers_without_a_double_equal_nothing() -> None:
    huge = 10**400
    assert not json_equal(huge, huge)
    assert not json_equal(float("nan"), float("nan"))


def test_ar_22_act_is_removed_and_an_emptied_properties_dropped() -> None:
    agent_chain = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent-7"}}}
    assert strip_act(agent_chain) == {"type": "user", "id": "u1"}
    with_more = {"type": "user", "id": "u1", "properties": {"act": {"sub": "a"}, "dept": "x"}}
    assert strip_act(with_more) == {"type": "user", "id": "u1", "properties": {"dept": "x"}}
    assert strip_act({"type": "user", "id": "u1", "properties": {}}) == {"type": "user", "id": "u1", "properties": {}}
    assert strip_act({"type": "user", "id": "u1"}) == {"type": "user", "id": "u1"}


def test_ar_22_strip_act_leaves_its_input_untouched() -> None:
    subject = {"type": "user", "id": "u1", "properties": {"act": {"sub": "a"}, "dept": "x"}}
    snapshot = json.loads(json.dumps(subject))
    strip_act(subject)
    assert subject == snapshot


def test_ar_22_entities_compare_whole_including_properties() -> None:
    bound = bound_document(covered(), MEMBERS)
    other = {**RESOURCE, "properties": {"classification": "secret"}}
    assert not json_equal(bound, bound_document(covered(resource=other), MEMBERS))
    no_props = {"type": "employee", "id": "e-1042"}
    assert not json_equal(bound, bound_document(covered(subject=no_props), MEMBERS))


def test_ar_18_context_view_is_exactly_the_bound_members() -> None:
    assert context_view(CONTEXT, MEMBERS) == {"amount": 100, "channel": "web"}
    assert context_view({"amount": None}, MEMBERS) == {"amount": None}
    assert context_view({"channel": "web"}, MEMBERS) == {"channel": "web"}  # absent stays absent
    assert context_view(None, MEMBERS) == {}
    assert context_view(CONTEXT, []) == {}


def test_ar_18_no_member_set_means_the_context_does_not_bind() -> None:
    assert bound_document(covered(), None)["context"] == {}


def test_ar_17_member_sets_never_hold_machinery_members() -> None:
    names = ["reason", "amount", "approval", "evaluation_id", "amount", "access_request", "retry_after", "channel"]
    assert relevant_members(names) == ["amount", "channel"]
    assert NEVER_BOUND >= {"access_request", "evaluation_id", "evaluated_at", "reason", "approval", "next_action", "retry_after"}


def test_edge_3_python_equality_traps_are_avoided() -> None:
    assert {"x": True} == {"x": 1} and not json_equal({"x": True}, {"x": 1})
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal({"x": None}, {})


def test_edge_4_act_stripped_on_both_sides() -> None:
    bound = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent-7"}}}
    submitted = {"type": "user", "id": "u1"}
    document = bound_document(covered(subject=bound), MEMBERS)
    assert json_equal(document, bound_document(covered(subject=submitted), MEMBERS))
    assert json_equal(bound_document(covered(subject=submitted), MEMBERS), bound_document(covered(subject=bound), MEMBERS))


def test_edge_5_only_the_bound_view_of_the_context_binds() -> None:
    later = {**CONTEXT, "time": "2026-06-01T10:05:00Z", "business_justification": "changed"}
    assert json_equal(bound_document(covered(), MEMBERS), bound_document(covered(context=later), MEMBERS))
    assert not json_equal(bound_document(covered(), [*MEMBERS, "time"]), bound_document(covered(context=later), [*MEMBERS, "time"]))


# -- JCS (RFC 8785) --------------------------------------------------------------------------

RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_ar_25_jcs_number_serialisation_rfc8785_appendix_b(bits: str, expected: str) -> None:
    assert format_number(struct.unpack(">d", bytes.fromhex(bits))[0]) == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1e30, "1e+30"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (-0.0, "0"),
        (333333333.33333329, "333333333.3333333"),
        (1e-27, "1e-27"),
        (1.0, "1"),
        (100, "100"),
        (-42, "-42"),
        (123e18, "123000000000000000000"),
        (2**53 - 1, "9007199254740991"),
        (2**53 + 1, "9007199254740992"),  # beyond the safe range: its double
        (10**21, "1e+21"),
        (123456789012345678901234567890, "1.2345678901234568e+29"),
    ],
)
def test_ar_25_jcs_numbers_use_ecmascript_formatting(number: float, expected: str) -> None:
    assert format_number(number) == expected


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_ar_25_jcs_rejects_nan_and_infinity(bits: str) -> None:
    with pytest.raises(ValueError):
        canonicalize([struct.unpack(">d", bytes.fromhex(bits))[0]])


@pytest.mark.parametrize("value", [10**400, "\ud800", {1: "x"}, {"a": object()}, b"bytes"])
def test_ar_25_jcs_rejects_what_has_no_canonical_form(value: Any) -> None:
    with pytest.raises(ValueError):
        canonicalize(value)


def test_ar_25_jcs_rfc8785_section_3_2_2_example() -> None:
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(value) == expected.encode("utf-8")


def test_ar_25_jcs_sorts_members_by_utf16_code_units() -> None:
    value = json.loads(
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    order = list(json.loads(canonicalize(value)))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # a code point sort would put U+FB33 before the emoji; UTF-16 puts the surrogate D83D first
    assert sorted(value) != order


def test_ar_25_jcs_string_escaping_and_nesting() -> None:
    assert canonicalize({"b": [1, {"z": None, "a": "\u007f/\u001f"}], "a": "\t"}) == (
        b'{"a":"\\t","b":[1,{"a":"\x7f/\\u001f","z":null}]}'
    )


def test_ar_25_binding_hash_is_base64url_sha256_of_the_jcs_document() -> None:
    subject = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent"}}}
    document = (
        '{"action":{"name":"download"},"context":{"amount":100,"channel":"web"},'
        '"resource":{"id":"fy26-budget","properties":{"classification":"internal"},"type":"report"},'
        '"subject":{"id":"u1","type":"user"}}'
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(document.encode()).digest()).rstrip(b"=").decode()
    assert binding_hash(covered(subject=subject), MEMBERS) == expected
    assert "=" not in expected and len(expected) == 43


def test_ar_25_binding_hash_context_is_empty_when_nothing_binds() -> None:
    document = bound_document(covered(), None)
    assert document["context"] == {}
    assert binding_hash(covered(), None) == binding_hash(covered(context=None), [])


def test_ar_25_bulk_hash_lists_items_in_order_and_differs_from_single() -> None:
    two = bulk((RESOURCE, ACTION), (RESOURCE_2, ACTION_2))
    swapped = bulk((RESOURCE_2, ACTION_2), (RESOURCE, ACTION))
    assert bound_document(two, MEMBERS)["items"] == [
        {"resource": RESOURCE, "action": ACTION},
        {"resource": RESOURCE_2, "action": ACTION_2},
    ]
    assert binding_hash(two, MEMBERS) != binding_hash(swapped, MEMBERS)
    assert binding_hash(bulk((RESOURCE, ACTION)), MEMBERS) != binding_hash(covered(), MEMBERS)


def test_ar_25_covered_needs_its_targets() -> None:
    with pytest.raises(ValueError):
        Covered(SUBJECT, None, ())
    with pytest.raises(ValueError):
        Covered(SUBJECT, None, (Target(RESOURCE, ACTION), Target(RESOURCE_2, ACTION_2)))


# -- binding_token: issuing (§5) --------------------------------------------------------------


def test_ar_23_binding_token_is_an_es256_compact_jws_with_kid_and_typ(key: ECKey) -> None:
    token = token_for(key)
    header = decode_segment(segments(token)[0])
    assert header == {"alg": "ES256", "kid": KID, "typ": BINDING_TYP}
    assert jwt.decode(token, public(key), algorithms=["ES256"]).claims["aud"] == ARS


def test_ar_23_binding_claims_protect_audience_expiry_and_values() -> None:
    subject = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent"}, "dept": "x"}}
    claims = claims_for(covered(subject=subject))
    assert claims["iss"] == PDP and claims["aud"] == ARS and claims["jti"] == "jti-1"
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int((NOW + timedelta(minutes=5)).timestamp())
    assert claims["denial_expires_at"] == EXPIRES_TEXT
    assert claims["binding_context_members"] == MEMBERS
    assert claims["evaluation_id"] == "ev_1"
    assert claims["subject"] == {"type": "user", "id": "u1", "properties": {"dept": "x"}}
    assert claims["resource"] == RESOURCE and claims["action"] == ACTION
    assert claims["context"] == {"amount": 100, "channel": "web"}
    assert "binding_hash" not in claims


def test_ar_23_token_exp_never_outlives_the_hint() -> None:
    claims = binding_claims(
        issuer=PDP, audience=ARS, covered=covered(), members=[], expires_at=NOW + timedelta(minutes=2),
        now=NOW, lifetime=timedelta(minutes=5), jti="j",
    )
    assert claims["exp"] == int((NOW + timedelta(minutes=2)).timestamp())
    assert claims["binding_context_members"] == [] and "evaluation_id" not in claims


def test_ar_25_hash_mode_claims_carry_the_hash_instead_of_values() -> None:
    claims = claims_for(inline=False)
    assert claims["binding_hash"] == binding_hash(covered(), MEMBERS)
    assert not {"subject", "resource", "action", "context"} & claims.keys()


def test_ar_25_bulk_inline_claims_list_every_item_in_order() -> None:
    claims = claims_for(bulk((RESOURCE, ACTION), (RESOURCE_2, ACTION_2)))
    assert claims["items"] == [{"resource": RESOURCE, "action": ACTION}, {"resource": RESOURCE_2, "action": ACTION_2}]
    assert "resource" not in claims and "action" not in claims


def test_ar_17_member_set_is_protected_and_free_of_machinery() -> None:
    claims = binding_claims(
        issuer=PDP, audience=ARS, covered=covered(), members=["channel", "reason", "amount", "approval"],
        expires_at=EXPIRES, now=NOW, lifetime=timedelta(minutes=5), jti="j",
    )
    assert claims["binding_context_members"] == ["amount", "channel"]


def test_ar_17_no_member_set_means_no_claim() -> None:
    claims = binding_claims(
        issuer=PDP, audience=ARS, covered=covered(), members=None, expires_at=EXPIRES, now=NOW,
        lifetime=timedelta(minutes=5), jti="j",
    )
    assert "binding_context_members" not in claims and claims["context"] == {}


# -- binding_token: ARS verification (AR-24..AR-27) -------------------------------------------


def test_ar_26_a_valid_inline_token_verifies(key: ECKey) -> None:
    token = token_for(key)
    verified = verify(key, token)
    assert verified == VerifiedBinding(evaluation_id="ev_1", members=MEMBERS, deadline=NOW + timedelta(minutes=5))


def test_ar_26_a_valid_hash_token_verifies(key: ECKey) -> None:
    verified = verify(key, token_for(key, inline=False))
    assert verified.members == MEMBERS


def test_ar_26_the_submission_is_compared_not_the_echo_of_volatile_members(key: ECKey) -> None:
    later = {**CONTEXT, "time": "2026-06-01T10:04:00Z", "business_justification": "more detail"}
    assert verify(key, token_for(key), covered(context=later)).members == MEMBERS


def test_ar_24_a_foreign_pdp_token_with_plain_jwt_typ_verifies(key: ECKey) -> None:
    claims = claims_for()
    token = jwt.encode({"alg": "ES256", "kid": KID}, claims, key)
    assert decode_segment(segments(token)[0])["typ"] == "JWT"
    assert verify(key, token).evaluation_id == "ev_1"


def test_ar_26_step_1_unknown_kid_is_invalid(key: ECKey, other_key: ECKey) -> None:
    renamed = ECKey.import_key(other_key.as_dict(private=True) | {"kid": "rotated-away"})
    error = invalid_binding(verify, key, token_for(renamed))
    assert "no key trusted" in error.detail


def test_ar_26_step_1_key_must_be_trusted_for_the_tokens_issuer(key: ECKey) -> None:
    token = token_for(key, iss="https://evil.example")
    invalid_binding(verify, key, token)
    token_without_iss = token_for(key, iss=REMOVE)
    invalid_binding(verify, key, token_without_iss)


def test_ar_26_step_1_resolver_receives_iss_and_kid(key: ECKey) -> None:
    asked: list[tuple[str | None, str | None]] = []

    def resolve(iss: str | None, kid: str | None) -> ECKey | None:
        asked.append((iss, kid))
        return public(key)

    token = token_for(key)
    verify_binding_token(
        denial(token), covered(), resolve_key=resolve, audience=ARS, now=NOW, skew=SKEW, seen_jti=ReplayCache()
    )
    assert asked == [(PDP, KID)]


def test_ar_26_step_2_signature_of_another_key_is_invalid(key: ECKey, other_key: ECKey) -> None:
    error = invalid_binding(verify, key, token_for(other_key))  # same kid, different key
    assert "signature" in error.detail


def test_ar_26_step_2_modified_payload_is_invalid(key: ECKey) -> None:
    header, payload, signature = segments(token_for(key))
    claims = decode_segment(payload)
    claims["subject"]["id"] = "e-9999"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    invalid_binding(verify, key, forged, covered(subject={**SUBJECT, "id": "e-9999"}))


def test_ar_26_step_2_modified_header_is_invalid(key: ECKey) -> None:
    _, payload, signature = segments(token_for(key))
    header = b64(json.dumps({"alg": "ES256", "kid": KID, "typ": "JWT"}).encode())
    invalid_binding(verify, key, f"{header}.{payload}.{signature}")


def test_ar_26_alg_none_is_invalid(key: ECKey) -> None:
    for header in ({"alg": "none"}, {"alg": "none", "kid": KID}, {"alg": "None", "kid": KID}):
        error = invalid_binding(verify, key, compact(header, claims_for()))
        assert "not accepted" in error.detail


def test_ar_26_hs256_with_the_public_key_as_secret_is_invalid(key: ECKey) -> None:
    """Key confusion: an attacker MACs with the published public key as the HMAC secret."""
    secret = OctKey.import_key(json.dumps(key.as_dict(private=False)).encode())
    forged = jwt.encode({"alg": "HS256", "kid": KID}, claims_for(), secret, algorithms=["HS256"])
    error = invalid_binding(verify, key, forged)
    assert "HS256" in error.detail


def test_ar_26_other_asymmetric_algorithms_are_invalid(key: ECKey) -> None:
    p384 = ECKey.generate_key("P-384", parameters={"kid": KID}, private=True)
    token = jwt.encode({"alg": "ES384", "kid": KID}, claims_for(), p384, algorithms=["ES384"])
    invalid_binding(verify, key, token)


def test_ar_26_crit_extensions_are_invalid(key: ECKey) -> None:
    token = compact({"alg": "ES256", "kid": KID, "crit": ["exp"], "exp": 1}, claims_for(), b"x" * 64)
    invalid_binding(verify, key, token)


@pytest.mark.parametrize("token", ["", "not-a-jws", "a.b", "a.b.c.d.e", "é.é.é", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.AAAA"])
def test_ar_26_garbage_tokens_are_invalid(key: ECKey, token: str) -> None:
    invalid_binding(verify, key, token)


def test_ar_26_payload_must_be_a_json_object(key: ECKey) -> None:
    header = b64(json.dumps({"alg": "ES256", "kid": KID}).encode())
    invalid_binding(verify, key, f"{header}.{b64(b'[1,2]')}.{b64(b'sig')}")


def test_edge_2_token_without_aud_is_invalid(key: ECKey) -> None:
    error = invalid_binding(verify, key, token_for(key, aud=REMOVE))
    assert "aud" in error.detail


@pytest.mark.parametrize("aud", ["https://other-ars.example", ["https://other-ars.example"], [], 42, None, [ARS + "/"]])
def test_edge_2_foreign_audience_is_invalid(key: ECKey, aud: Any) -> None:
    invalid_binding(verify, key, token_for(key, aud=aud))


def test_ar_26_audience_array_containing_ours_verifies(key: ECKey) -> None:
    assert verify(key, token_for(key, aud=["https://other.example", ARS])).members == MEMBERS


def test_ar_26_step_3_jti_replay_is_invalid(key: ECKey) -> None:
    cache = ReplayCache()
    token = token_for(key)
    verify(key, token, seen=cache)
    error = invalid_binding(verify, key, token, seen=cache)
    assert "replay" in error.detail


def test_ar_26_step_3_jti_remembered_until_the_tokens_own_expiry(key: ECKey) -> None:
    cache = ReplayCache()
    token = token_for(key)
    forged_short_echo = denial(token, expires_at="2026-06-01T10:00:01Z")
    with pytest.raises(InvalidDenialBinding):
        verify(key, token, echoed=forged_short_echo, seen=cache)
    assert cache.seen["jti-1"] == NOW + timedelta(minutes=5) + SKEW


def test_ar_26_step_3_jti_must_be_a_string(key: ECKey) -> None:
    invalid_binding(verify, key, token_for(key, jti=17))


def test_ar_26_step_3_a_token_without_jti_is_not_replay_checked(key: ECKey) -> None:
    cache = ReplayCache()
    token = token_for(key, jti=REMOVE)
    verify(key, token, seen=cache)
    verify(key, token, seen=cache)
    assert cache.seen == {}


@pytest.mark.parametrize(
    "submitted",
    [
        covered(subject={**SUBJECT, "id": "e-1043"}),
        covered(subject={"type": "employee", "id": "e-1042"}),
        covered(subject={**SUBJECT, "properties": {"dept": "finance", "level": 3}}),
        covered(resource={**RESOURCE, "id": "fy27-budget"}),
        covered(resource={"type": "report", "id": "fy26-budget"}),
        covered(action={"name": "delete"}),
        covered(action={"name": "download", "properties": {"format": "pdf"}}),
        covered(context={**CONTEXT, "amount": 101}),
        covered(context={**CONTEXT, "amount": True}),
        covered(context={**CONTEXT, "amount": "100"}),
        covered(context={key: value for key, value in CONTEXT.items() if key != "channel"}),
        covered(context={**CONTEXT, "channel": None}),
        covered(context=None),
    ],
)
def test_ar_26_step_4_inline_claims_must_match_the_submission(key: ECKey, submitted: Covered) -> None:
    error = invalid_binding(verify, key, token_for(key), submitted)
    assert error.detail


@pytest.mark.parametrize(
    "submitted",
    [
        covered(subject={**SUBJECT, "id": "e-1043"}),
        covered(context={**CONTEXT, "amount": 101}),
        covered(context={**CONTEXT, "channel": None}),
    ],
)
def test_ar_26_step_4_hash_must_match_the_submission(key: ECKey, submitted: Covered) -> None:
    error = invalid_binding(verify, key, token_for(key, inline=False), submitted)
    assert "binding_hash" in error.detail


def test_ar_26_step_4_numbers_match_by_value_in_both_modes(key: ECKey) -> None:
    as_float = covered(context={**CONTEXT, "amount": 100.0})
    assert verify(key, token_for(key), as_float).members == MEMBERS
    assert verify(key, token_for(key, inline=False), as_float).members == MEMBERS


def test_ar_26_step_4_both_forms_present_must_both_match(key: ECKey) -> None:
    wrong_hash = token_for(key, binding_hash=binding_hash(covered(action={"name": "delete"}), MEMBERS))
    invalid_binding(verify, key, wrong_hash)


def test_ar_26_step_4_a_token_without_binding_claims_is_invalid(key: ECKey) -> None:
    token = token_for(key, subject=REMOVE, resource=REMOVE, action=REMOVE, context=REMOVE)
    assert "neither" in invalid_binding(verify, key, token).detail


def test_ar_26_step_4_token_evaluation_id_must_equal_the_echo(key: ECKey) -> None:
    token = token_for(key)
    error = invalid_binding(verify, key, token, echoed=denial(token, evaluation_id="ev_other"))
    assert "evaluation_id" in error.detail
    assert verify(key, token, echoed=denial(token, evaluation_id=None)).evaluation_id == "ev_1"


def test_ar_26_step_4_single_token_does_not_cover_a_bundle(key: ECKey) -> None:
    invalid_binding(verify, key, token_for(key), bulk((RESOURCE, ACTION)))
    invalid_binding(verify, key, token_for(key, bulk((RESOURCE, ACTION))), covered())


def test_ar_26_step_4_bundle_items_must_match_in_order(key: ECKey) -> None:
    token = token_for(key, bulk((RESOURCE, ACTION), (RESOURCE_2, ACTION_2)))
    assert verify(key, token, bulk((RESOURCE, ACTION), (RESOURCE_2, ACTION_2))).members == MEMBERS
    invalid_binding(verify, key, token, bulk((RESOURCE_2, ACTION_2), (RESOURCE, ACTION)))
    invalid_binding(verify, key, token, bulk((RESOURCE, ACTION)))


def test_ar_26_step_4_malformed_member_set_is_invalid(key: ECKey) -> None:
    for members in ("amount", [1], {"amount": True}):
        invalid_binding(verify, key, token_for(key, binding_context_members=members))


def test_ar_18_without_a_member_set_only_subject_resource_action_bind(key: ECKey) -> None:
    token = token_for(key, binding_context_members=REMOVE, context=REMOVE)
    verified = verify(key, token, covered(context={"amount": 1_000_000}))
    assert verified.members is None


def test_ar_26_an_approval_state_is_not_a_binding_token(key: ECKey) -> None:
    token = sign_approval_state(claims_for(), key)
    assert "approval state" in invalid_binding(verify, key, token).detail


def test_ar_26_order_binding_faults_win_over_expiry(key: ECKey) -> None:
    token = token_for(key)
    late = NOW + timedelta(hours=1)
    invalid_binding(verify, key, token, covered(action={"name": "delete"}), now=late)
    cache = ReplayCache()
    verify(key, token, seen=cache)
    invalid_binding(verify, key, token, now=late, seen=cache)


def test_ar_26_nbf_in_the_future_is_invalid(key: ECKey) -> None:
    token = token_for(key, nbf=int((NOW + timedelta(minutes=2)).timestamp()))
    assert "nbf" in invalid_binding(verify, key, token).detail
    assert verify(key, token_for(key, nbf=int((NOW + timedelta(seconds=20)).timestamp()))).members == MEMBERS


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["soon", True, 1e300, [1]])
def test_ar_26_numeric_dates_must_be_numbers(key: ECKey, claim: str, value: Any) -> None:
    invalid_binding(verify, key, token_for(key, **{claim: value}))


def test_ar_27_deadline_is_the_earlier_of_exp_and_the_echoed_expiry(key: ECKey) -> None:
    short_exp = token_for(key, exp=int((NOW + timedelta(minutes=1)).timestamp()))
    assert verify(key, short_exp).deadline == NOW + timedelta(minutes=1)
    long_exp = token_for(key, exp=int((NOW + timedelta(hours=1)).timestamp()))
    assert verify(key, long_exp).deadline == EXPIRES


def test_ar_27_echoed_expiry_must_equal_the_protected_one(key: ECKey) -> None:
    token = token_for(key)
    error = invalid_binding(verify, key, token, echoed=denial(token, expires_at="2026-06-01T10:20:00Z"))
    assert "denial_expires_at" in error.detail
    same_instant = denial(token, expires_at="2026-06-01T12:10:00+02:00")
    assert verify(key, token, echoed=same_instant).deadline == NOW + timedelta(minutes=5)


def test_ar_27_malformed_expiries_are_invalid(key: ECKey) -> None:
    token = token_for(key)
    invalid_binding(verify, key, token, echoed=denial(token, expires_at="10 minutes"))
    invalid_binding(verify, key, token_for(key, denial_expires_at="soon"))


def test_ar_27_without_protected_expiry_exp_must_not_exceed_the_echo(key: ECKey) -> None:
    within = token_for(key, denial_expires_at=REMOVE)
    assert verify(key, within).deadline == NOW + timedelta(minutes=5)
    beyond = token_for(key, denial_expires_at=REMOVE, exp=int((EXPIRES + timedelta(seconds=1)).timestamp()))
    assert "unprovable" in invalid_binding(verify, key, beyond).detail


def test_ar_27_without_exp_and_protected_expiry_freshness_is_unprovable(key: ECKey) -> None:
    token = token_for(key, denial_expires_at=REMOVE, exp=REMOVE)
    assert "unprovable" in invalid_binding(verify, key, token).detail


def test_ar_27_protected_expiry_alone_is_enough(key: ECKey) -> None:
    assert verify(key, token_for(key, exp=REMOVE)).deadline == EXPIRES


def test_ar_27_past_deadline_is_expired_denial_410(key: ECKey) -> None:
    with pytest.raises(ExpiredDenial) as caught:
        verify(key, token_for(key), now=NOW + timedelta(minutes=6))
    assert caught.value.status == 410
    assert caught.value.type == "urn:openid:authzen:access-request:error:expired_denial"


def test_ar_14_clock_skew_tolerance_applies_to_the_deadline(key: ECKey) -> None:
    deadline = NOW + timedelta(minutes=5)
    assert verify(key, token_for(key), now=deadline + timedelta(seconds=30)).deadline == deadline
    with pytest.raises(ExpiredDenial):
        verify(key, token_for(key), now=deadline + timedelta(seconds=31))


def test_ar_26_a_denial_without_token_cannot_take_the_token_path(key: ECKey) -> None:
    invalid_binding(verify, key, "", echoed=denial(None))


# -- evaluation_id binding (§5.1) ------------------------------------------------------------


def recorded(**changes: Any) -> RecordedEvaluation:
    record = record_evaluation(
        evaluation_id="ev_1", covered=covered(), members=MEMBERS, expires_at=EXPIRES, template="owner_approval"
    )
    return msgspec.structs.replace(record, **changes)


def verify_record(record: RecordedEvaluation | None, what: Covered | None = None, now: datetime = NOW) -> VerifiedBinding:
    return verify_recorded(record, what or covered(), now=now, skew=SKEW)


def test_ar_30_record_holds_the_bound_values() -> None:
    subject = {**SUBJECT, "properties": {"dept": "finance", "act": {"sub": "agent"}}}
    record = record_evaluation(
        evaluation_id="ev_1", covered=covered(subject=subject), members=["amount", "reason"], expires_at=EXPIRES
    )
    assert record.subject == SUBJECT
    assert record.context_members == ["amount"] and record.context_values == {"amount": 100}
    assert record.expires_at == EXPIRES_TEXT and record.requestable


def test_ar_30_matching_record_verifies() -> None:
    assert verify_record(recorded()) == VerifiedBinding(evaluation_id="ev_1", members=MEMBERS, deadline=EXPIRES)


def test_ar_30_unknown_evaluation_id_is_invalid() -> None:
    assert "unknown" in invalid_binding(verify_record, None).detail


def test_ar_30_resolvable_but_not_requestable_is_not_requestable() -> None:
    with pytest.raises(NotRequestable) as caught:
        verify_record(recorded(requestable=False), covered(action={"name": "delete"}))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "submitted",
    [
        covered(subject={**SUBJECT, "id": "e-1"}),
        covered(resource=RESOURCE_2),
        covered(action=ACTION_2),
        covered(context={**CONTEXT, "channel": "api"}),
        covered(context={"amount": 100}),
        bulk((RESOURCE, ACTION)),
    ],
)
def test_ar_30_recorded_values_must_match(submitted: Covered) -> None:
    invalid_binding(verify_record, recorded(), submitted)


def test_edge_6_recorded_expiry_is_enforced_not_the_echo() -> None:
    # The PEP may echo any expires_at: the record's own is used, so there is no echo parameter.
    with pytest.raises(ExpiredDenial):
        verify_record(recorded(expires_at="2026-06-01T09:59:00Z"))
    assert verify_record(recorded(), now=EXPIRES + timedelta(seconds=30)).deadline == EXPIRES
    with pytest.raises(ExpiredDenial):
        verify_record(recorded(), now=EXPIRES + timedelta(seconds=31))


def test_ar_30_act_moved_to_client_actor_still_matches_the_record() -> None:
    agent_subject = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent-7"}}}
    record = record_evaluation(evaluation_id="ev_2", covered=covered(subject=agent_subject), members=[], expires_at=EXPIRES)
    assert verify_record(record, covered(subject={"type": "user", "id": "u1"})).evaluation_id == "ev_2"


def test_ar_30_a_record_is_single_form() -> None:
    with pytest.raises(ValueError):
        record_evaluation(evaluation_id="e", covered=bulk((RESOURCE, ACTION)), members=[], expires_at=EXPIRES)


# -- submission (§6, §8) ---------------------------------------------------------------------


def submission(**body: Any) -> Submission:
    default: dict[str, Any] = {
        "subject": SUBJECT,
        "resource": RESOURCE,
        "action": ACTION,
        "context": CONTEXT,
        "denial": {"evaluation_id": "ev_1", "expires_at": EXPIRES_TEXT},
    }
    merged = {name: value for name, value in (default | body).items() if value is not REMOVE}
    return msgspec.json.decode(json.dumps(merged).encode(), type=Submission)


ITEM_1 = {"resource": RESOURCE, "action": ACTION}
ITEM_2 = {"resource": RESOURCE_2, "action": ACTION_2}
ITEM_DENIAL = {"evaluation_id": "ev_item", "expires_at": EXPIRES_TEXT}


def bad_request(call: Callable[..., Any], *args: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        call(*args)
    assert caught.value.status == 400 and caught.value.type == "about:blank"
    return caught.value


def test_s8_1_subject_is_required() -> None:
    with pytest.raises(msgspec.ValidationError, match="subject"):
        submission(subject=REMOVE)


def test_edge_8_resource_or_action_alongside_items_is_400() -> None:
    check_shape(submission())
    bad_request(check_shape, submission(items=[ITEM_1]))
    bad_request(check_shape, submission(resource=REMOVE, items=[ITEM_1]))


def test_s8_1_empty_items_is_400() -> None:
    bad_request(check_shape, submission(resource=REMOVE, action=REMOVE, items=[]))


def test_s8_1_resource_and_action_required_without_items() -> None:
    bad_request(check_shape, submission(action=REMOVE))
    bad_request(check_shape, submission(resource=REMOVE, action=REMOVE))


def test_s8_1_items_need_resource_and_action() -> None:
    with pytest.raises(msgspec.ValidationError, match="action"):
        submission(resource=REMOVE, action=REMOVE, items=[{"resource": RESOURCE}])


def test_s8_2_denial_expiry_must_be_rfc3339() -> None:
    assert "denial.expires_at" in bad_request(check_shape, submission(denial={"evaluation_id": "e", "expires_at": "soon"})).detail
    items = [ITEM_1 | {"denial": {"evaluation_id": "e", "expires_at": "2026-06-01"}}]
    bad_request(check_shape, submission(resource=REMOVE, action=REMOVE, items=items))


def test_s8_1_item_requested_access_is_merged_over_the_top_level() -> None:
    body = submission(
        resource=REMOVE,
        action=REMOVE,
        requested_access={"requested_until": "2026-06-02T10:00:00Z", "emergency": True, "com.example.ticket": "T-1"},
        items=[ITEM_1, ITEM_2 | {"requested_access": {"requested_until": "2026-06-01T18:00:00+02:00", "x.y": 1}}],
    )
    check_shape(body)
    first, second = requested_access(body, 0), requested_access(body, 1)
    assert first.requested_until == datetime(2026, 6, 2, 10, tzinfo=UTC) and first.emergency
    assert first.extensions == {"com.example.ticket": "T-1"}
    assert second.requested_until == datetime(2026, 6, 1, 16, tzinfo=UTC) and second.emergency
    assert second.extensions == {"com.example.ticket": "T-1", "x.y": 1}
    assert requested_access(submission()).emergency is False


@pytest.mark.parametrize(
    "value", [{"requested_until": "tomorrow"}, {"requested_until": 1780000000}, {"emergency": "yes"}, {"emergency": 1}]
)
def test_s8_1_requested_access_well_known_members_are_typed(value: dict[str, Any]) -> None:
    bad_request(check_shape, submission(requested_access=value))


def test_ar_31_a_denial_without_binding_material_is_invalid() -> None:
    error = invalid_binding(coverage_plan, submission(denial={"expires_at": EXPIRES_TEXT}))
    assert "neither" in error.detail
    invalid_binding(coverage_plan, submission(denial=REMOVE))


def test_ar_32_single_submission_plan() -> None:
    body = submission()
    (only,) = coverage_plan(body)
    assert only.denial is body.denial and only.items == ()
    assert only.covered == Covered(SUBJECT, CONTEXT, (Target(RESOURCE, ACTION),))


def test_ar_32_an_item_without_denial_requires_a_top_level_bundle_denial() -> None:
    body = submission(resource=REMOVE, action=REMOVE, denial=REMOVE, items=[ITEM_1 | {"denial": ITEM_DENIAL}, ITEM_2])
    assert "top-level" in invalid_binding(coverage_plan, body).detail


def test_ar_32_a_top_level_bundle_denial_covers_every_item_in_order() -> None:
    body = submission(resource=REMOVE, action=REMOVE, items=[ITEM_1, ITEM_2])
    (plan,) = coverage_plan(body)
    assert plan.items == (0, 1) and plan.covered.bulk
    assert plan.covered.targets == (Target(RESOURCE, ACTION), Target(RESOURCE_2, ACTION_2))


def test_ar_32_items_with_their_own_denials_are_verified_singly() -> None:
    second_denial = {"binding_token": "tok", "expires_at": EXPIRES_TEXT}
    body = submission(
        resource=REMOVE, action=REMOVE, denial=REMOVE,
        items=[ITEM_1 | {"denial": ITEM_DENIAL}, ITEM_2 | {"denial": second_denial}],
    )
    plan = coverage_plan(body)
    assert [entry.items for entry in plan] == [(0,), (1,)]
    assert [entry.covered for entry in plan] == [
        Covered(SUBJECT, CONTEXT, (Target(RESOURCE, ACTION),)),
        Covered(SUBJECT, CONTEXT, (Target(RESOURCE_2, ACTION_2),)),
    ]


def test_ar_32_every_denial_present_is_verified() -> None:
    body = submission(resource=REMOVE, action=REMOVE, items=[ITEM_1 | {"denial": ITEM_DENIAL}, ITEM_2])
    plan = coverage_plan(body)
    assert [entry.items for entry in plan] == [(0, 1), (0,)]
    bad_item = submission(resource=REMOVE, action=REMOVE, items=[ITEM_1 | {"denial": {"expires_at": EXPIRES_TEXT}}])
    assert "items[0].denial" in invalid_binding(coverage_plan, bad_item).detail


def test_ar_32_bundle_token_verifies_against_the_plan(key: ECKey) -> None:
    token = token_for(key, bulk((RESOURCE, ACTION), (RESOURCE_2, ACTION_2)))
    body = submission(resource=REMOVE, action=REMOVE, denial={"binding_token": token, "expires_at": EXPIRES_TEXT},
                      items=[ITEM_1, ITEM_2])
    (plan,) = coverage_plan(body)
    assert verify(key, token, plan.covered, echoed=plan.denial).members == MEMBERS
    reordered = submission(resource=REMOVE, action=REMOVE, denial={"binding_token": token, "expires_at": EXPIRES_TEXT},
                           items=[ITEM_2, ITEM_1])
    (plan,) = coverage_plan(reordered)
    invalid_binding(verify, key, token, plan.covered, echoed=plan.denial)


def test_ar_32_a_per_item_token_does_not_cover_another_item(key: ECKey) -> None:
    token = token_for(key)  # bound to RESOURCE/ACTION
    items = [ITEM_2 | {"denial": {"binding_token": token, "expires_at": EXPIRES_TEXT}}]
    (plan,) = coverage_plan(submission(resource=REMOVE, action=REMOVE, denial=REMOVE, items=items))
    invalid_binding(verify, key, token, plan.covered, echoed=plan.denial)


def test_ar_41_actor_moved_from_subject_to_client_actor_still_binds(key: ECKey) -> None:
    agent_subject = {"type": "user", "id": "u1", "properties": {"act": {"sub": "agent-7", "iss": "https://as"}}}
    token = token_for(key, covered(subject=agent_subject))
    body = submission(
        subject={"type": "user", "id": "u1"},
        denial={"binding_token": token, "expires_at": EXPIRES_TEXT},
        client={"id": "portal", "actor": {"id": "agent-7", "issuer": "https://as", "type": "ai_agent"}},
    )
    (plan,) = coverage_plan(body)
    assert verify(key, token, plan.covered, echoed=plan.denial).members == MEMBERS
    assert body.client and body.client.actor and body.client.actor.id == "agent-7"


def test_ar_22_entity_json_keeps_original_property_values() -> None:
    body = submission(subject={"type": "u", "id": "1", "properties": {"n": 1.0, "b": True, "z": None}}, resource=RESOURCE)
    assert entity_json(body.subject) == {"type": "u", "id": "1", "properties": {"n": 1.0, "b": True, "z": None}}
    assert type(entity_json(body.subject)["properties"]["n"]) is float
    assert entity_json(Resource(type="r", id="1")) == {"type": "r", "id": "1"}
    assert entity_json(Action(name="read", properties={"x": [1]})) == {"name": "read", "properties": {"x": [1]}}


def test_ar_47_equivalent_bodies_share_a_fingerprint() -> None:
    a = json.loads('{"subject": {"type": "u", "id": "1"}, "context": {"a": 1, "b": [1, 2]}}')
    b = json.loads('{ "context": {"b": [1.0, 2], "a": 1e0},\n "subject": {"id": "1", "type": "u"} }')
    assert request_fingerprint(a) == request_fingerprint(b)
    assert len(request_fingerprint(a)) == 64


@pytest.mark.parametrize(
    "changed",
    [
        {"subject": {"type": "u", "id": "2"}, "context": {"a": 1, "b": [1, 2]}},
        {"subject": {"type": "u", "id": "1"}, "context": {"a": 1, "b": [2, 1]}},
        {"subject": {"type": "u", "id": "1"}, "context": {"a": True, "b": [1, 2]}},
        {"subject": {"type": "u", "id": "1"}, "context": {"a": 1, "b": [1, 2], "c": None}},
    ],
)
def test_edge_7_a_changed_body_has_another_fingerprint(changed: dict[str, Any]) -> None:
    original = {"subject": {"type": "u", "id": "1"}, "context": {"a": 1, "b": [1, 2]}}
    assert request_fingerprint(original) != request_fingerprint(changed)


def test_ar_47_a_body_without_canonical_form_is_400() -> None:
    bad_request(request_fingerprint, {"n": 10**400})


# -- tasks (§9-§11) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["pending"], "pending"),
        (["approved", "pending"], "pending"),
        (["approved", "escalated"], "pending"),  # custom non-terminal
        (["approved"], "approved"),
        (["denied", "denied"], "denied"),
        (["expired", "expired", "expired"], "expired"),
        (["approved", "denied"], "partial"),
        (["cancelled", "approved", "approved"], "partial"),
        (["failed", "cancelled"], "partial"),
    ],
)
def test_ar_53_bundle_aggregation(items: list[str], expected: str) -> None:
    assert aggregate_status(items) == expected


def test_ar_53_a_bundle_has_items() -> None:
    with pytest.raises(ValueError):
        aggregate_status([])


@pytest.mark.parametrize("terminal", ["approved", "denied", "expired", "cancelled", "failed"])
def test_ar_57_pending_moves_once_to_a_terminal_status(terminal: str) -> None:
    assert transition("pending", terminal) == terminal
    for later in ("approved", "denied", "expired", "cancelled", "failed"):
        with pytest.raises(InvalidTaskState) as caught:
            transition(terminal, later)
        assert caught.value.status == 409


def test_ar_57_partial_is_terminal_and_never_a_target() -> None:
    with pytest.raises(InvalidTaskState):
        transition("partial", "cancelled")
    for target in ("partial", "pending", "paused"):
        with pytest.raises(ValueError):
            transition("pending", target)


def test_ar_61_cancelling_a_pending_task() -> None:
    assert cancel(["pending"]) == ["cancelled"]
    assert aggregate_status(cancel(["pending"])) == "cancelled"


@pytest.mark.parametrize("terminal", ["approved", "denied", "expired", "cancelled", "failed", "partial"])
def test_edge_9_cancelling_a_terminal_task_is_409(terminal: str) -> None:
    with pytest.raises(InvalidTaskState) as caught:
        cancel([terminal])
    assert caught.value.status == 409
    assert caught.value.type == "urn:openid:authzen:access-request:error:invalid_task_state"


def test_ar_61_bundle_cancel_keeps_finished_items() -> None:
    statuses = cancel(["approved", "pending", "escalated"])
    assert statuses == ["approved", "cancelled", "cancelled"]
    assert aggregate_status(statuses) == "partial"
    with pytest.raises(InvalidTaskState):
        cancel(["approved", "denied"])


def approval_result(approval_id: str = "apr_1") -> Result:
    return Result(mode="reevaluate", approval=Approval(id=approval_id, approved_until="2026-06-02T10:00:00Z", state="s"))


def task(status: str, items: list[TaskItem] | None = None) -> Task:
    return Task(id="arq_1", status=status, status_endpoint="https://ars.example.net/r/arq_1", items=items)


def item(status: str, result: Result | None = None) -> TaskItem:
    return TaskItem(resource=Resource(type="report", id="r"), action=Action(name="view"), status=status, result=result)


def test_ar_58_approved_task_carries_a_reevaluate_result() -> None:
    check_task_response(TaskResponse(task=task("approved"), result=approval_result()))
    for result in (None, Result(mode="reevaluate"), Result(mode="urn:x:token", approval=approval_result().approval)):
        with pytest.raises(ValueError):
            check_task_response(TaskResponse(task=task("approved"), result=result))


def test_ar_58_approved_items_carry_their_own_result() -> None:
    good = task("partial", [item("approved", approval_result()), item("denied")])
    check_task_response(TaskResponse(task=good))
    with pytest.raises(ValueError, match=r"items\[0\]"):
        check_task_response(TaskResponse(task=task("approved", [item("approved")])))


def test_ar_54_bundle_top_level_result_and_unapproved_results_carry_no_approval() -> None:
    with pytest.raises(ValueError):
        check_task_response(TaskResponse(task=task("approved", [item("approved", approval_result())]), result=approval_result()))
    with pytest.raises(ValueError):
        check_task_response(TaskResponse(task=task("denied", [item("denied", approval_result())])))
    with pytest.raises(ValueError):
        check_task_response(TaskResponse(task=task("denied"), result=approval_result()))
    check_task_response(TaskResponse(task=task("failed"), result=Result(mode="reevaluate")))


def test_ar_53_bundle_status_must_be_the_aggregate() -> None:
    with pytest.raises(ValueError, match="AR-53"):
        check_task_response(TaskResponse(task=task("approved", [item("approved", approval_result()), item("denied")])))
    with pytest.raises(ValueError, match="bundle-only"):
        check_task_response(TaskResponse(task=task("partial")))
    with pytest.raises(ValueError, match="unknown"):
        check_task_response(TaskResponse(task=task("approved-ish")))
    check_task_response(TaskResponse(task=task("pending", [item("pending"), item("approved", approval_result())])))


def test_edge_9_status_endpoint_is_required_in_every_task() -> None:
    with pytest.raises(msgspec.ValidationError, match="status_endpoint"):
        msgspec.json.decode(b'{"task": {"id": "t", "status": "pending"}}', type=TaskResponse)


def test_ar_59_task_handle_expires_with_410() -> None:
    check_retrievable(None, NOW)
    check_retrievable("2026-06-01T10:00:01Z", NOW)
    with pytest.raises(TaskExpired) as caught:
        check_retrievable("2026-06-01T10:00:00Z", NOW)
    assert caught.value.status == 410


def test_ar_64_approval_state_absent_and_null_differ() -> None:
    absent = msgspec.json.decode(b'{"id": "a", "approved_until": "2026-06-02T10:00:00Z"}', type=Approval)
    null = msgspec.json.decode(b'{"id": "a", "approved_until": "2026-06-02T10:00:00Z", "state": null}', type=Approval)
    assert absent.state is msgspec.UNSET and null.state is None
    assert b"state" not in msgspec.json.encode(absent) and b'"state":null' in msgspec.json.encode(null)
    nested = b'{"id": "a", "approved_until": "2026-06-02T10:00:00Z", "state": {"v": [1, 1.0]}}'
    assert msgspec.json.encode(msgspec.json.decode(nested, type=Approval)).endswith(b'"state":{"v":[1,1.0]}}')


# -- approvals at re-evaluation (§12) --------------------------------------------------------

APPROVED_UNTIL = datetime(2026, 6, 2, 10, 0, tzinfo=UTC)
ARS_ISS = "https://ars.example.net"


def state_claims(what: Covered | None = None, /, **overrides: Any) -> dict[str, Any]:
    claims = approval_claims(
        issuer=ARS_ISS,
        audience=PDP,
        approval_id="apr_1",
        task_id="arq_1",
        covered=what or covered(),
        members=MEMBERS,
        approved_until=APPROVED_UNTIL,
        now=NOW,
        evaluation_id="ev_1",
        requester="pep-portal",
    )
    for name, value in overrides.items():
        if value is REMOVE:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def approval_object(key: ECKey, **overrides: Any) -> dict[str, Any]:
    """The approval object as the ARS returned it; `state=REMOVE` for a lookup-only approval."""
    value: dict[str, Any] = {
        "id": "apr_1",
        "approved_at": "2026-06-01T11:02:00Z",
        "approved_until": "2026-06-02T10:00:00Z",
        "state": sign_approval_state(state_claims(), key),
    }
    for name, member in overrides.items():
        if member is REMOVE:
            value.pop(name, None)
        else:
            value[name] = member
    return value


def record(**changes: Any) -> ApprovalRecord:
    base = ApprovalRecord(
        approval_id="apr_1",
        task_id="arq_1",
        status="approved",
        subject=SUBJECT,
        resource=RESOURCE,
        action=ACTION,
        context_members=MEMBERS,
        context_values={"amount": 100, "channel": "web"},
        approved_until="2026-06-02T10:00:00Z",
        evaluation_id="ev_1",
        requester="pep-portal",
    )
    return msgspec.structs.replace(base, **changes)


def lookup_of(*records: ApprovalRecord) -> Callable[[str], ApprovalRecord | None]:
    by_id = {entry.approval_id: entry for entry in records}
    return by_id.get


def check(
    key: ECKey,
    approval: Any,
    request: Covered | None = None,
    *,
    lookup: Callable[[str], ApprovalRecord | None] | None = None,
    now: datetime = NOW + timedelta(hours=2),
    audience: str = PDP,
    caller: str | None = None,
) -> ApplicableApproval | RejectedApproval:
    return verify_approval(
        approval, request or covered(), resolve_key=resolver(key, ARS_ISS), audience=audience, now=now,
        lookup=lookup, caller=caller,
    )


def rejected(outcome: ApplicableApproval | RejectedApproval, reason: str) -> str:
    assert isinstance(outcome, RejectedApproval), outcome
    assert outcome.reason == reason, outcome
    return outcome.detail


def test_ar_69_approval_state_is_an_es256_jws_naming_the_pdp(key: ECKey) -> None:
    state = approval_object(key)["state"]
    assert decode_segment(segments(state)[0]) == {"alg": "ES256", "kid": KID, "typ": APPROVAL_TYP}
    claims = jwt.decode(state, public(key), algorithms=["ES256"]).claims
    assert claims["iss"] == ARS_ISS and claims["aud"] == PDP
    assert claims["exp"] <= APPROVED_UNTIL.timestamp() and claims["approved_until"] == "2026-06-02T10:00:00Z"


def test_ar_70_state_conveys_scope_member_set_and_bindings() -> None:
    subject = {**SUBJECT, "properties": {"dept": "finance", "act": {"sub": "agent"}}}
    claims = state_claims(covered(subject=subject))
    assert claims["approval_id"] == "apr_1" and claims["task_id"] == "arq_1" and claims["evaluation_id"] == "ev_1"
    assert claims["subject"] == SUBJECT and claims["resource"] == RESOURCE and claims["action"] == ACTION
    assert claims["binding_context_members"] == MEMBERS and claims["context"] == {"amount": 100, "channel": "web"}
    assert claims["requester"] == "pep-portal"


def test_ar_65_an_approval_covers_one_item() -> None:
    with pytest.raises(ValueError):
        state_claims(bulk((RESOURCE, ACTION)))


def test_ar_66_a_verified_state_in_scope_applies(key: ECKey) -> None:
    outcome = check(key, approval_object(key))
    assert outcome == ApplicableApproval(approval_id="apr_1", task_id="arq_1", evaluation_id="ev_1", approved_until=APPROVED_UNTIL)


def test_ar_66_a_lookup_only_approval_is_verified_against_the_record(key: ECKey) -> None:
    outcome = check(key, approval_object(key, state=REMOVE), lookup=lookup_of(record()))
    assert isinstance(outcome, ApplicableApproval) and outcome.task_id == "arq_1"


def test_ar_66_state_and_record_both_apply_when_both_are_present(key: ECKey) -> None:
    outcome = check(key, approval_object(key), lookup=lookup_of(record(approved_until="2026-06-01T20:00:00Z")))
    assert isinstance(outcome, ApplicableApproval)
    assert outcome.approved_until == datetime(2026, 6, 1, 20, tzinfo=UTC)  # the earlier (AR-74)


def test_edge_11_a_known_id_alone_never_authorizes(key: ECKey) -> None:
    rejected(check(key, approval_object(key, state=REMOVE)), "approval_unverifiable")
    rejected(check(key, approval_object(key, state=REMOVE), lookup=lookup_of()), "approval_unverifiable")
    rejected(check(key, approval_object(key), lookup=lookup_of()), "approval_unverifiable")


def test_ar_67_id_and_state_id_must_match(key: ECKey) -> None:
    detail = rejected(check(key, approval_object(key, id="apr_2"), lookup=lookup_of(record(approval_id="apr_2"))), "approval_unverifiable")
    assert "approval.id" in detail
    swapped = sign_approval_state(state_claims(approval_id="apr_other"), key)
    rejected(check(key, approval_object(key, state=swapped)), "approval_unverifiable")


def test_ar_69_foreign_or_missing_audience_is_unverifiable(key: ECKey) -> None:
    rejected(check(key, approval_object(key), audience="https://other-pdp.example"), "approval_unverifiable")
    no_aud = sign_approval_state(state_claims(aud=REMOVE), key)
    rejected(check(key, approval_object(key, state=no_aud)), "approval_unverifiable")


def test_ar_69_issuer_is_required_and_selects_the_key(key: ECKey) -> None:
    no_iss = sign_approval_state(state_claims(iss=REMOVE), key)
    rejected(check(key, approval_object(key, state=no_iss)), "approval_unverifiable")
    other_iss = sign_approval_state(state_claims(iss="https://rogue-ars.example"), key)
    rejected(check(key, approval_object(key, state=other_iss)), "approval_unverifiable")


def test_ar_69_tampered_or_foreign_signatures_are_unverifiable(key: ECKey, other_key: ECKey) -> None:
    rejected(check(key, approval_object(other_key)), "approval_unverifiable")
    header, payload, signature = segments(approval_object(key)["state"])
    claims = decode_segment(payload) | {"resource": RESOURCE_2}
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    rejected(check(key, approval_object(key, state=forged), covered(resource=RESOURCE_2)), "approval_unverifiable")
    rejected(check(key, approval_object(key, state=compact({"alg": "none"}, state_claims()))), "approval_unverifiable")
    secret = OctKey.import_key(json.dumps(key.as_dict(private=False)).encode())
    hs = jwt.encode({"alg": "HS256", "kid": KID, "typ": APPROVAL_TYP}, state_claims(), secret, algorithms=["HS256"])
    rejected(check(key, approval_object(key, state=hs)), "approval_unverifiable")


def test_ar_69_a_binding_token_is_not_an_approval_state(key: ECKey) -> None:
    binding_typed = sign_binding_token(state_claims(), key)
    rejected(check(key, approval_object(key, state=binding_typed)), "approval_unverifiable")


@pytest.mark.parametrize("missing", ["task_id", "exp", "binding_context_members", "subject", "resource", "action"])
def test_ar_70_state_without_its_bindings_is_unverifiable(key: ECKey, missing: str) -> None:
    state = sign_approval_state(state_claims(**{missing: REMOVE}), key)
    rejected(check(key, approval_object(key, state=state)), "approval_unverifiable")


@pytest.mark.parametrize("state", [{"jws": "x"}, None, 42, ["a"]])
def test_edge_10_a_reserialised_or_dropped_state_is_unverifiable(key: ECKey, state: Any) -> None:
    rejected(check(key, approval_object(key, state=REMOVE) | {"state": state}), "approval_unverifiable")


@pytest.mark.parametrize("approval", ["apr_1", None, {"approved_until": "2026-06-02T10:00:00Z"}, {"id": 1}])
def test_ar_64_malformed_approval_objects_are_unverifiable(key: ECKey, approval: Any) -> None:
    rejected(check(key, approval, lookup=lookup_of(record())), "approval_unverifiable")


def test_ar_64_approved_until_must_be_present_and_unchanged(key: ECKey) -> None:
    rejected(check(key, approval_object(key, approved_until=REMOVE)), "approval_unverifiable")
    extended = approval_object(key, approved_until="2026-06-09T10:00:00Z")
    assert "approved_until" in rejected(check(key, extended), "approval_unverifiable")
    same_instant = approval_object(key, approved_until="2026-06-02T12:00:00+02:00")
    assert isinstance(check(key, same_instant), ApplicableApproval)


def test_ar_66_state_and_record_must_name_the_same_task(key: ECKey) -> None:
    rejected(check(key, approval_object(key), lookup=lookup_of(record(task_id="arq_other"))), "approval_unverifiable")


def test_ar_75_an_expired_approval_does_not_apply(key: ECKey) -> None:
    assert isinstance(check(key, approval_object(key), now=APPROVED_UNTIL), ApplicableApproval)
    rejected(check(key, approval_object(key), now=APPROVED_UNTIL + timedelta(seconds=1)), "approval_expired")
    late = APPROVED_UNTIL + timedelta(seconds=1)
    rejected(check(key, approval_object(key, state=REMOVE), lookup=lookup_of(record()), now=late), "approval_expired")


def test_ar_71_current_status_is_checked_at_every_reevaluation(key: ECKey) -> None:
    for changed in (record(revoked=True), record(status="cancelled"), record(status="pending")):
        rejected(check(key, approval_object(key), lookup=lookup_of(changed)), "approval_expired")
        rejected(check(key, approval_object(key, state=REMOVE), lookup=lookup_of(changed)), "approval_expired")


@pytest.mark.parametrize(
    "request_",
    [
        covered(subject={**SUBJECT, "id": "e-7"}),
        covered(subject={"type": "employee", "id": "e-1042"}),
        covered(resource={**RESOURCE, "properties": {"classification": "secret"}}),
        covered(resource=RESOURCE_2),
        covered(action=ACTION_2),
        covered(context={**CONTEXT, "amount": 5000}),
        covered(context={**CONTEXT, "amount": None}),
        covered(context={"channel": "web"}),
    ],
)
def test_ar_72_exact_match_scope(key: ECKey, request_: Covered) -> None:
    rejected(check(key, approval_object(key), request_), "out_of_scope")
    rejected(check(key, approval_object(key, state=REMOVE), request_, lookup=lookup_of(record())), "out_of_scope")


def test_ar_72_scope_ignores_act_and_unbound_context(key: ECKey) -> None:
    with_agent = {**SUBJECT, "properties": {"dept": "finance", "act": {"sub": "agent-9"}}}
    later = {**CONTEXT, "time": "2026-06-01T12:00:00Z", "approval": {"id": "apr_1"}, "amount": 100.0}
    assert isinstance(check(key, approval_object(key), covered(subject=with_agent, context=later)), ApplicableApproval)


def test_ar_66_approval_bound_to_its_requester(key: ECKey) -> None:
    rejected(check(key, approval_object(key), caller="pep-other"), "out_of_scope")
    assert isinstance(check(key, approval_object(key), caller="pep-portal"), ApplicableApproval)
    unbound = sign_approval_state(state_claims(requester=REMOVE), key)
    assert isinstance(check(key, approval_object(key, state=unbound), caller="pep-other"), ApplicableApproval)


def test_ar_65_reevaluation_is_per_item(key: ECKey) -> None:
    with pytest.raises(ValueError):
        check(key, approval_object(key), bulk((RESOURCE, ACTION)))


@pytest.mark.parametrize(
    ("reason", "fresh", "expected"),
    [
        ("approval_expired", True, "request"),
        ("approval_expired", False, "none"),
        ("out_of_scope", True, "request"),
        ("out_of_scope", False, "none"),
        ("grant_pending", False, "retry"),
        ("grant_pending", True, "retry"),
        ("policy_denied", True, "none"),
        ("approval_unverifiable", True, "none"),
        ("approval_unverifiable", False, "none"),
        ("something_new", True, "request"),
        ("something_new", False, "none"),
        (None, True, "request"),
        (None, False, "none"),
    ],
)
def test_s12_3_next_action_defaults(reason: str | None, fresh: bool, expected: str) -> None:
    assert next_action_for(reason, fresh) == expected


def test_edge_15_request_only_with_a_fresh_access_request() -> None:
    for reason in ("approval_expired", "out_of_scope", None):
        assert next_action_for(reason, has_fresh_access_request=False) != "request"


# -- callbacks (§13) -------------------------------------------------------------------------

REGISTERED = ["https://portal.example.net/ar-callback", "https://hooks.example.net/arap/"]


@pytest.mark.parametrize(
    "url", ["https://portal.example.net/ar-callback", "https://hooks.example.net/arap/task-1", "https://hooks.example.net/arap/"]
)
def test_ar_77_registered_https_endpoints_are_accepted(url: str) -> None:
    check_callback_endpoint(url, ["93.184.216.34"], registered=REGISTERED)


@pytest.mark.parametrize(
    "url",
    [
        "http://portal.example.net/ar-callback",
        "https://portal.example.net/ar-callback/other",
        "https://portal.example.net/ar-callback?x=1",
        "https://portal.example.net.evil.example/ar-callback",
        "https://hooks.example.net/arapx",
        "https://user@portal.example.net/ar-callback",
        "https://portal.example.net/ar-callback#frag",
        "https:///ar-callback",
        "portal.example.net/ar-callback",
    ],
)
def test_ar_77_unregistered_or_non_https_endpoints_are_400(url: str) -> None:
    bad_request(check_callback_uri, url, REGISTERED)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.8.8",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "100.64.0.1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.10",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::7f00:1",
    ],
)
def test_ar_77_internal_destinations_are_400(address: str) -> None:
    bad_request(check_callback_addresses, [address])


def test_ar_77_every_resolved_address_is_checked() -> None:
    bad_request(check_callback_addresses, ["93.184.216.34", "10.0.0.5"])
    bad_request(check_callback_addresses, [])
    bad_request(check_callback_addresses, ["not-an-ip"])
    check_callback_addresses(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])


def test_ar_77_explicitly_allowlisted_internal_destinations_are_accepted() -> None:
    check_callback_addresses(["10.0.0.5"], ["10.0.0.0/24"])
    check_callback_addresses(["::ffff:10.0.0.5"], ["10.0.0.0/24"])
    bad_request(check_callback_addresses, ["10.0.1.5"], ["10.0.0.0/24"])
    bad_request(check_callback_endpoint_with_networks, "https://portal.example.net/ar-callback", ["127.0.0.1"])


def check_callback_endpoint_with_networks(url: str, addresses: list[str]) -> None:
    check_callback_endpoint(url, addresses, registered=REGISTERED, allowed_networks=["10.0.0.0/8"])


SECRET = b"a-pre-shared-callback-secret-of-32b"
BODY = b'{"state":"c1x9","task":{"id":"arq_1","status":"approved","status_endpoint":"https://ars/r/arq_1"}}'


def test_ar_78_hmac_signature_round_trips() -> None:
    timestamp = int(NOW.timestamp())
    header = callback_signature(SECRET, timestamp, BODY)
    assert header.startswith(f"t={timestamp},v1=") and SIGNATURE_HEADER == "AROP-Signature"
    assert verify_callback_signature(SECRET, header, BODY, now=NOW, window=timedelta(minutes=5))
    assert verify_callback_signature(SECRET, header.replace(",", ", "), BODY, now=NOW, window=timedelta(minutes=5))


def test_ar_78_unauthenticated_or_replayed_callbacks_are_refused() -> None:
    timestamp = int(NOW.timestamp())
    header = callback_signature(SECRET, timestamp, BODY)
    window = timedelta(minutes=5)
    assert not verify_callback_signature(SECRET, header, BODY.replace(b"approved", b"denied"), now=NOW, window=window)
    assert not verify_callback_signature(b"another-secret", header, BODY, now=NOW, window=window)
    assert not verify_callback_signature(SECRET, header, BODY, now=NOW + timedelta(minutes=6), window=window)
    moved = header.replace(f"t={timestamp}", f"t={timestamp + 60}")
    assert not verify_callback_signature(SECRET, moved, BODY, now=NOW, window=window)
    for garbage in ("", "v1=abc", f"t={timestamp}", "t=-5,v1=x", "t=١٢,v1=x", "nonsense"):
        assert not verify_callback_signature(SECRET, garbage, BODY, now=NOW, window=window)


def test_ar_79_callback_body_echoes_state_top_level() -> None:
    callback = Callback(endpoint="https://portal.example.net/ar-callback", state="c1x9")
    body = callback_body(callback, task("approved"), approval_result())
    encoded = json.loads(msgspec.json.encode(body))
    assert encoded["state"] == "c1x9" and encoded["task"]["status_endpoint"] and encoded["result"]["mode"] == "reevaluate"
    bare = json.loads(msgspec.json.encode(callback_body(Callback(endpoint="https://x"), task("denied"))))
    assert bare == {"task": {"id": "arq_1", "status": "denied", "status_endpoint": "https://ars.example.net/r/arq_1"}}


def test_ar_79_events_default_to_every_terminal_status() -> None:
    everything = Callback(endpoint="https://x")
    for status in ("approved", "denied", "expired", "cancelled", "failed", "partial"):
        assert wants_event(everything, status)
    assert not wants_event(everything, "pending")
    subscribed = Callback(endpoint="https://x", events=["approved", "bogus"])
    assert wants_event(subscribed, "approved") and not wants_event(subscribed, "denied")
    assert not wants_event(subscribed, "bogus")


# -- errors (§14) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "name", "status"),
    [
        (NotRequestable, "not_requestable", 400),
        (InvalidDenialBinding, "invalid_denial_binding", 400),
        (ExpiredDenial, "expired_denial", 410),
        (DuplicateRequest, "duplicate_request", 409),
        (UnknownTask, "unknown_task", 404),
        (TaskExpired, "task_expired", 410),
        (InvalidTaskState, "invalid_task_state", 409),
    ],
)
def test_ar_83_problem_types(error: type[ARAPError], name: str, status: int) -> None:
    raised = error("what went wrong")
    body = json.loads(msgspec.json.encode(problem_body(raised)))
    assert body == {
        "type": f"urn:openid:authzen:access-request:error:{name}",
        "title": error.title,
        "status": status,
        "detail": "what went wrong",
    }


def test_ar_83_malformed_requests_are_about_blank_400() -> None:
    assert msgspec.to_builtins(problem_body(BadRequest("items must not be empty"))) == {
        "type": "about:blank", "title": "Bad Request", "status": 400, "detail": "items must not be empty",
    }
