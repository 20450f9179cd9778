"""Contract tests of Access Request submission over real HTTP (spec/arap.md §2, §3, §5, §6, §8,
§9, §14, §17): every ARS-side MUST of a submission, on SQLite and on PostgreSQL.

Denials come from the server's own PDP; where a test needs binding material the PDP never
issues (a foreign `aud`, no protected expiry, a bulk token), it signs a token with the server's
key, read from its store, as a PDP sharing that key would. The pure rules behind these answers
are unit-tested in tests/unit/test_arap_profile.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from profiles.arap.binding import sign_binding_token
from profiles.arap.model import format_instant
from tests.arap.conftest import Flow, assert_problem

DEPLOY = {"name": "deploy"}


def target(service: str, subject: str = "dave", env: str = "prod", **context: Any) -> dict[str, Any]:
    """The Subject, Resource, Action and Context of a deploy (what a PEP evaluates and submits)."""
    return {
        "subject": {"type": "User", "id": subject},
        "resource": {"type": "Service", "id": service},
        "action": DEPLOY,
        "context": {"env": env, **context},
    }


def signed(flow: Flow, request: dict[str, Any], *, echo: str | None = None, **changes: Any) -> dict[str, Any]:
    """A submission of `request` whose denial carries a binding_token signed with the server's
    key: the claims the PDP issues (inline binding of `request`, `env` bound) with `changes`
    applied (None removes a claim); `echo` is the echoed `denial.expires_at`."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": flow.base_url,
        "aud": f"{flow.base_url}/access/v1/requests",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": secrets.token_urlsafe(16),
        "denial_expires_at": format_instant(now.replace(microsecond=0) + timedelta(minutes=10)),
        "binding_context_members": ["env"],
        "subject": request["subject"],
        "context": {"env": request["context"]["env"]},
    }
    if "items" in request:
        claims["items"] = [{"resource": i["resource"], "action": i["action"]} for i in request["items"]]
    else:
        claims |= {"resource": request["resource"], "action": request["action"]}
    claims |= changes
    token = sign_binding_token({k: v for k, v in claims.items() if v is not None}, flow.signing_key())
    expires_at = echo or claims.get("denial_expires_at") or format_instant(now + timedelta(minutes=10))
    return {**request, "denial": {"binding_token": token, "expires_at": expires_at}}


def by_evaluation_id(flow: Flow, evaluated: dict[str, Any], **denial: Any) -> dict[str, Any]:
    """The submission with the evaluation_id binding only (§5.1: no binding_token)."""
    body = flow.submission(evaluated)
    body["denial"].pop("binding_token")
    body["denial"].update(denial)
    return body


def accepted(response: Any) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.text
    return response.json()["task"]  # type: ignore[no-any-return]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# -- AR-14, AR-27, AR-30: freshness -----------------------------------------------------------


def test_ar_14_a_late_submission_within_the_clock_skew_is_accepted_after_it_refused(short_flow: Flow) -> None:
    """hint_ttl = 1 s, clock_skew = 2 s: 1.5 s after the denial (past its expiry) is within the
    tolerance, 3.4 s is not; on the binding_token path and on the evaluation_id path alike."""
    flow = short_flow
    early = [flow.evaluate("dave") for _ in range(2)]
    late = [flow.evaluate("dave") for _ in range(2)]
    evaluated_at = time.monotonic()

    sleep_until(evaluated_at + 1.5)
    accepted(flow.submit(flow.submission(early[0])))
    accepted(flow.submit(by_evaluation_id(flow, early[1])))

    sleep_until(evaluated_at + 3.4)
    assert_problem(flow.submit(flow.submission(late[0])), 410, "expired_denial")
    assert_problem(flow.submit(by_evaluation_id(flow, late[1])), 410, "expired_denial")


def test_ar_14_without_skew_tolerance_a_submission_after_expiry_is_refused(strict_flow: Flow) -> None:
    """hint_ttl = 1 s, clock_skew = 0: 1.3 s later the denial has expired on both paths (410,
    not a binding fault: the evaluation's record is still there to say so)."""
    flow = strict_flow
    evaluated = [flow.evaluate("dave") for _ in range(2)]
    sleep_until(time.monotonic() + 1.3)
    assert_problem(flow.submit(flow.submission(evaluated[0])), 410, "expired_denial")
    assert_problem(flow.submit(by_evaluation_id(flow, evaluated[1])), 410, "expired_denial")


def test_ar_27_the_deadline_is_the_earlier_of_exp_and_the_denial_expiry(flow: Flow) -> None:
    """Beyond the 30 s default skew: an `exp` in the past expires the denial although its
    protected expiry is ahead, and a protected expiry in the past although `exp` is ahead."""
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    stale_exp = signed(flow, target("billing"), exp=int(past.timestamp()))
    assert_problem(flow.submit(stale_exp), 410, "expired_denial")
    stale_denial = signed(flow, target("billing"), denial_expires_at=format_instant(past))
    assert_problem(flow.submit(stale_denial), 410, "expired_denial")


def test_ar_27_a_binding_fault_outranks_expiry(flow: Flow) -> None:
    """§19 item 6: a token that is both late and for something else is a binding fault (400)."""
    past = datetime.now(UTC) - timedelta(minutes=2)
    body = signed(flow, target("billing"), exp=int(past.timestamp()))
    body["resource"] = {"type": "Service", "id": "payroll"}
    assert_problem(flow.submit(body), 400, "invalid_denial_binding")


def test_ar_27_the_echoed_expiry_must_be_the_protected_expiry(flow: Flow) -> None:
    body = flow.submission(flow.evaluate("dave"))
    protected = datetime.fromisoformat(body["denial"]["expires_at"])
    body["denial"]["expires_at"] = format_instant(protected + timedelta(seconds=1))
    assert_problem(flow.submit(body), 400, "invalid_denial_binding")

    # The same instant in another notation is the same expiry (compared as instants).
    body = flow.submission(flow.evaluate("dave"))
    protected = datetime.fromisoformat(body["denial"]["expires_at"])
    body["denial"]["expires_at"] = protected.astimezone(timezone(timedelta(hours=2))).isoformat()
    accepted(flow.submit(body))


def test_ar_27_without_a_protected_expiry_exp_must_not_outlast_the_echo(flow: Flow) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    echo = format_instant(now + timedelta(minutes=2))
    unprovable = signed(flow, target("billing"), echo=echo, denial_expires_at=None, exp=int((now + timedelta(minutes=5)).timestamp()))
    assert_problem(flow.submit(unprovable), 400, "invalid_denial_binding")
    provable = signed(flow, target("billing"), echo=echo, denial_expires_at=None, exp=int((now + timedelta(minutes=1)).timestamp()))
    accepted(flow.submit(provable))


def test_ar_30_unknown_or_mismatching_evaluation_id_is_invalid_denial_binding(flow: Flow) -> None:
    evaluated = flow.evaluate("dave", "billing")
    unknown = by_evaluation_id(flow, evaluated, evaluation_id="ev_" + secrets.token_urlsafe(16))
    assert_problem(flow.submit(unknown), 400, "invalid_denial_binding")
    other_resource = {**by_evaluation_id(flow, evaluated), "resource": {"type": "Service", "id": "payroll"}}
    assert_problem(flow.submit(other_resource), 400, "invalid_denial_binding")
    other_subject = {**by_evaluation_id(flow, evaluated), "subject": {"type": "User", "id": "bob"}}
    assert_problem(flow.submit(other_subject), 400, "invalid_denial_binding")
    accepted(flow.submit(by_evaluation_id(flow, evaluated)))


def test_ar_30_freshness_uses_the_recorded_expiry_not_the_echoed_one(flow: Flow, strict_flow: Flow) -> None:
    # An echo long past does not expire a recorded evaluation that is still fresh…
    echo_in_the_past = by_evaluation_id(flow, flow.evaluate("dave"), expires_at="2001-01-01T00:00:00Z")
    accepted(flow.submit(echo_in_the_past))
    # …and an echo far ahead does not revive one whose recorded expiry passed (1 s, no skew).
    evaluated = strict_flow.evaluate("dave")
    time.sleep(1.3)
    far_ahead = format_instant(datetime.now(UTC) + timedelta(days=1))
    assert_problem(strict_flow.submit(by_evaluation_id(strict_flow, evaluated, expires_at=far_ahead)), 410, "expired_denial")


# -- AR-18, AR-24..AR-26: binding ------------------------------------------------------------


def test_ar_18_the_context_binds_exactly_the_member_set(flow: Flow) -> None:
    """The bundle's policies read `context.env` only: the set is {env}. Another `env` (still
    requestable) fails on both binding paths; an added `ticket` is no authorization input."""
    for binding in ("token", "evaluation_id"):
        evaluated = flow.evaluate("dave", env="preprod")
        body = flow.submission(evaluated) if binding == "token" else by_evaluation_id(flow, evaluated)
        assert_problem(flow.submit({**body, "context": {"env": "prod"}}), 400, "invalid_denial_binding")

        evaluated = flow.evaluate("dave", env="preprod")
        body = flow.submission(evaluated) if binding == "token" else by_evaluation_id(flow, evaluated)
        accepted(flow.submit({**body, "context": {"env": "preprod", "ticket": "CHG-18"}}))


def test_ar_18_no_member_set_means_the_context_does_not_bind(flow: Flow) -> None:
    body = signed(flow, target("billing"), binding_context_members=None, context=None)
    accepted(flow.submit({**body, "context": {"env": "preprod", "ticket": "CHG-18b"}}))


def test_ar_24_a_compact_jws_binding_token_signed_by_the_pdp_is_verified(flow: Flow) -> None:
    from joserfc.jwk import ECKey

    accepted(flow.submit(signed(flow, target("billing"))))
    body = signed(flow, target("billing"))
    impostor = ECKey.generate_key("P-256", parameters={"kid": flow.signing_key().kid}, private=True)
    claims = json.loads(_payload(body["denial"]["binding_token"]))
    body["denial"]["binding_token"] = sign_binding_token(claims, impostor)
    assert_problem(flow.submit(body), 400, "invalid_denial_binding")


def _payload(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[1] + "==")


def test_ar_26_aud_must_name_this_ars(flow: Flow) -> None:
    ours = f"{flow.base_url}/access/v1/requests"
    assert_problem(flow.submit(signed(flow, target("billing"), aud=None)), 400, "invalid_denial_binding")
    assert_problem(flow.submit(signed(flow, target("billing"), aud="https://ars.example.net/requests")), 400, "invalid_denial_binding")
    assert_problem(flow.submit(signed(flow, target("billing"), aud=["https://ars.example.net/requests"])), 400, "invalid_denial_binding")
    accepted(flow.submit(signed(flow, target("billing"), aud=["https://ars.example.net/requests", ours])))


def test_ar_26_the_key_must_be_trusted_for_the_issuer(flow: Flow) -> None:
    assert_problem(flow.submit(signed(flow, target("billing"), iss="https://pdp.example.net")), 400, "invalid_denial_binding")
    assert_problem(flow.submit(signed(flow, target("billing"), iss=None)), 400, "invalid_denial_binding")


def test_ar_26_a_replayed_jti_is_refused_without_an_idempotency_key(flow: Flow) -> None:
    body = flow.submission(flow.evaluate("dave"))
    accepted(flow.submit(body))
    assert_problem(flow.submit(body), 400, "invalid_denial_binding")
    assert_problem(flow.submit(body, key="a-key-the-first-submission-did-not-use"), 400, "invalid_denial_binding")


def test_ar_26_inline_binding_claims_must_match_the_submission(flow: Flow) -> None:
    for change in (
        {"resource": {"type": "Service", "id": "payroll"}},
        {"subject": {"type": "User", "id": "bob"}},
        {"subject": {"type": "User", "id": "dave", "properties": {"name": "Dave"}}},
        {"resource": {"type": "Service", "id": "billing", "properties": {"tier": 1}}},
    ):
        evaluated = flow.evaluate("dave", "billing")
        assert_problem(flow.submit({**flow.submission(evaluated), **change}), 400, "invalid_denial_binding")
    hashed = signed(flow, target("billing"), subject=None, resource=None, action=None, context=None, binding_hash="x" * 43)
    assert_problem(flow.submit(hashed), 400, "invalid_denial_binding")


def test_ar_26_the_token_evaluation_id_must_be_the_denial_evaluation_id(flow: Flow) -> None:
    body = flow.submission(flow.evaluate("dave"))
    body["denial"]["evaluation_id"] = flow.evaluate("dave")["decision"]["context"]["evaluation_id"]
    assert_problem(flow.submit(body), 400, "invalid_denial_binding")


# -- AR-31, AR-32: bundles -------------------------------------------------------------------


def test_ar_31_ar_32_each_item_with_its_own_denial(flow: Flow) -> None:
    task = accepted(flow.submit(flow.bundle("billing", "payroll")))
    assert [(i["resource"]["id"], i["action"], i["status"]) for i in task["items"]] == [
        ("billing", DEPLOY, "pending"),
        ("payroll", DEPLOY, "pending"),
    ]


def test_ar_31_ar_32_an_item_without_a_denial_needs_a_bundle_denial(flow: Flow) -> None:
    uncovered = flow.bundle("billing", "payroll")
    del uncovered["items"][1]["denial"]
    assert_problem(flow.submit(uncovered), 400, "invalid_denial_binding")
    # A single-item denial at the top level does not cover the bundle.
    single = flow.bundle("billing", "payroll")
    single["denial"] = single["items"][1].pop("denial")
    assert_problem(flow.submit(single), 400, "invalid_denial_binding")
    # Nor does a bundle denial with only an evaluation_id (one record binds one item, D-ARAP-6).
    by_id = flow.bundle("billing", "payroll", denials=False)
    by_id["denial"] = by_evaluation_id(flow, flow.evaluate("dave", "payroll"))["denial"]
    assert_problem(flow.submit(by_id), 400, "invalid_denial_binding")
    # A denial without binding material covers nothing.
    bare = flow.bundle("billing", "payroll")
    bare["items"][1]["denial"] = {"expires_at": bare["items"][1]["denial"]["expires_at"]}
    assert_problem(flow.submit(bare), 400, "invalid_denial_binding")


def test_ar_32_a_bulk_bundle_denial_covers_every_item_in_order(flow: Flow) -> None:
    unbound = flow.bundle("billing", "payroll", denials=False)
    accepted(flow.submit(signed(flow, unbound)))
    reordered = signed(flow, unbound)
    reordered["items"] = unbound["items"][::-1]
    assert_problem(flow.submit(reordered), 400, "invalid_denial_binding")
    partial = signed(flow, {**unbound, "items": unbound["items"][:1]})
    partial["items"] = unbound["items"]
    assert_problem(flow.submit(partial), 400, "invalid_denial_binding")


def test_ar_32_items_own_denials_are_each_verified(flow: Flow) -> None:
    swapped = flow.bundle("billing", "payroll")
    billing, payroll = swapped["items"]
    billing["denial"], payroll["denial"] = payroll["denial"], billing["denial"]
    assert_problem(flow.submit(swapped), 400, "invalid_denial_binding")
    # A top-level denial sent as well must cover the whole bundle too (D-ARAP-7).
    extra = flow.bundle("billing", "payroll")
    extra["denial"] = flow.submission(flow.evaluate("dave", "billing"))["denial"]
    assert_problem(flow.submit(extra), 400, "invalid_denial_binding")


def test_ar_32_malformed_bundles_are_plain_400s(flow: Flow) -> None:
    single = flow.submission(flow.evaluate("dave"))
    with_items = {**single, "items": flow.bundle("payroll")["items"]}
    assert_problem(flow.submit(with_items), 400, "about:blank")
    assert_problem(flow.submit(flow.bundle()), 400, "about:blank")
    no_action = flow.bundle("billing")
    del no_action["items"][0]["action"]
    assert_problem(flow.submit(no_action), 400, "about:blank")
    no_subject = {k: v for k, v in single.items() if k != "subject"}
    assert_problem(flow.submit(no_subject), 400, "about:blank")
    neither = {k: v for k, v in single.items() if k not in ("resource", "action")}
    assert_problem(flow.submit(neither), 400, "about:blank")


# -- AR-43: requestability -------------------------------------------------------------------


def test_ar_43_a_submission_not_based_on_a_requestable_denial_is_not_requestable(flow: Flow) -> None:
    borrowed = flow.submission(flow.evaluate("dave", "billing"))["denial"]
    # A frozen service: a forbid matches, so the denial was never requestable.
    frozen = flow.evaluate("dave", "ledger")["decision"]
    assert frozen["decision"] is False and "access_request" not in frozen["context"]
    assert_problem(flow.submit({**target("ledger"), "denial": borrowed}), 400, "not_requestable")
    # A staging deploy by the owner is already allowed: there is nothing to request.
    assert flow.evaluate("carol", "billing", env="staging")["decision"] == {"decision": True}
    assert_problem(flow.submit({**target("billing", subject="carol", env="staging"), "denial": borrowed}), 400, "not_requestable")
    # No permit would allow a deploy to `dev`, requestable or not.
    assert_problem(flow.submit({**target("billing", env="dev"), "denial": borrowed}), 400, "not_requestable")
    # One item that is not requestable spoils the bundle.
    mixed = flow.bundle("billing", "ledger", denials=False)
    for item in mixed["items"]:
        item["denial"] = flow.submission(flow.evaluate("dave", "billing"))["denial"]
    assert_problem(flow.submit(mixed), 400, "not_requestable")


# -- AR-44, AR-46, AR-47, AR-49: the task and idempotency ------------------------------------


def test_ar_44_the_task_is_bound_to_what_was_submitted(flow: Flow) -> None:
    body = flow.submission(
        flow.evaluate("dave", ticket="CHG-44"),
        client={"id": "deploy-portal", "source": {"session_id": "s-44"}},
        requested_access={"requested_until": format_instant(datetime.now(UTC) + timedelta(hours=2))},
    )
    task = accepted(flow.submit(body))
    detail = flow.detail("alice", task["id"]).json()
    assert detail["subject"] == body["subject"]
    assert detail["items"] == [{"resource": body["resource"], "action": body["action"], "status": "pending"}]
    assert detail["context"] == body["context"]
    assert detail["client"] == body["client"]
    assert detail["requester"] == "pep"
    assert detail["requested_access"]["requested_until"] == body["requested_access"]["requested_until"]


def test_ar_46_an_idempotent_retry_returns_the_same_task_and_status_code(flow: Flow) -> None:
    key = "idem-" + secrets.token_hex(8)
    body = flow.submission(flow.evaluate("dave"))
    first = flow.submit(body, key=key)
    assert first.status_code == 202, first.text
    again = flow.submit(body, key=key)
    assert again.status_code == 202 and again.json()["task"]["id"] == first.json()["task"]["id"]
    assert again.headers["location"] == first.headers["location"]
    # Equivalence ignores whitespace and member order (D-ARAP-15).
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    headers = {**flow.credentials.headers("pep"), "Idempotency-Key": key, "Content-Type": "application/json"}
    replay = flow.http.post("/access/v1/requests", content=reordered, headers=headers)
    assert replay.status_code == 202 and replay.json()["task"]["id"] == first.json()["task"]["id"]

    # An auto-approved submission (201) replays as 201 with the same approval.
    key = "idem-" + secrets.token_hex(8)
    body = flow.submission(flow.evaluate("dave", "sandbox"))
    created = flow.submit(body, key=key)
    assert created.status_code == 201, created.text
    replayed = flow.submit(body, key=key)
    assert replayed.status_code == 201 and replayed.json() == created.json()


def test_ar_46_an_idempotent_retry_after_the_denial_expired_gets_the_task(strict_flow: Flow) -> None:
    flow, key = strict_flow, "idem-" + secrets.token_hex(8)
    # The PDP's instants are whole seconds: a 1 s denial lasts a full second only if it is
    # evaluated as a second begins.
    time.sleep(1 - time.time() % 1)
    body = flow.submission(flow.evaluate("dave"))
    first = flow.submit(body, key=key)
    assert first.status_code == 202, first.text
    time.sleep(1.3)  # the denial (1 s, no skew) has expired; the token's jti was seen
    again = flow.submit(body, key=key)
    assert again.status_code == 202, again.text
    assert again.json()["task"]["id"] == first.json()["task"]["id"]


def test_ar_47_the_same_key_with_another_body_is_duplicate_request(flow: Flow) -> None:
    key = "idem-" + secrets.token_hex(8)
    evaluated = flow.evaluate("dave")
    accepted(flow.submit(flow.submission(evaluated, context={"env": "prod", "ticket": "CHG-1"}), key=key))
    changed = flow.submission(evaluated, context={"env": "prod", "ticket": "CHG-2"})
    assert_problem(flow.submit(changed, key=key), 409, "duplicate_request")
    fresh = flow.submission(flow.evaluate("dave"))
    assert_problem(flow.submit(fresh, key=key), 409, "duplicate_request")


def test_ar_49_idempotency_keys_are_scoped_to_the_caller(flow: Flow) -> None:
    key = "idem-" + secrets.token_hex(8)
    mine = accepted(flow.submit(flow.submission(flow.evaluate("dave")), key=key))
    theirs = accepted(flow.submit(flow.submission(flow.evaluate("dave", caller="other_pep")), caller="other_pep", key=key))
    assert theirs["id"] != mine["id"]
    assert flow.detail("alice", theirs["id"]).json()["requester"] == "other_pep"


# -- AR-50, AR-51: the response --------------------------------------------------------------


def test_ar_50_a_pending_task_is_202_with_location_equal_to_the_status_endpoint(flow: Flow) -> None:
    submitted = flow.submit(flow.submission(flow.evaluate("dave")))
    assert submitted.status_code == 202, submitted.text
    answer = submitted.json()
    task = answer["task"]
    assert task["status"] == "pending" and "result" not in answer
    assert submitted.headers["location"] == task["status_endpoint"]
    assert task["status_endpoint"] == f"{flow.base_url}/access/v1/requests/{task['id']}"
    polled = flow.http.get(task["status_endpoint"], headers=flow.credentials.headers("pep"))
    assert polled.status_code == 200 and polled.json()["task"]["id"] == task["id"]
    assert int(polled.headers["retry-after"]) > 0  # AR-56: the poller waits at least this long


def test_ar_51_an_auto_approved_submission_is_201_with_its_result(flow: Flow) -> None:
    evaluated = flow.evaluate("dave", "sandbox")
    submitted = flow.submit(flow.submission(evaluated))
    assert submitted.status_code == 201, submitted.text
    answer = submitted.json()
    assert answer["task"]["status"] == "approved"
    assert submitted.headers["location"] == answer["task"]["status_endpoint"]
    assert answer["result"]["mode"] == "reevaluate"
    approval = answer["result"]["approval"]
    assert approval["id"].startswith("apr_") and approval["approved_until"] and approval["state"]
    assert flow.reevaluate(evaluated, approval)["decision"] is True


# -- AR-83, AR-90, AR-92: protocol errors and who may submit ---------------------------------


def test_ar_83_malformed_submissions_are_problem_json(flow: Flow) -> None:
    headers = {**flow.credentials.headers("pep"), "Content-Type": "application/json"}
    for content in (b"", b"{not json", b"[1, 2]", b'{"subject": "dave"}'):
        assert_problem(flow.http.post("/access/v1/requests", content=content, headers=headers), 400, "about:blank")
    body = flow.submission(flow.evaluate("dave"))
    body["denial"]["expires_at"] = "tomorrow"
    assert_problem(flow.submit(body), 400, "about:blank")


def test_ar_90_submission_requires_an_authenticated_caller(flow: Flow) -> None:
    body = flow.submission(flow.evaluate("dave"))
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic cGVwOnBlcA=="}):
        refused = flow.http.post("/access/v1/requests", json=body, headers=headers)
        assert_problem(refused, 401, "about:blank")
        assert refused.headers["www-authenticate"].startswith("Bearer")
    # The reviewers' credentials are not a PEP's.
    assert flow.submit(body, caller="alice").status_code == 401
    accepted(flow.submit(body))


def test_ar_90_a_caller_not_allowed_for_the_subject_is_403(flow: Flow) -> None:
    assert_problem(flow.submit(flow.submission(flow.evaluate("dave")), caller="bob_only"), 403, "about:blank")
    accepted(flow.submit(flow.submission(flow.evaluate("bob")), caller="bob_only"))


def test_ar_92_a_client_actor_the_caller_does_not_vouch_for_is_403(flow: Flow) -> None:
    actor = {"id": "agent-92", "type": "ai_agent", "act": {"sub": "dave"}}
    refused = flow.submit(flow.submission(flow.evaluate("dave"), client={"id": "portal", "actor": actor}))
    assert_problem(refused, 403, "about:blank")
    evaluated = flow.evaluate("dave", caller="agent_gateway")
    accepted(flow.submit(flow.submission(evaluated, client={"id": "gateway", "actor": actor}), caller="agent_gateway"))
    # A client without an actor claims nothing.
    accepted(flow.submit(flow.submission(flow.evaluate("dave"), client={"id": "portal"})))
