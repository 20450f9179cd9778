"""Bundles (parsing, validation with file:line, tier annotations) and the Cedar engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from profiles.authzen.model import Action, EvaluationRequest, Resource, Subject
from services.pdp import cedar as cedar_module
from services.pdp.bundle import BundleError, bundle_files, load_bundle, split_statements
from services.pdp.engine import Engine
from services.pdp.entities import EntityIndex, action_records
from services.store.records import EntityRecord, EntityUid

TODO = Path(__file__).resolve().parents[2] / "examples" / "todo"

SCHEMA = """
entity User = { frozen?: Bool };
entity Portfolio = { owner?: User, frozen?: Bool };
action read, buy appliesTo { principal: User, resource: Portfolio, context: { amount?: Long, level?: String } };
"""

POLICIES = """
@id("owner-reads") permit (principal, action == Action::"read", resource)
  when { resource has owner && resource.owner == principal };

@id("buy-with-mandate") @challenge("mandate")
permit (principal, action == Action::"buy", resource);

@id("buy-needs-approval") @requestable("owner_approval")
permit (principal, action == Action::"buy", resource) when { context has amount && context.amount <= 50000 };

@id("frozen") forbid (principal, action, resource) when { resource has frozen && resource.frozen };

@id("level-guard") forbid (principal, action == Action::"read", resource)
  when { context has level && context.level == "secret" };
"""


WORKFLOWS = """
[workflows.owner_approval]
[[workflows.owner_approval.steps]]
name = "owner"
approvers = [{ attribute = "resource.owner" }]
"""


def bundle_dir(tmp_path: Path, policies: str = POLICIES, schema: str = SCHEMA, workflows: str = WORKFLOWS) -> Path:
    path = tmp_path / "bundle"
    path.mkdir(exist_ok=True)
    (path / "schema.cedarschema").write_text(schema)
    (path / "policies.cedar").write_text(policies)
    (path / "workflows.toml").write_text(workflows)
    return path


def engine_for(path: Path, *entities: EntityRecord) -> Engine:
    bundle = load_bundle(path)
    return Engine(bundle, EntityIndex(bundle.entities, entities, action_records(bundle.actions)))


def request(action: str, resource: str = "p1", context: dict | None = None, **properties: object) -> EvaluationRequest:
    return EvaluationRequest(Subject("User", "alice"), Action(action), Resource("Portfolio", resource, dict(properties) or None), context)


def test_split_statements_tracks_lines_strings_and_comments() -> None:
    text = '// a; comment\n@id("x;y") permit (principal, action, resource)\n  when { "a;" == "a" };\n\nforbid (principal, action, resource);\n// trailing'
    assert [line for line, _ in split_statements(text)] == [2, 5]


def test_problems_carry_file_and_line(tmp_path: Path) -> None:
    path = bundle_dir(tmp_path, 'permit (principal, action, resource);\n\npermit (principal, action == Action::"nope", resource);\n\npermit (principal, action, resource) when { 1 + };\n')
    with pytest.raises(BundleError) as error:
        load_bundle(path)
    where = {(p.file, p.line) for p in error.value.problems}
    assert ("policies.cedar", 3) in where and ("policies.cedar", 5) in where
    assert ("policies.cedar", 1) not in where


def test_bundle_rules(tmp_path: Path) -> None:
    cases = {
        '@requestable("t") forbid (principal, action, resource);': "@requestable applies to permit policies only",
        '@challenge("") permit (principal, action, resource);': "@challenge needs a value",
        '@id("a") permit (principal, action, resource);\n@id("a") permit (principal, action, resource);': "duplicate policy id 'a'",
        "permit (principal == ?principal, action, resource);": "templates",
    }
    for text, message in cases.items():
        with pytest.raises(BundleError, match=message):
            load_bundle(bundle_dir(tmp_path, text))
    (tmp_path / "bundle" / "schema.cedarschema").unlink()
    with pytest.raises(BundleError, match="missing schema"):
        load_bundle(tmp_path / "bundle")


def test_tier_permits_never_allow_on_their_own(tmp_path: Path) -> None:
    engine = engine_for(bundle_dir(tmp_path))
    outcome = engine.evaluate([request("buy", context={"amount": 10})])[0]
    assert outcome.allowed is False
    assert outcome.reason == "no_matching_permit"
    assert [p.id for p in outcome.requestable] == ["buy-needs-approval"]
    assert [p.challenge for p in outcome.challenges] == ["mandate"]
    above = engine.evaluate([request("buy", context={"amount": 60000})])[0]
    assert above.allowed is False and above.requestable == [] and [p.id for p in above.challenges] == ["buy-with-mandate"]


def test_forbid_wins_and_hides_tiers(tmp_path: Path) -> None:
    engine = engine_for(bundle_dir(tmp_path))
    outcome = engine.evaluate([request("buy", context={"amount": 10}, frozen=True)])[0]
    assert (outcome.allowed, outcome.reason, outcome.policies) == (False, "forbidden", ["frozen"])
    assert outcome.requestable == [] and outcome.challenges == []


def test_erroring_forbid_denies(tmp_path: Path) -> None:
    # `resource.frozen` is declared Bool; a PEP sending a string makes the forbid's condition
    # raise. Cedar alone would skip the forbid and allow via owner-reads.
    engine = engine_for(bundle_dir(tmp_path), EntityRecord("Portfolio", "p1", {"owner": {"__entity": {"type": "User", "id": "alice"}}}))
    assert engine.evaluate([request("read")])[0].allowed is True
    outcome = engine.evaluate([request("read", frozen="yes")])[0]
    assert (outcome.allowed, outcome.reason, outcome.policies) == (False, "forbid_policy_error", ["frozen"])


def test_request_properties_override_stored_attributes_per_evaluation(tmp_path: Path) -> None:
    owned = EntityRecord("Portfolio", "p1", {"owner": {"__entity": {"type": "User", "id": "alice"}}})
    engine = engine_for(bundle_dir(tmp_path), owned)
    bob = {"__entity": {"type": "User", "id": "bob"}}
    outcomes = engine.evaluate([request("read"), request("read", owner=bob), request("read")])
    assert [o.allowed for o in outcomes] == [True, False, True]


def test_action_properties_reach_policies_and_cannot_be_spoofed(tmp_path: Path) -> None:
    policies = '@id("big") permit (principal, action == Action::"buy", resource) when { context has action_properties && context.action_properties.qty > 10 };'
    schema = "entity User; entity Portfolio; action buy appliesTo { principal: User, resource: Portfolio, context: { action_properties?: { qty: Long } } };"
    engine = engine_for(bundle_dir(tmp_path, policies, schema))
    with_properties = EvaluationRequest(Subject("User", "a"), Action("buy", {"qty": 11}), Resource("Portfolio", "p"))
    spoofed = EvaluationRequest(Subject("User", "a"), Action("buy"), Resource("Portfolio", "p"), {"action_properties": {"qty": 99}})
    assert [o.allowed for o in engine.evaluate([with_properties, spoofed])] == [True, False]


def test_unrepresentable_values_fail_closed(tmp_path: Path) -> None:
    engine = engine_for(bundle_dir(tmp_path))
    outcomes = engine.evaluate([request("buy", context={"amount": 0.123456}), request("buy", context={"amount": 2**70}), request("buy", context={"amount": 10.0})])
    assert [(o.allowed, o.reason) for o in outcomes[:2]] == [(False, "unsupported_value")] * 2
    assert outcomes[2].reason == "no_matching_permit" and outcomes[2].requestable  # 10.0 is the Long 10


def test_unknown_types_deny_without_poisoning_the_batch(tmp_path: Path) -> None:
    engine = engine_for(bundle_dir(tmp_path), EntityRecord("Portfolio", "p1", {"owner": {"__entity": {"type": "User", "id": "alice"}}}))
    bad = EvaluationRequest(Subject("not a type!", "x"), Action("read"), Resource("Portfolio", "p1"))
    outcomes = engine.evaluate([bad, request("read")])
    assert [(o.allowed, o.reason) for o in outcomes] == [(False, "unknown_entity_type"), (True, "permitted")]


def test_transitive_membership_and_action_groups(tmp_path: Path) -> None:
    schema = 'entity Group in [Group]; entity User in [Group]; entity Doc; action "all"; action view in ["all"] appliesTo { principal: User, resource: Doc };'
    policies = 'permit (principal in Group::"staff", action in Action::"all", resource);'
    engine = engine_for(
        bundle_dir(tmp_path, policies, schema),
        EntityRecord("User", "u", parents=[EntityUid("Group", "team")]),
        EntityRecord("Group", "team", parents=[EntityUid("Group", "staff")]),
    )
    allowed = EvaluationRequest(Subject("User", "u"), Action("view"), Resource("Doc", "d"))
    stranger = EvaluationRequest(Subject("User", "v"), Action("view"), Resource("Doc", "d"))
    assert [o.allowed for o in engine.evaluate([allowed, stranger])] == [True, False]


def test_todo_bundle_loads_and_is_stable(tmp_path: Path) -> None:
    first = load_bundle(TODO)
    copy = tmp_path / "todo"
    shutil.copytree(TODO, copy)
    assert load_bundle(copy).version == first.version
    (copy / "policies.cedar").write_text((copy / "policies.cedar").read_text() + "\n// changed\n")
    assert load_bundle(copy).version != first.version


def test_attribute_references_resolve_to_stored_entities(tmp_path: Path) -> None:
    schema = "entity Team; entity User in [Team] = { manager?: User }; entity Doc = { owner: User };\naction approve appliesTo { principal: User, resource: Doc };"
    policies = '@id("managers-approve") permit (principal, action == Action::"approve", resource) when { resource.owner has manager && resource.owner.manager == principal };\n@id("team-owner") permit (principal, action, resource) when { resource.owner in Team::"ops" };'
    engine = engine_for(
        bundle_dir(tmp_path, policies, schema),
        EntityRecord("User", "ann", {"manager": {"__entity": {"type": "User", "id": "bob"}}}),
        EntityRecord("User", "cid", parents=[EntityUid("Team", "ops")]),
        EntityRecord("Doc", "d1", {"owner": {"__entity": {"type": "User", "id": "ann"}}}),
    )
    approve = lambda who, props=None: EvaluationRequest(Subject("User", who), Action("approve"), Resource("Doc", "d1", props))  # noqa: E731
    cid_owned = {"owner": {"__entity": {"type": "User", "id": "cid"}}}
    outcomes = engine.evaluate([approve("bob"), approve("ann"), approve("zed", cid_owned)])
    assert [(o.allowed, o.policies) for o in outcomes] == [(True, ["managers-approve"]), (False, []), (True, ["team-owner"])]


def test_batch_items_never_see_properties_sent_by_another_item(tmp_path: Path) -> None:
    """Items share one Cedar entities document when their slices agree; an item naming an
    unknown uid without properties must not inherit what an earlier item sent for it."""
    engine = engine_for(bundle_dir(tmp_path))
    alice = {"__entity": {"type": "User", "id": "alice"}}
    outcomes = engine.evaluate([request("read", "new", owner=alice), request("read", "new"), request("read", "new", owner=alice)])
    assert [o.allowed for o in outcomes] == [True, False, True]


@pytest.mark.parametrize(
    ("condition", "identity_free"),
    [
        ('resource is Portfolio && resource has frozen && resource.frozen', True),
        ('resource == Portfolio::"p1"', False),
        ('resource in Portfolio::"p1"', False),
        ('[resource].contains(Portfolio::"p1")', False),
        ('{ "r": resource } == { "r": Portfolio::"p1" }', False),
    ],
)
def test_resource_identity_analysis(tmp_path: Path, condition: str, identity_free: bool) -> None:
    policies = POLICIES + f'\n@id("probe") forbid (principal, action == Action::"read", resource) when {{ {condition} }};'
    assert load_bundle(bundle_dir(tmp_path, policies)).resource_identity_free is identity_free


def test_distinct_questions_are_evaluated_once_and_answers_equal_per_item_evaluation(tmp_path: Path) -> None:
    """A batch about many resources that differ only by id costs one Cedar evaluation per
    distinct question, and every answer equals what evaluating the item alone gives."""
    path = bundle_dir(tmp_path)
    alice, bob = ({"__entity": {"type": "User", "id": who}} for who in ("alice", "bob"))
    owners = [alice, bob, alice, alice, bob]
    requests = [request("read", f"p{n}", owner=owners[n % 5], frozen=n % 7 == 0) for n in range(60)]
    requests += [request("buy", f"q{n}", {"amount": 10 * (n % 3)}) for n in range(30)]
    engine = engine_for(path)
    assert engine.bundle.resource_identity_free
    calls: list[int] = []
    original = cedar_module.is_authorized_batch
    cedar_module.is_authorized_batch = lambda reqs, *rest: calls.append(len(reqs)) or original(reqs, *rest)  # type: ignore[assignment]
    try:
        batched = engine.evaluate(requests)
    finally:
        cedar_module.is_authorized_batch = original  # type: ignore[assignment]
    alone = [engine_for(path).evaluate([r])[0] for r in requests]
    assert [(o.allowed, o.reason, o.policies, [p.id for p in o.requestable]) for o in batched] == [
        (o.allowed, o.reason, o.policies, [p.id for p in o.requestable]) for o in alone
    ]
    # Standing: reads are 2 owners x frozen or not, buys 3 amounts. Tier probe (denials no
    # forbid caused): unfrozen reads of bob's portfolios, and the 3 buys.
    assert sum(calls) == (4 + 3) + (1 + 3)


def test_every_requestable_template_needs_a_workflow(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as error:
        load_bundle(bundle_dir(tmp_path, workflows=""))
    problem = next(p for p in error.value.problems if "no such workflow" in p.message)
    assert (problem.file, problem.line) == ("policies.cedar", 8)
    assert problem.message == "@requestable('owner_approval'): no such workflow in workflows.toml"


@pytest.mark.parametrize(
    ("workflows", "message"),
    [
        ('[workflows.owner_approval]\nsteps = []\n', "workflows.owner_approval.steps: a workflow needs at least one step"),
        ('[workflows.owner_approval]\n[[workflows.owner_approval.steps]]\nname = "a"\nquorum = 0\napprovers = [{ attribute = "resource.owner" }]\n', "workflows.owner_approval.steps[0].quorum: must be at least 1"),
        ('[workflows.owner_approval]\nrequest_ttl = "4 hours"\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "resource.owner" }]\n', "workflows.owner_approval.request_ttl: '4 hours' is not a duration like 30s, 15m, 4h or 7d"),
        ('[workflows.owner_approval]\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "owner" }]\n', "workflows.owner_approval.steps[0].approvers[0].attribute: 'owner' must be a path like resource.owner or subject.manager"),
        ('[workflows.owner_approval]\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "resource.owner", ids = [{ type = "User", id = "x" }] }]\n', "workflows.owner_approval.steps[0].approvers[0]: give exactly one of attribute, group, ids"),
        ('[workflows.owner_approval]\nauto_approve = "context.amount <="\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "resource.owner" }]\n', "workflows.owner_approval.auto_approve: not a Cedar condition"),
        ('[workflows.owner_approval]\nauto_approve = "true }; permit (principal, action, resource) when { true"\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "resource.owner" }]\n', "workflows.owner_approval.auto_approve: must be one Cedar condition, not policy text"),
        ('[workflows.owner_approval]\nrequest_schema = "../etc/passwd"\n[[workflows.owner_approval.steps]]\nname = "a"\napprovers = [{ attribute = "resource.owner" }]\n', "must be a file inside the bundle"),
        ('[workflows.owner_approval]\nquorum = 1\n', "workflows.owner_approval: Object contains unknown field `quorum`"),
    ],
)
def test_workflow_problems_name_their_key(tmp_path: Path, workflows: str, message: str) -> None:
    with pytest.raises(BundleError) as error:
        load_bundle(bundle_dir(tmp_path, workflows=workflows))
    assert any(p.file == "workflows.toml" and message in p.message for p in error.value.problems), error.value.problems


def test_op_40_oauth_vocabulary_loads_with_the_bundle_and_its_problems_refuse_it(tmp_path: Path) -> None:
    path = bundle_dir(tmp_path)
    assert load_bundle(path).vocabulary.authorization_details == {}
    version = load_bundle(path).version
    (path / "oauth.toml").write_text('[authorization_details.trade]\nresource_type = "Portfolio"\nid = "identifier"\n')
    loaded = load_bundle(path)
    assert loaded.vocabulary.authorization_details["trade"].resource_type == "Portfolio"
    assert loaded.version != version and path / "oauth.toml" in bundle_files(path)
    (path / "oauth.toml").write_text("[authorization_details.trade]\nresource = 'x'\n")
    with pytest.raises(BundleError) as error:
        load_bundle(path)
    [problem] = error.value.problems
    assert (problem.file, problem.line) == ("oauth.toml", 0) and problem.message.startswith("authorization_details.trade:")


def test_agents_workflow_loads_with_its_request_schema() -> None:
    from services.access_requests.workflows import parse_duration

    bundle = load_bundle(TODO.parent / "agents")
    workflow = bundle.workflows.get("owner_approval")
    assert workflow is not None and [s.name for s in workflow.steps] == ["owner"]
    assert parse_duration(workflow.max_approval, "max_approval").total_seconds() == 86400
    assert bundle.workflows.request_schemas["owner_approval"]["required"] == ["context"]


# -- ARAP: auto-approval conditions and the reserved `approval` member ---------------------------

AGENTS = TODO.parent / "agents"


def agent_buy(amount: object = None, resource: str = "alice-main", **context: object) -> EvaluationRequest:
    given = dict(context) if amount is None else {"amount": amount, **context}
    return EvaluationRequest(Subject("Agent", "trader-7"), Action("buy"), Resource("Portfolio", resource), given or None)


def test_auto_approve_conditions_are_compiled_once_per_bundle() -> None:
    bundle = load_bundle(AGENTS)
    assert set(bundle.auto_approve) == {"owner_approval"}


@pytest.mark.parametrize(("amount", "approved"), [(1500, True), (2000, True), (2001, False), (5000, False)])
def test_auto_approved_evaluates_the_workflow_condition(amount: int, approved: bool) -> None:
    assert engine_for(AGENTS).auto_approved("owner_approval", agent_buy(amount)) is approved


def test_auto_approved_fails_closed() -> None:
    engine = engine_for(AGENTS)
    assert engine.auto_approved("owner_approval", agent_buy()) is False  # no amount: the condition errors
    assert engine.auto_approved("owner_approval", agent_buy(0.123456)) is False  # not a Cedar value
    assert engine.auto_approved("no_such_workflow", agent_buy(10)) is False
    unknown = EvaluationRequest(Subject("not a type!", "x"), Action("buy"), Resource("Portfolio", "p"), {"amount": 1})
    assert engine.auto_approved("owner_approval", unknown) is False


def test_auto_approved_sees_the_same_entities_as_a_decision(tmp_path: Path) -> None:
    workflows = WORKFLOWS.replace("[workflows.owner_approval]\n", '[workflows.owner_approval]\nauto_approve = "resource has owner && resource.owner == principal"\n')
    owned = EntityRecord("Portfolio", "p1", {"owner": {"__entity": {"type": "User", "id": "alice"}}})
    engine = engine_for(bundle_dir(tmp_path, workflows=workflows), owned)
    assert engine.auto_approved("owner_approval", request("buy")) is True
    assert engine.auto_approved("owner_approval", request("buy", "p2")) is False


def test_a_workflow_without_auto_approval_never_auto_approves(tmp_path: Path) -> None:
    engine = engine_for(bundle_dir(tmp_path))
    assert engine.bundle.auto_approve == {}
    assert engine.auto_approved("owner_approval", request("buy", context={"amount": 1})) is False


def test_approval_is_reserved_and_never_reaches_policies(tmp_path: Path) -> None:
    """The service verifies `context.approval` (ARAP §12.1); a policy testing for it must never
    be satisfied by what a PEP sends, and a value Cedar could not hold does not fail the request."""
    policies = '@id("approved") permit (principal, action == Action::"buy", resource) when { context has approval };'
    schema = "entity User; entity Portfolio; action buy appliesTo { principal: User, resource: Portfolio, context: { approval?: { id: String } } };"
    engine = engine_for(bundle_dir(tmp_path, policies, schema, workflows=""))
    forged = request("buy", context={"approval": {"id": "apr_forged"}})
    odd = request("buy", context={"approval": {"id": "x", "state": [None, 0.123456]}})
    assert [(o.allowed, o.reason) for o in engine.evaluate([forged, odd])] == [(False, "no_matching_permit")] * 2
