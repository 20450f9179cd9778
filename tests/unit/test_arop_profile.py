"""Unit tests of the pure AROP sidecar rules in profiles/arop: the AS-facing types, what a request
asks for, the vocabulary, dedup keys, outcomes and DTR (no server, no store, no clock).

Each test is named after the requirement it proves: OP-n (spec/arop.md), TX-n
(oauth-transports.md), D-n (arop.md §17), D-AROP-n (docs/decisions-arop.md), `s<section>` for
rules without an id. The other tests/unit/test_arop_*.py modules import the builders below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from profiles.arop import dtr
from profiles.arop.dedup import idempotency_key, presenter, request_dedup_key, sender_of, thumbprint, txn_dedup_key
from profiles.arop.errors import DEFERRED_PATH_ONLY, OAuthFailure
from profiles.arop.model import (
    Allow,
    ApprovalObtainable,
    Confirmation,
    DecideRequest,
    DecideResponse,
    Grant,
    OAuthError,
    Pending,
    Relay,
    Remediation,
    RetryWith,
    Sender,
    relayed_body,
)
from profiles.arop.outcomes import PairDecision, choose, pending
from profiles.arop.requested import Requested, requested_of, scope_tokens
from profiles.arop.vocabulary import Pair, Vocabulary, expand, parse_vocabulary, request_context
from profiles.authzen.model import Action, Resource, Subject

NOW = datetime(2026, 7, 1, 9, 0, 0, tzinfo=UTC)
JKT = "Xq1nT0bH8hKZp3c4dE5fG6hI7jK8lM9nO0pQ1rS2tU3"
BUDGET = "https://files.corp.example/projects/atlas/budget.xlsx"
PLAN = "https://files.corp.example/projects/atlas/plan.docx"
FILE = {"type": "file_access", "actions": ["download"], "locations": [BUDGET]}
REMOVE = object()

VOCABULARY = """
identity_scopes = ["openid"]

[authorization_details.file_access]
resource_type = "File"
properties = ["project"]

[authorization_details.payment_initiation]
resource_type = "Payment"
id = "identifier"
default_action = "initiate"
properties = ["instructedAmount"]

[authorization_details.invoice_management]

[scopes."files:read"]
resource = { type = "FileStore", id = "files" }
action = "read"
"""

_BINDING_MEMBERS: dict[str, dict[str, Any]] = {
    "token": {"authorization_details": [FILE], "resource": ["https://files.corp.example"]},
    "dtr": {"authorization_details": [FILE], "resource": ["https://files.corp.example"], "completion_mode": "deferred"},
    "ciba": {
        "authorization_details": [FILE],
        "scope": "openid",
        "ciba": {"delivery_mode": "poll", "login_hint": "bob@corp.example", "binding_message": "Rotate prod-eu"},
    },
    "txn": {"transaction_challenge": "eyJ.eyJ.c2ln"},
}


def request_for(binding: str = "dtr", **members: Any) -> DecideRequest:
    """A request as the AS would post it; `member=REMOVE` drops a member."""
    body: dict[str, Any] = {
        "binding": binding,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "client": {"id": "agent-42", "auth_method": "private_key_jwt", "public": False},
        "subject": {"type": "user", "id": "bob@corp.example"},
        "sender": {"dpop_jkt": JKT},
        **_BINDING_MEMBERS[binding],
        **members,
    }
    return msgspec.convert({k: v for k, v in body.items() if v is not REMOVE}, DecideRequest)


def vocabulary() -> Vocabulary:
    parsed, problems = parse_vocabulary(VOCABULARY)
    assert problems == []
    return parsed


def refused(code: str, call: Any, *args: Any, **kwargs: Any) -> OAuthFailure:
    with pytest.raises(OAuthFailure) as caught:
        call(*args, **kwargs)
    assert caught.value.error == code
    return caught.value


def pair(origin: str = "authorization_details", index: int = 0) -> Pair:
    return Pair(Resource(type="File", id=BUDGET), Action(name="download"), origin, index)  # type: ignore[arg-type]


def decision(verdict: str, origin: str = "authorization_details", index: int = 0, reveal: bool = True) -> PairDecision:
    return PairDecision(pair(origin, index), verdict, reveal)  # type: ignore[arg-type]


RETRY: list[RetryWith] = ["completion_mode=deferred", "ciba"]


# -- the AS-facing types (model.py) --------------------------------------------------------


def test_d_arop_1_requests_refuse_unknown_members() -> None:
    body = msgspec.to_builtins(request_for())
    body["sender"] = {"jkt": JKT}
    with pytest.raises(msgspec.ValidationError, match="unknown field `jkt`"):
        msgspec.convert(body, DecideRequest)


def test_d_arop_2_sender_names_at_most_one_key() -> None:
    with pytest.raises(msgspec.ValidationError, match="one key"):
        request_for(sender={"dpop_jkt": JKT, "x5t_s256": "x5t"})
    assert request_for(sender={}).sender.dpop_jkt is None


@pytest.mark.parametrize(
    ("binding", "completion_mode"), [("token", "deferred"), ("token", "revisable deferred"), ("dtr", REMOVE), ("dtr", "revisable")]
)
def test_op_17_dtr_binding_exactly_when_completion_mode_says_deferred(binding: str, completion_mode: Any) -> None:
    with pytest.raises(msgspec.ValidationError, match="completion_mode"):
        request_for(binding, completion_mode=completion_mode)


@pytest.mark.parametrize(
    ("binding", "members", "message"),
    [
        ("ciba", {"ciba": REMOVE}, "ciba"),
        ("dtr", {"ciba": {"delivery_mode": "poll", "login_hint": "bob"}}, "ciba"),
        ("ciba", {"completion_mode": "deferred"}, "completion_mode"),
        ("txn", {"transaction_challenge": REMOVE}, "transaction_challenge"),
        ("token", {"transaction_challenge": "eyJ.eyJ.c2ln"}, "transaction_challenge"),
    ],
)
def test_op_9_binding_members_only_where_their_binding_is(binding: str, members: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        request_for(binding, **members)


@pytest.mark.parametrize("members", [{"authorization_details": [FILE]}, {"scope": "files:read"}, {"resource": ["https://x"]}])
def test_tx_42_txn_request_carries_no_unprotected_operation(members: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError, match="comes from the challenge"):
        request_for("txn", **members)


def test_tx_42_txn_operation_only_from_the_verified_challenge() -> None:
    with pytest.raises(ValueError, match="verified challenge"):
        requested_of(request_for("txn"))


@pytest.mark.parametrize("description", ['say "no"', "back\\slash", "caf\u00e9", "line\nbreak"])
def test_tx_4_error_description_is_printable_ascii_without_quote_or_backslash(description: str) -> None:
    with pytest.raises(ValueError, match="RFC 6749"):
        OAuthError(status=400, error="invalid_request", error_description=description)


def test_tx_4_error_outcomes_relay_status_and_the_other_members() -> None:
    error = OAuthError(status=400, error="authorization_pending", interval=35)
    assert relayed_body(error) == {"error": "authorization_pending", "interval": 35}
    remediation = choose(request_for("token"), [decision("requestable")], retry_with=RETRY)
    assert isinstance(remediation, Remediation)
    assert relayed_body(remediation) == {
        "error": "invalid_authorization_details",
        "approval_obtainable": {"retry_with": RETRY},
    }


def test_design_3_decide_responses_are_tagged_by_outcome() -> None:
    grant = Grant(
        subject=Subject(type="user", id="bob"),
        audience=["https://files.corp.example"],
        expires_at="2026-07-01T09:20:00Z",
        expires_in=460,
        refresh_allowed=False,
        cnf=Confirmation(x5t_s256="x5t"),
    )
    responses: list[Any] = [
        Allow(grant=grant),
        OAuthError(status=400, error="invalid_scope"),
        Pending(handle="h", expires_in=600, interval=5, response=Relay(status=200, body={"auth_req_id": "h"})),
    ]
    for response in responses:
        wire = msgspec.json.encode(response)
        assert msgspec.json.decode(wire, type=DecideResponse) == response
    assert msgspec.to_builtins(responses[0])["grant"]["cnf"] == {"x5t#S256": "x5t"}
    assert [msgspec.to_builtins(r)["outcome"] for r in responses] == ["allow", "error", "pending"]


@pytest.mark.parametrize("members", [{}, {"jkt": "a", "x5t_s256": "b"}])
def test_op_63_cnf_names_exactly_one_key(members: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one key"):
        Confirmation(**members)


# -- what the client asked for (requested.py) ----------------------------------------------


def test_rfc6749_3_3_scope_is_a_set_of_tokens_in_order() -> None:
    assert scope_tokens("openid files:read openid") == ("openid", "files:read")
    assert scope_tokens(None) == ()


@pytest.mark.parametrize("scope", ["", " openid", "openid ", "a  b", 'quo"te', "back\\slash", "caf\u00e9", "tab\tx"])
def test_rfc6749_3_3_malformed_scope_is_invalid_scope(scope: str) -> None:
    refused("invalid_scope", scope_tokens, scope)


def test_s10_requested_is_the_request_own_parameters() -> None:
    requested = requested_of(request_for("dtr", scope="files:read", resource=["https://a", "https://b"]))
    assert requested == Requested(authorization_details=(FILE,), scope=("files:read",), resource=("https://a", "https://b"))


# -- vocabulary (OP-40, §10) ---------------------------------------------------------------


def test_op_40_each_action_times_each_location_is_one_pair() -> None:
    element = {"type": "file_access", "actions": ["download", "read"], "locations": [BUDGET, PLAN]}
    pairs = expand(Requested(authorization_details=({"type": "invoice_management", "actions": ["void"], "locations": ["i"]}, element)), vocabulary())
    assert [(p.resource.id, p.action.name, p.index) for p in pairs[1:]] == [
        (BUDGET, "download", 1),
        (PLAN, "download", 1),
        (BUDGET, "read", 1),
        (PLAN, "read", 1),
    ]
    assert {p.origin for p in pairs} == {"authorization_details"}
    assert pairs[1].resource == Resource(type="File", id=BUDGET, properties={"location": BUDGET})


def test_op_40_resource_type_defaults_to_the_rar_type() -> None:
    element = {"type": "invoice_management", "actions": ["void"], "locations": ["https://billing/inv-2231"]}
    (only,) = expand(Requested(authorization_details=(element,)), vocabulary())
    assert only.resource.type == "invoice_management"


def test_op_40_identifier_types_take_the_id_from_identifier_and_default_action() -> None:
    element = {"type": "payment_initiation", "identifier": "pay-1", "instructedAmount": {"currency": "EUR", "amount": "12.00"}}
    (only,) = expand(Requested(authorization_details=(element,)), vocabulary())
    assert only.action == Action(name="initiate")
    assert only.resource == Resource(type="Payment", id="pay-1", properties={"instructedAmount": element["instructedAmount"]})
    with_locations = {**element, "locations": ["https://bank/a", "https://bank/b"]}
    pairs = expand(Requested(authorization_details=(with_locations,)), vocabulary())
    assert [(p.resource.id, (p.resource.properties or {})["location"]) for p in pairs] == [
        ("pay-1", "https://bank/a"),
        ("pay-1", "https://bank/b"),
    ]


def test_op_40_declared_and_common_members_become_resource_properties() -> None:
    element = {**FILE, "project": "atlas", "datatypes": ["budget"], "privileges": ["owner"]}
    (only,) = expand(Requested(authorization_details=(element,)), vocabulary())
    assert only.resource.properties == {"project": "atlas", "datatypes": ["budget"], "privileges": ["owner"], "location": BUDGET}


def test_op_40_scope_tokens_map_through_the_table_identity_scopes_are_not_evaluated() -> None:
    pairs = expand(Requested(scope=("openid", "files:read")), vocabulary())
    assert pairs == [Pair(Resource(type="FileStore", id="files"), Action(name="read"), "scope", 1)]


@pytest.mark.parametrize(
    "element",
    [
        "file_access",
        {"actions": ["download"], "locations": [BUDGET]},
        {"type": 7},
        {"type": "unknown_type", "actions": ["x"], "locations": ["y"]},
        {"type": "file_access", "locations": [BUDGET]},
        {"type": "file_access", "actions": [], "locations": [BUDGET]},
        {"type": "file_access", "actions": ["download", 3], "locations": [BUDGET]},
        {"type": "file_access", "actions": ["download"]},
        {"type": "file_access", "actions": ["download"], "locations": []},
        {"type": "file_access", "actions": ["download"], "locations": [BUDGET], "datatypes": "budget"},
        {"type": "payment_initiation"},
        {"type": "payment_initiation", "identifier": ""},
    ],
)
def test_tx_65_unknown_or_malformed_details_are_invalid_authorization_details(element: Any) -> None:
    refused("invalid_authorization_details", expand, Requested(authorization_details=(element,)), vocabulary())


def test_d_arop_7_a_member_the_type_does_not_declare_is_refused() -> None:
    element = {**FILE, "max_amount": 10}
    refused("invalid_authorization_details", expand, Requested(authorization_details=(element,)), vocabulary())


TRADE = """
[authorization_details.trade]
resource_type = "Portfolio"
id = "identifier"
context = ["amount"]
"""


def _trade(identifier: str = "alice-main", amount: int = 5000, action: str = "buy") -> dict[str, Any]:
    return {"type": "trade", "identifier": identifier, "actions": [action], "amount": amount}


def test_op_40_context_members_go_to_the_evaluation_context_not_the_resource() -> None:
    parsed, problems = parse_vocabulary(TRADE)
    requested = Requested(authorization_details=(_trade(),))
    [pair] = expand(requested, parsed)
    assert problems == [] and pair.resource == Resource(type="Portfolio", id="alice-main")
    assert request_context(requested, parsed) == {"amount": 5000}


def test_op_38_elements_share_one_context_and_must_agree_on_it() -> None:
    parsed, _ = parse_vocabulary(TRADE)
    agreeing = Requested(authorization_details=(_trade(), _trade("bob-main", 5000.0)))  # type: ignore[arg-type]
    assert request_context(agreeing, parsed) == {"amount": 5000}
    assert request_context(Requested(authorization_details=({"type": "trade", "identifier": "x", "actions": ["buy"]},)), parsed) == {}
    refused("invalid_authorization_details", request_context, Requested(authorization_details=(_trade(), _trade(amount=7))), parsed)


def test_op_40_unknown_scope_is_invalid_scope() -> None:
    refused("invalid_scope", expand, Requested(scope=("files:write",)), vocabulary())


@pytest.mark.parametrize("requested", [Requested(), Requested(scope=("openid",))])
def test_rfc6749_3_3_nothing_to_authorize_is_invalid_scope(requested: Requested) -> None:
    refused("invalid_scope", expand, requested, vocabulary())


def test_op_40_default_vocabulary_is_empty_with_openid_as_identity_scope() -> None:
    parsed, problems = parse_vocabulary("")
    assert problems == [] and parsed.identity_scopes == frozenset({"openid"}) and parsed.scopes == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[authorization_details.file_access]\nresource = 'File'", "authorization_details.file_access: Object contains unknown field `resource`"),
        ("[authorization_details.file_access]\nid = 'path'", "authorization_details.file_access.id:"),
        ("[authorization_details.file_access]\nresource_type = ''", "authorization_details.file_access.resource_type:"),
        ("[authorization_details.file_access]\nproperties = ['locations']", "authorization_details.file_access.properties: 'locations' is mapped"),
        ("[authorization_details.file_access]\nproperties = ['a', 'a']", "names a member twice"),
        ("[authorization_details.file_access]\ncontext = ['actions']", "authorization_details.file_access.context: 'actions' is mapped"),
        ("[authorization_details.file_access]\ncontext = ['client_id']", "authorization_details.file_access.context: 'client_id' is set by the sidecar"),
        ("[authorization_details.file_access]\nproperties = ['a']\ncontext = ['a']", "'a' is also a property"),
        ("[authorization_details.file_access]\ncontext = ['a', 'a']", "context: names a member twice"),
        ("[scopes.'files:read']\naction = 'read'", "scopes.files:read: Object missing required field `resource`"),
        ("[scopes.'files read']\nresource = {type='a', id='b'}\naction = 'read'", "scopes.'files read': not an RFC 6749 scope token"),
        ("identity_scopes = ['openid']\n[scopes.openid]\nresource = {type='a', id='b'}\naction = 'r'", "also an identity scope"),
        ("identity_scopes = 'openid'", "identity_scopes: must be an array"),
        ("identity_scopes = ['a b']", "identity_scopes: 'a b' is not an RFC 6749 scope token"),
        ("scope = 1", "scope: unknown key"),
        ("authorization_details = 1", "authorization_details: must be a table"),
        ("[broken", "oauth.toml:"),
    ],
)
def test_op_40_oauth_toml_problems_name_their_keys(text: str, problem: str) -> None:
    _, problems = parse_vocabulary(text)
    assert any(found.startswith(problem) or problem in found for found in problems), problems


# -- dedup (§6, OP-20, OP-60) --------------------------------------------------------------


def _key(request: DecideRequest, authority: str = "as-1") -> str:
    return request_dedup_key(request, requested_of(request), authority=authority)


def test_op_20_the_same_request_has_the_same_key_in_any_order() -> None:
    other = {"type": "file_access", "actions": ["read"], "locations": [PLAN]}
    first = request_for(authorization_details=[FILE, other], scope="files:read openid", resource=["https://b", "https://a"])
    reordered = {"locations": [BUDGET], "type": "file_access", "actions": ["download"]}
    second = request_for(authorization_details=[other, reordered], scope="openid files:read", resource=["https://a", "https://b", "https://a"])
    assert _key(first) == _key(second)
    assert len(_key(first)) == 64 and int(_key(first), 16) >= 0


@pytest.mark.parametrize(
    "members",
    [
        {"client": {"id": "agent-43", "auth_method": "private_key_jwt", "public": False}},
        {"sender": {"dpop_jkt": "other-key"}},
        {"sender": {}},
        {"subject": {"type": "user", "id": "carol@corp.example"}},
        {"subject": {"type": "agent", "id": "bob@corp.example"}},
        {"actor": {"sub": "agent-7"}},
        {"authorization_details": [{**FILE, "actions": ["read"]}]},
        {"authorization_details": [FILE, FILE]},
        {"scope": "files:read"},
        {"resource": ["https://other.corp.example"]},
    ],
)
def test_op_20_every_part_of_the_intent_changes_the_key(members: dict[str, Any]) -> None:
    assert _key(request_for(**members)) != _key(request_for())


def test_op_20_subject_properties_are_not_the_principal() -> None:
    assert _key(request_for(subject={"type": "user", "id": "bob@corp.example", "properties": {"dept": "x"}})) == _key(request_for())


def test_d_6_the_binding_and_the_key_kind_are_part_of_the_key() -> None:
    assert _key(request_for("token")) != _key(request_for("dtr"))
    assert _key(request_for(sender={"dpop_jkt": "same"})) != _key(request_for(sender={"x5t_s256": "same"}))


@pytest.mark.parametrize("sender", [Sender(dpop_jkt=JKT), Sender(x5t_s256=JKT), Sender()])
def test_op_62_the_recorded_thumbprint_names_the_same_key_again(sender: Sender) -> None:
    assert sender_of(thumbprint(sender) or None) == sender
    with pytest.raises(ValueError):
        sender_of("sha1:" + JKT)


def test_d_arop_29_another_as_is_another_request() -> None:
    assert _key(request_for()) != _key(request_for(), authority="as-2")


def test_op_60_tx_43_the_presenter_is_the_as_client_method_and_key() -> None:
    one = presenter(request_for(), authority="as-1")
    assert one == presenter(request_for(), authority="as-1")
    assert one != presenter(request_for(), authority="as-2")
    assert one != presenter(request_for(sender={"dpop_jkt": "another-key"}), authority="as-1")
    assert one != presenter(request_for(client={"id": "agent-42", "auth_method": "client_secret_basic", "public": False}), authority="as-1")


def test_op_60_txn_key_is_presenter_issuer_and_txn_with_unambiguous_framing() -> None:
    key = txn_dedup_key("agent-42", "https://billing.corp.example", "b9f2")
    assert key == txn_dedup_key("agent-42", "https://billing.corp.example", "b9f2")
    assert key != txn_dedup_key("agent-43", "https://billing.corp.example", "b9f2")
    assert txn_dedup_key("a", "bc", "d") != txn_dedup_key("ab", "c", "d")
    assert _key(request_for(scope="ab", authorization_details=REMOVE)) != _key(request_for(scope="a b", authorization_details=REMOVE))


def test_s6_details_without_a_canonical_form_are_invalid_authorization_details() -> None:
    request = request_for(authorization_details=[{**FILE, "amount": 10**400}])
    refused("invalid_authorization_details", request_dedup_key, request, requested_of(request), authority="as-1")


def test_s6_idempotency_key_is_fresh_after_each_terminal_handle() -> None:
    key = _key(request_for())
    assert idempotency_key(key, 0) == idempotency_key(key, 0)
    assert len({idempotency_key(key, n) for n in range(3)}) == 3


# -- outcomes (§5, OP-13..OP-18, OP-38, D-1..D-4) ------------------------------------------


@pytest.mark.parametrize(
    ("decisions", "code"),
    [
        ([decision("deny")], "invalid_authorization_details"),
        ([decision("deny", "scope")], "invalid_scope"),
        ([decision("allow"), decision("deny", "scope", 0), decision("deny", "authorization_details", 1)], "invalid_scope"),
        ([decision("requestable"), decision("deny", "authorization_details", 1)], "invalid_authorization_details"),
    ],
)
@pytest.mark.parametrize("binding", ["token", "dtr", "ciba", "txn"])
def test_op_14_a_non_requestable_pair_refuses_with_the_first_one_origin(binding: str, decisions: list[PairDecision], code: str) -> None:
    """D-3/D-4: the same origin codes answer at the CIBA and txn endpoints' initial requests."""
    assert choose(request_for(binding), decisions, retry_with=RETRY) == OAuthError(status=400, error=code)


@pytest.mark.parametrize("binding", ["token", "dtr", "ciba", "txn"])
@pytest.mark.parametrize("verdicts", [["deny"], ["requestable"], ["allow", "requestable"], ["requestable", "deny"]])
@pytest.mark.parametrize("reveal", [True, False])
def test_op_15_deferred_path_codes_are_never_a_synchronous_answer(binding: str, verdicts: list[str], reveal: bool) -> None:
    choice = choose(request_for(binding), [decision(v, reveal=reveal) for v in verdicts], retry_with=RETRY)
    if isinstance(choice, (OAuthError, Remediation)):
        assert choice.error not in DEFERRED_PATH_ONLY


def test_s5_everything_allowed_is_allow() -> None:
    assert choose(request_for("dtr"), [decision("allow"), decision("allow", "scope")], retry_with=RETRY) == "allow"


@pytest.mark.parametrize("binding", ["dtr", "ciba", "txn"])
def test_op_38_one_requestable_pair_defers_the_whole_request(binding: str) -> None:
    assert choose(request_for(binding), [decision("allow"), decision("requestable", index=1)], retry_with=RETRY) == "defer"


def test_op_17_without_opt_in_a_requestable_denial_is_never_deferred() -> None:
    choice = choose(request_for("token"), [decision("allow"), decision("requestable", "scope")], retry_with=RETRY)
    assert isinstance(choice, Remediation) and choice.error == "invalid_scope"
    with pytest.raises(ValueError, match="OP-17"):
        pending("token", handle="h", expires_in=60, interval=5)


def test_design_5_remediation_tells_which_transports_to_retry_with() -> None:
    choice = choose(request_for("token"), [decision("requestable")], retry_with=["ciba"])
    assert choice == Remediation(
        status=400, error="invalid_authorization_details", approval_obtainable=ApprovalObtainable(retry_with=["ciba"])
    )


@pytest.mark.parametrize(
    ("decisions", "retry_with"),
    [
        ([decision("requestable", reveal=False)], RETRY),
        ([decision("requestable"), decision("requestable", index=1, reveal=False)], RETRY),
        ([decision("requestable")], []),
    ],
)
def test_op_73_remediation_is_withheld_when_a_workflow_hides_it_or_no_transport_exists(
    decisions: list[PairDecision], retry_with: list[Any]
) -> None:
    """D-1's default, per workflow `reveal_to_clients` (DESIGN §5) or with no enabled transport."""
    assert choose(request_for("token"), decisions, retry_with=retry_with) == OAuthError(status=400, error="invalid_authorization_details")


@pytest.mark.parametrize("sender", [{}, {"x5t_s256": "x5t"}])
@pytest.mark.parametrize("binding", ["dtr", "txn"])
def test_d_2_a_public_client_defers_only_with_dpop(binding: str, sender: dict[str, str]) -> None:
    public = {"id": "agent-42", "auth_method": "none", "public": True}
    choice = choose(request_for(binding, client=public, sender=sender), [decision("requestable")], retry_with=RETRY)
    assert choice == OAuthError(status=400, error="invalid_request", error_description="DPoP required for deferred completion")
    assert choose(request_for(binding, client=public), [decision("requestable")], retry_with=RETRY) == "defer"
    assert choose(request_for(binding, sender=sender), [decision("requestable")], retry_with=RETRY) == "defer"


def test_op_8_at_the_txn_endpoint_the_as_allow_does_not_lift_the_rs_challenge() -> None:
    assert choose(request_for("txn"), [decision("allow")], retry_with=RETRY) == "defer"


def test_s5_a_request_without_pairs_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        choose(request_for(), [], retry_with=RETRY)


def test_tx_9_dtr_pending_answer_is_a_400_authorization_pending_with_the_code() -> None:
    answer = pending("dtr", handle="wq3N9pK2", expires_in=3600, interval=30)
    assert answer.response == Relay(
        status=400,
        body={"error": "authorization_pending", "deferral_code": "wq3N9pK2", "expires_in": 3600, "interval": 30},
    )
    assert (answer.handle, answer.expires_in, answer.interval) == ("wq3N9pK2", 3600, 30)


@pytest.mark.parametrize(("mode", "body"), [("poll", {"interval": 5}), ("ping", {"interval": 5}), ("push", {})])
def test_tx_21_ciba_pending_answer_is_a_200_interval_only_for_polling_modes(mode: str, body: dict[str, int]) -> None:
    answer = pending("ciba", handle="Zt8p", expires_in=600, interval=5, delivery_mode=mode)  # type: ignore[arg-type]
    assert answer.response == Relay(status=200, body={"auth_req_id": "Zt8p", "expires_in": 600, **body})
    with pytest.raises(ValueError, match="delivery mode"):
        pending("ciba", handle="Zt8p", expires_in=600, interval=5)


def test_tx_38_txn_pending_answer_is_a_200_accepted_for_processing() -> None:
    answer = pending("txn", handle="tai_Lr6", expires_in=300, interval=5)
    assert answer.response == Relay(status=200, body={"transaction_authorization_id": "tai_Lr6", "expires_in": 300, "interval": 5})


# -- DTR (dtr.py) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "opted_in"),
    [("deferred", True), ("revisable deferred", True), ("deferred  revisable", True), (None, False), ("", False), ("revisable", False), ("Deferred", False), ("deferred,revisable", False)],
)
def test_tx_6_completion_mode_is_a_space_delimited_list_containing_deferred(value: str | None, opted_in: bool) -> None:
    assert dtr.opted_in(value) is opted_in


def test_tx_12_tx_19_dtr_grant_type_and_revocation_hint() -> None:
    assert dtr.GRANT_TYPE == "urn:ietf:params:oauth:grant-type:deferred"
    assert dtr.DEFERRAL_CODE_HINT == "urn:ietf:params:oauth:token-type:deferral-code"
