"""ARAP at the PDP over real HTTP (spec/arap.md §1-§5, §12): discovery, requestable denials with
their binding material, and re-evaluation with `context.approval`.

The trading-agent bundle (examples/agents): trader-7 buying for 5,000 on alice-main is
requestable through `owner_approval`; 60,000 is not (over the requestable permit's limit);
alice-frozen is forbidden. Approvals are written into the server's own store through the Store
API, their `state` signed with the server's current key, as the ARS would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from profiles.arap.approval import approval_claims, sign_approval_state
from profiles.arap.binding import verify_binding_token
from profiles.arap.compare import Covered, Target
from profiles.arap.discovery import CAPABILITY
from profiles.arap.model import Denial, parse_instant
from profiles.arap.recorded import RecordedEvaluation, verify_recorded
from services.auth import new_api_key
from services.store import Store
from services.store.records import ApprovalRecord, TaskItem, TaskRecord
from tests.contract.helpers import EVALUATION, EVALUATIONS, WELL_KNOWN, batch, bearer, decide
from tests.server import RunningServer, run_server
from tests.support import on_store

AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"
ANONYMOUS = "anonymous-loopback"
T = TypeVar("T")

PEP, PEP_HASH = new_api_key()
OTHER, OTHER_HASH = new_api_key()
SECURED_CONFIG = (
    "[pdp]\nsigned_metadata = true\n\n"
    f'[[callers]]\nname = "pep"\nkey_sha256 = "{PEP_HASH}"\nscopes = ["evaluate"]\n\n'
    f'[[callers]]\nname = "other"\nkey_sha256 = "{OTHER_HASH}"\nscopes = ["evaluate"]\n'
)


def buy(amount: Any = 5000, resource: str = "alice-main", **context: Any) -> dict[str, Any]:
    return {
        "subject": {"type": "Agent", "id": "trader-7"},
        "action": {"name": "buy"},
        "resource": {"type": "Portfolio", "id": resource},
        "context": {"amount": amount, **context},
    }


def agents_server(tmp_path_factory: pytest.TempPathFactory, name: str, config: str = "") -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp(name), config=config, args=("--bundle", str(AGENTS))) as running:
        yield running


@pytest.fixture(scope="module")
def arap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Out of the box: loopback, anonymous callers, binding "both"."""
    yield from agents_server(tmp_path_factory, "arap")


@pytest.fixture(scope="module")
def token_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from agents_server(tmp_path_factory, "arap-token", '[access_requests]\nbinding = "token"\nbinding_hash = true\n')


@pytest.fixture(scope="module")
def recorded_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from agents_server(tmp_path_factory, "arap-recorded", '[access_requests]\nbinding = "evaluation_id"\n')


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from agents_server(tmp_path_factory, "arap-secured", SECURED_CONFIG)


@pytest.fixture(scope="module")
def http_client(arap: RunningServer) -> Iterator[httpx.Client]:
    with arap.client() as c:
        yield c


# -- helpers: the server's store, keys and tokens -----------------------------------------------


def in_store(server: RunningServer, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` on the server's own SQLite store (run_server keeps it beside the log)."""
    return on_store(f"sqlite:///{server.log.parent / 'arop.db'}", work)


def jwks(client: httpx.Client) -> KeySet:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


def current_key(server: RunningServer) -> ECKey:
    with server.client() as c:
        jwks(c)  # the server creates its first key on demand
    keys = in_store(server, lambda store: store.signing_keys(datetime.now(UTC)))
    return ECKey.import_key(json.loads(keys[0].private_jwk))


def resolver(keys: KeySet, issuer: str) -> Callable[[str | None, str | None], ECKey | None]:
    def resolve(iss: str | None, kid: str | None) -> ECKey | None:
        return next((k for k in keys.keys if k.kid == kid), None) if iss == issuer else None  # type: ignore[misc]

    return resolve


def unverified_header(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def covered(body: dict[str, Any]) -> Covered:
    return Covered(body["subject"], body.get("context"), (Target(body["resource"], body["action"]),))


def hint(decision: dict[str, Any]) -> dict[str, Any]:
    assert decision["decision"] is False, decision
    return decision["context"]["access_request"]  # type: ignore[no-any-return]


def denial_of(decision: dict[str, Any]) -> Denial:
    """§8.2: what a PEP echoes of a requestable denial."""
    context = decision["context"]
    return Denial(
        expires_at=context["access_request"]["expires_at"],
        evaluation_id=context.get("evaluation_id"),
        binding_token=context["access_request"].get("binding_token"),
    )


_approvals = iter(range(1, 10_000))


def approve(
    server: RunningServer,
    body: dict[str, Any],
    *,
    requester: str = ANONYMOUS,
    until: timedelta = timedelta(hours=1),
    template: str = "owner_approval",
    audience: str | None = None,
    key: ECKey | None = None,
) -> dict[str, Any]:
    """Store an approval of exactly `body` (task first, for the foreign key) and return the
    `approval` object the ARS would hand the PEP, `state` signed as the ARS signs it."""
    n = next(_approvals)
    approval_id, task_id = f"apr_test{n}", f"arq_test{n}"
    now = datetime.now(UTC).replace(microsecond=0)
    approved_until = now + until
    claims = approval_claims(
        issuer=f"{server.base_url}/access/v1/requests",
        audience=audience or server.base_url,
        approval_id=approval_id,
        task_id=task_id,
        covered=covered(body),
        members=["amount"],
        approved_until=approved_until,
        now=now,
        requester=requester,
    )
    state = sign_approval_state(claims, key or current_key(server))
    task = TaskRecord(
        id=task_id,
        status="pending",
        requester=requester,
        subject=body["subject"],
        context=body["context"],
        context_members=["amount"],
        items=[TaskItem(resource=body["resource"], action=body["action"])],
        template=template,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(days=1),
    )
    record = ApprovalRecord(
        id=approval_id,
        task_id=task_id,
        subject=body["subject"],
        resource=body["resource"],
        action=body["action"],
        context_members=["amount"],
        context_values={"amount": body["context"]["amount"]},
        requester=requester,
        template=template,
        approved_at=now,
        approved_until=approved_until,
        state=state,
    )

    async def store_it(store: Store) -> None:
        created = await store.create_task(task, idempotency=None)
        approved = msgspec.structs.replace(created.task, status="approved", version=created.task.version + 1)
        assert await store.update_task(approved, expected_version=created.task.version, approvals=[record])

    in_store(server, store_it)
    return {"id": approval_id, "approved_until": claims["approved_until"], "state": state}


def reevaluate(client: httpx.Client, body: dict[str, Any], approval: Any, **headers: str) -> dict[str, Any]:
    return decide(client, {**body, "context": {**body["context"], "approval": approval}}, **headers)


def pep_next_action(context: dict[str, Any]) -> str:
    """AR-76, the PEP's decision procedure, verbatim from §12.3."""
    na = context.get("next_action")
    if na not in ("request", "retry", "none"):
        na = {"approval_expired": "request", "out_of_scope": "request", "grant_pending": "retry",
              "policy_denied": "none", "approval_unverifiable": "none"}.get(context.get("reason"))
        if na is None:
            na = "request" if "access_request" in context else "none"
    if na == "request" and "access_request" not in context:
        na = "none"
    return na  # type: ignore[no-any-return]


def assert_denied(decision: dict[str, Any], reason: str, next_action: str) -> dict[str, Any]:
    assert decision["decision"] is False, decision
    context = decision["context"]
    assert (context["reason"], context["next_action"]) == (reason, next_action), context
    assert ("access_request" in context) == (next_action == "request"), context
    assert pep_next_action(context) == next_action
    return context  # type: ignore[no-any-return]


# -- §1 discovery (AR-1..AR-3) ------------------------------------------------------------------


def test_ar_1_metadata_names_the_access_request_endpoint(http_client: httpx.Client, arap: RunningServer) -> None:
    document = http_client.get(WELL_KNOWN).json()
    assert document["access_request_endpoint"] == f"{arap.base_url}/access/v1/requests"


def test_ar_2_metadata_lists_the_access_request_capability(http_client: httpx.Client) -> None:
    assert http_client.get(WELL_KNOWN).json()["capabilities"].count(CAPABILITY) == 1


def test_ar_3_jwks_uri_is_published_and_serves_the_signing_keys(http_client: httpx.Client, arap: RunningServer) -> None:
    document = http_client.get(WELL_KNOWN).json()
    assert document["jwks_uri"] == f"{arap.base_url}/.well-known/jwks.json"
    keys = httpx.get(document["jwks_uri"]).json()["keys"]
    assert keys and all(key["kid"] and key["use"] == "sig" and "d" not in key for key in keys)  # AR-4


def test_ar_3_signed_metadata_covers_the_arap_members(secured: RunningServer) -> None:
    with secured.client() as c:
        document = c.get(WELL_KNOWN).json()
        claims = jwt.decode(document["signed_metadata"], jwks(c)).claims
    for member in ("access_request_endpoint", "jwks_uri", "capabilities"):
        assert claims[member] == document[member], member


# -- §2 requestable denials (AR-6, AR-9..AR-12) ---------------------------------------------------


def test_ar_6_a_requestable_denial_carries_access_request(http_client: httpx.Client) -> None:
    decision = decide(http_client, buy(5000))
    assert hint(decision)["template"] == "owner_approval"


@pytest.mark.parametrize(
    ("body", "reason"),
    [(buy(60000), "no_matching_permit"), (buy(5000, "alice-frozen"), "forbidden"), (buy(500), None)],
    ids=["over-the-requestable-limit", "forbidden", "allowed"],
)
def test_ar_6_no_access_request_unless_the_denial_is_requestable(http_client: httpx.Client, body: dict[str, Any], reason: str | None) -> None:
    decision = decide(http_client, body)
    if reason is None:
        assert decision == {"decision": True}
    else:
        assert decision == {"decision": False, "context": {"reason": reason, **({"policies": ["frozen-portfolio"]} if reason == "forbidden" else {})}}


def test_ar_6_no_access_request_without_an_https_endpoint(tmp_path: Path) -> None:
    """A PDP published at plain http on a non-loopback host has no endpoint a PEP may use."""
    config = '[server]\npublic_url = "http://pdp.example.net"\n'
    with run_server(tmp_path, config=config, args=("--bundle", str(AGENTS))) as running, running.client() as c:
        assert decide(c, buy(5000)) == {"decision": False, "context": {"reason": "no_matching_permit"}}
        document = c.get(WELL_KNOWN).json()
    assert not {"access_request_endpoint", "jwks_uri", "capabilities"} & set(document)
    assert "AR-6" in running.log.read_text()


def test_ar_9_the_hint_expires_and_carries_binding_material(http_client: httpx.Client) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    decision = decide(http_client, buy(5000))
    access_request = hint(decision)
    expires_at = parse_instant(access_request["expires_at"])
    assert before + timedelta(seconds=600) <= expires_at <= datetime.now(UTC) + timedelta(seconds=600)
    assert access_request["binding_token"] and decision["context"]["evaluation_id"]
    evaluated_at = parse_instant(decision["context"]["evaluated_at"])
    assert evaluated_at + timedelta(seconds=600) == expires_at


def test_ar_9_display_and_request_schema_come_from_the_workflow(http_client: httpx.Client, arap: RunningServer) -> None:
    access_request = hint(decide(http_client, buy(5000)))
    assert access_request["display"] == {
        "title": "Trade approval",
        "description": "The portfolio owner approves a buy their trading agent wants to make.",
    }
    assert access_request["request_schema_url"] == f"{arap.base_url}/access/v1/request-schemas/owner_approval"
    assert "request_catalogs_url" not in access_request and "endpoint" not in access_request


def test_ar_9_each_batch_item_is_requestable_on_its_own(http_client: httpx.Client) -> None:
    top = buy(5000)
    items = batch(http_client, {**top, "evaluations": [{}, {"context": {"amount": 60000}}, {"context": {"amount": 100}}, {"context": {"amount": 7000}}]})
    assert [item["decision"] for item in items] == [False, False, True, False]
    assert "access_request" in items[0]["context"] and "access_request" in items[3]["context"]
    assert items[1] == {"decision": False, "context": {"reason": "no_matching_permit"}}
    assert items[0]["context"]["evaluation_id"] != items[3]["context"]["evaluation_id"]
    claims = jwt.decode(items[3]["context"]["access_request"]["binding_token"], jwks(http_client)).claims
    assert claims["context"] == {"amount": 7000}


def test_ar_9_short_circuit_batches_are_requestable_too(http_client: httpx.Client) -> None:
    body = {**buy(5000), "evaluations": [{}, {"context": {"amount": 100}}], "options": {"evaluations_semantic": "deny_on_first_deny"}}
    (only,) = batch(http_client, body)
    assert "access_request" in only["context"]


def test_ar_10_every_requestable_denial_returns_an_evaluation_id(arap: RunningServer, token_only: RunningServer, recorded_only: RunningServer) -> None:
    for server in (arap, token_only, recorded_only):
        with server.client() as c:
            context = decide(c, buy(5000))["context"]
        assert context["evaluation_id"].startswith("ev_") and len(context["evaluation_id"]) > 16


def test_ar_10_evaluation_id_binding_is_recorded_before_the_answer(recorded_only: RunningServer) -> None:
    body = buy(5000, note="not bound")
    with recorded_only.client() as c:
        decision = decide(c, body)
    context = decision["context"]
    assert "binding_token" not in context["access_request"]
    stored = in_store(recorded_only, lambda store: store.get_evaluation(context["evaluation_id"]))
    assert stored is not None
    assert (stored.subject, stored.resource, stored.action) == (body["subject"], body["resource"], body["action"])
    assert (stored.context_members, stored.context_values, stored.template) == (["amount"], {"amount": 5000}, "owner_approval")
    assert stored.expires_at == parse_instant(context["access_request"]["expires_at"])
    recorded = RecordedEvaluation(
        evaluation_id=stored.evaluation_id, subject=stored.subject, resource=stored.resource, action=stored.action,
        context_members=stored.context_members, context_values=stored.context_values,
        expires_at=context["access_request"]["expires_at"], template=stored.template,
    )
    verified = verify_recorded(recorded, covered(body), now=datetime.now(UTC), skew=timedelta(seconds=30))
    assert verified.members == ["amount"]


def test_ar_12_a_requestable_denial_says_approval_required(http_client: httpx.Client) -> None:
    context = decide(http_client, buy(5000))["context"]
    assert context["reason"] == "approval_required"
    assert "policies" not in context or context["policies"]  # ids only as before (AR-102)


# -- §3, §5 binding_token (AR-17, AR-23) --------------------------------------------------------------


def test_ar_17_binding_context_members_are_those_policies_read(http_client: httpx.Client, arap: RunningServer) -> None:
    """`note` and `time` reach no policy: they do not bind (AR-19); `amount` does."""
    body = buy(5000, note="for the quarter", time=1700000000)
    decision = decide(http_client, body)
    claims = jwt.decode(hint(decision)["binding_token"], jwks(http_client)).claims
    assert claims["binding_context_members"] == ["amount"]
    assert claims["context"] == {"amount": 5000}
    assert (claims["subject"], claims["resource"], claims["action"]) == (body["subject"], body["resource"], body["action"])


def test_ar_23_binding_token_is_an_es256_jws_the_jwks_verifies(http_client: httpx.Client, arap: RunningServer) -> None:
    decision = decide(http_client, buy(5000))
    access_request = hint(decision)
    token = jwt.decode(access_request["binding_token"], jwks(http_client))
    assert token.header["alg"] == "ES256" and token.header["typ"] == "arap-binding+jwt" and token.header["kid"]
    claims = token.claims
    assert claims["iss"] == arap.base_url
    assert claims["aud"] == f"{arap.base_url}/access/v1/requests"
    assert claims["evaluation_id"] == decision["context"]["evaluation_id"]
    assert claims["template"] == "owner_approval"
    assert claims["denial_expires_at"] == access_request["expires_at"]
    assert claims["iat"] < claims["exp"] <= parse_instant(access_request["expires_at"]).timestamp()
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]


def test_ar_23_the_ars_verification_procedure_accepts_the_token(http_client: httpx.Client, arap: RunningServer) -> None:
    body = buy(5000)
    decision = decide(http_client, body)
    verified = verify_binding_token(
        denial_of(decision), covered(body),
        resolve_key=resolver(jwks(http_client), arap.base_url), audience=f"{arap.base_url}/access/v1/requests",
        now=datetime.now(UTC), skew=timedelta(seconds=30), seen_jti=lambda jti, until: False,
    )
    assert verified.members == ["amount"] and verified.evaluation_id == decision["context"]["evaluation_id"]


def test_ar_23_token_binding_by_hash_and_without_a_record(token_only: RunningServer) -> None:
    body = buy(5000)
    with token_only.client() as c:
        decision = decide(c, body)
        keys = jwks(c)
    claims = jwt.decode(hint(decision)["binding_token"], keys).claims
    assert "binding_hash" in claims and "subject" not in claims
    verify_binding_token(
        denial_of(decision), covered(body),
        resolve_key=resolver(keys, token_only.base_url), audience=f"{token_only.base_url}/access/v1/requests",
        now=datetime.now(UTC), skew=timedelta(seconds=30), seen_jti=lambda jti, until: False,
    )
    assert in_store(token_only, lambda store: store.get_evaluation(decision["context"]["evaluation_id"])) is None


# -- §12 re-evaluation with context.approval (AR-66..AR-72, AR-76) -----------------------------------


def test_ar_66_a_verified_approval_allows_and_echoes_its_expiry(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    decision = reevaluate(http_client, buy(5000), approval)
    assert decision == {"decision": True, "context": {"approval": {"id": approval["id"], "approved_until": approval["approved_until"]}}}


def test_ar_66_standing_access_allows_as_usual(http_client: httpx.Client, arap: RunningServer) -> None:
    assert reevaluate(http_client, buy(500), approve(arap, buy(500))) == {"decision": True}


def test_ar_66_a_known_id_alone_never_authorizes(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    assert_denied(reevaluate(http_client, buy(5000), {"id": approval["id"], "approved_until": approval["approved_until"], "state": None}), "approval_unverifiable", "none")
    assert_denied(reevaluate(http_client, buy(5000), {"id": "apr_unknown", "approved_until": approval["approved_until"]}), "approval_unverifiable", "none")


def test_ar_66_an_approval_for_another_requester_is_out_of_scope(secured: RunningServer) -> None:
    approval = approve(secured, buy(5000), requester="pep")
    with secured.client() as c:
        assert reevaluate(c, buy(5000), approval, **bearer(PEP))["decision"] is True
        assert_denied(reevaluate(c, buy(5000), approval, **bearer(OTHER)), "out_of_scope", "request")


def test_ar_67_a_swapped_approval_id_is_unverifiable(http_client: httpx.Client, arap: RunningServer) -> None:
    first, second = approve(arap, buy(5000)), approve(arap, buy(5000))
    swapped = {**first, "id": second["id"]}
    assert_denied(reevaluate(http_client, buy(5000), swapped), "approval_unverifiable", "none")


def test_ar_69_a_tampered_state_is_unverifiable(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    header, payload, signature = approval["state"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["context"]["amount"] = 40000
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_denied(reevaluate(http_client, buy(5000), {**approval, "state": f"{header}.{forged}.{signature}"}), "approval_unverifiable", "none")


def test_ar_69_a_state_for_another_pdp_or_from_an_unknown_key_is_unverifiable(http_client: httpx.Client, arap: RunningServer) -> None:
    foreign_audience = approve(arap, buy(5000), audience="https://other-pdp.example.net")
    assert_denied(reevaluate(http_client, buy(5000), foreign_audience), "approval_unverifiable", "none")
    stranger = ECKey.generate_key("P-256", parameters={"kid": unverified_header(foreign_audience["state"])["kid"]}, private=True)
    foreign_key = approve(arap, buy(5000), key=stranger)
    assert_denied(reevaluate(http_client, buy(5000), foreign_key), "approval_unverifiable", "none")


def test_ar_71_an_expired_or_revoked_approval_asks_for_a_new_request(http_client: httpx.Client, arap: RunningServer) -> None:
    expired = approve(arap, buy(5000), until=timedelta(seconds=-1))
    context = assert_denied(reevaluate(http_client, buy(5000), expired), "approval_expired", "request")
    assert context["access_request"]["template"] == "owner_approval" and context["evaluation_id"]

    revoked = approve(arap, buy(5000))
    assert reevaluate(http_client, buy(5000), revoked)["decision"] is True
    assert in_store(arap, lambda store: store.revoke_approval(revoked["id"], datetime.now(UTC)))
    assert_denied(reevaluate(http_client, buy(5000), revoked), "approval_expired", "request")


@pytest.mark.parametrize(
    ("approved", "template"),
    [(buy(5000, "alice-frozen"), "owner_approval"), (buy(60000), "owner_approval"), (buy(5000), "other_workflow")],
    ids=["forbid-matches", "no-requestable-permit", "another-workflow"],
)
def test_ar_71_an_approval_never_overrides_current_policy(http_client: httpx.Client, arap: RunningServer, approved: dict[str, Any], template: str) -> None:
    approval = approve(arap, approved, template=template)
    assert_denied(reevaluate(http_client, approved, approval), "policy_denied", "none")


def test_ar_72_a_request_outside_the_approved_scope_is_not_approved(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    context = assert_denied(reevaluate(http_client, buy(6000), approval), "out_of_scope", "request")
    claims = jwt.decode(context["access_request"]["binding_token"], jwks(http_client)).claims
    assert claims["context"] == {"amount": 6000}  # the fresh hint binds the current request
    assert_denied(reevaluate(http_client, buy(5000, "bob-main"), approval), "out_of_scope", "none")  # not requestable there
    # Members no policy reads are outside the scope's comparison; the bound amount is compared as JSON (1 = 1.0).
    assert reevaluate(http_client, buy(5000.0, note="x"), approval)["decision"] is True


def test_ar_72_batch_items_are_reevaluated_one_by_one(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    with_approval = {**buy(5000)["context"], "approval": approval}
    items = batch(http_client, {**buy(5000), "evaluations": [{"context": with_approval}, {"context": {**with_approval, "amount": 7000}}, {}]})
    assert items[0]["decision"] is True and items[0]["context"]["approval"]["id"] == approval["id"]
    assert (items[1]["context"]["reason"], items[1]["context"]["next_action"]) == ("out_of_scope", "request")
    assert items[2]["context"]["reason"] == "approval_required"


def test_ar_72_a_short_circuit_batch_stops_after_an_approved_item(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    body = {**buy(60000), "evaluations": [{"context": {"amount": 5000, "approval": approval}}, {}], "options": {"evaluations_semantic": "permit_on_first_permit"}}
    (only,) = batch(http_client, body)
    assert only["decision"] is True


def test_ar_76_every_denied_reevaluation_guides_the_pep(http_client: httpx.Client, arap: RunningServer) -> None:
    """`next_action` is always one of the three, and `request` always comes with a fresh hint."""
    approval = approve(arap, buy(5000))
    for body, given in [(buy(6000), approval), (buy(70000), approval), (buy(5000), {"id": 7}), (buy(5000), "apr")]:
        context = reevaluate(http_client, body, given)["context"]
        assert context["next_action"] in ("request", "retry", "none")
        assert (context["next_action"] == "request") == ("access_request" in context)
        assert pep_next_action(context) == context["next_action"]


def test_ar_89_every_reevaluation_with_an_approval_is_audited(http_client: httpx.Client, arap: RunningServer) -> None:
    approval = approve(arap, buy(5000))
    reevaluate(http_client, buy(5000), approval)
    reevaluate(http_client, buy(6000), approval)
    events = [e for e in in_store(arap, lambda store: store.audit_events(limit=10_000)) if e.kind == "reevaluation" and e.data.get("approval_id") == approval["id"]]
    task_id = approval["id"].replace("apr_", "arq_")
    assert [(e.actor, e.task_id, e.data["decision"], e.data["reason"]) for e in events] == [
        (ANONYMOUS, task_id, True, "approved"),
        (ANONYMOUS, task_id, False, "out_of_scope"),
    ]


@pytest.mark.parametrize("variant", ["token_only", "recorded_only"])
def test_ar_66_reevaluation_works_with_either_binding(variant: str, request: pytest.FixtureRequest) -> None:
    server: RunningServer = request.getfixturevalue(variant)
    approval = approve(server, buy(5000))
    with server.client() as c:
        assert reevaluate(c, buy(5000), approval)["decision"] is True
        context = assert_denied(reevaluate(c, buy(6000), approval), "out_of_scope", "request")
    assert ("binding_token" in context["access_request"]) == (variant == "token_only")
    recorded = in_store(server, lambda store: store.get_evaluation(context["evaluation_id"]))
    assert (recorded is not None) == (variant == "recorded_only")


def test_evaluation_endpoints_are_unchanged_for_plain_decisions(http_client: httpx.Client) -> None:
    """The plain path keeps its shapes: an allow has no context, a forbidden denial only its reason."""
    assert http_client.post(EVALUATION, json=buy(100)).json() == {"decision": True}
    assert http_client.post(EVALUATIONS, json={**buy(100), "evaluations": [{}]}).json() == {"evaluations": [{"decision": True}]}
